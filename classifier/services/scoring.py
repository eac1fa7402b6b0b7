"""Score products with trained model versions: what active learning needs to choose the next batch.

Runs TensorFlow, so only ml-queue workers and commands call it, never the web process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from classifier.core.estimator import ProductClassifier
from classifier.models import ModelVersion
from classifier.services.dataset import class_ancestors, product_rows, products_frame

_CACHE_SIZE = 3
_cache: "OrderedDict[tuple[int, str], object]" = OrderedDict()
_cache_lock = threading.Lock()


class ArtefactMissing(RuntimeError):
    """The model version's artefact was pruned or never written."""


def classifier_load(*, version: ModelVersion):
    """Return the version's ProductClassifier, loaded once per process (a small LRU of recent versions)."""
    if not version.artefact_path:
        raise ArtefactMissing(f"model version {version.name} has no artefact (pruned)")
    key = (version.id, version.artefact_path)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    classifier = ProductClassifier.load(version.artefact_path)
    with _cache_lock:
        _cache[key] = classifier
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return classifier


@dataclass
class PoolScores:
    """Model outputs for a pool of products, in `product_ids` order.

    proba float32 [n, C] exclusive probabilities over `classes` (category ids); embeddings float32 [n, d]
    L2-normalised trunk embeddings (None unless asked); members float32 [M, n, C] committee probabilities
    aligned to `classes` (None unless asked); ancestors: class index → ancestor category ids, top level first.
    """

    product_ids: np.ndarray
    proba: np.ndarray
    classes: list[int]
    embeddings: np.ndarray | None
    members: np.ndarray | None
    ancestors: dict[int, list[int]]


def pool_scores(*, model_version: ModelVersion, product_ids, with_embeddings: bool = False,
                committee_size: int = 0, chunk_size: int = 5000) -> PoolScores:
    """Return the exclusive probabilities (and optionally embeddings and a committee's) of the pool products.

    The committee is the version and the most recent earlier versions that still have an artefact and an
    exclusive head (models trained on different label sets and often different architectures); their
    probabilities are mapped onto this version's classes (a class a member lacks gets 0).
    """
    classifier = classifier_load(version=model_version)
    if not len(classifier.classes_):
        raise ValueError(f"model version {model_version.name} has no exclusive head to score a pool with")
    classes = [int(c) for c in classifier.classes_]
    members_versions = []
    if committee_size > 1:
        members_versions = list(
            ModelVersion.objects.exclude(id=model_version.id).exclude(artefact_path="")
            .filter(objectives__contains=["exclusive"], created_at__lte=model_version.created_at)
            .order_by("-created_at")[:committee_size - 1])
    rows_all = product_rows(product_ids=product_ids)
    order = np.array([row["id"] for row in rows_all], dtype=np.int64)
    proba_parts, embedding_parts, member_parts = [], [], []
    for start in range(0, len(rows_all), chunk_size):
        rows = rows_all[start:start + chunk_size]
        frame = products_frame(rows=rows, image_model_version=model_version.image_model_version,
                               image=bool(model_version.image_model_version))
        proba_parts.append(classifier.predict_proba(frame)["exclusive"])
        if with_embeddings:
            vectors = classifier.embed(frame)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            embedding_parts.append(vectors / np.maximum(norms, 1e-12))
        if members_versions:
            member_parts.append([_aligned(classifier_load(version=member), frame, classes)
                                 for member in members_versions])
    n = len(order)
    proba = np.concatenate(proba_parts) if proba_parts else np.zeros((0, len(classes)), np.float32)
    embeddings = (np.concatenate(embedding_parts) if embedding_parts else np.zeros((0, 1), np.float32)) \
        if with_embeddings else None
    members = None
    if members_versions:
        stacked = [np.concatenate([part[m] for part in member_parts]) if n else np.zeros((0, len(classes)))
                   for m in range(len(members_versions))]
        members = np.stack([proba, *stacked]).astype(np.float32)
    return PoolScores(product_ids=order, proba=proba.astype(np.float32), classes=classes, embeddings=embeddings,
                      members=members, ancestors=class_ancestors(classes))


def _aligned(member, frame, classes: list[int]) -> np.ndarray:
    """Return a member's exclusive probabilities [n, len(classes)] in `classes` order (missing classes 0)."""
    proba = member.predict_proba(frame)["exclusive"]
    position = {int(c): j for j, c in enumerate(member.classes_)}
    out = np.zeros((len(frame), len(classes)), np.float32)
    for index, category_id in enumerate(classes):
        if category_id in position:
            out[:, index] = proba[:, position[category_id]]
    total = out.sum(axis=1, keepdims=True)
    return np.where(total > 0, out / np.maximum(total, 1e-12), 1.0 / len(classes))
