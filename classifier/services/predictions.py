"""Prediction rows: what one model version says about each product, written in one statement per chunk."""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
from django.db import connection

from classifier.models import ModelVersion, Prediction

TOP_K = 5


def prediction_rows(*, product_ids: np.ndarray, proba: dict[str, np.ndarray], classes: Sequence[int],
                    rule_classes: Sequence[int], thresholds: np.ndarray) -> list[tuple]:
    """Return Prediction column tuples (product, category, confidence, top_k, entropy, margin, rule positives)."""
    rows = []
    exclusive = proba.get("exclusive")
    rule = proba.get("rule")
    if exclusive is not None and exclusive.shape[1]:
        k = min(TOP_K, exclusive.shape[1])
        top = np.argsort(-exclusive, axis=1, kind="stable")[:, :k]
        top_p = np.take_along_axis(exclusive, top, axis=1)
        clipped = np.clip(exclusive, 1e-12, 1.0)
        entropy = -(exclusive * np.log(clipped)).sum(axis=1)
        margin = top_p[:, 0] - (top_p[:, 1] if k > 1 else 0.0)
    positives = (rule >= np.asarray(thresholds)) if rule is not None and rule.shape[1] else None
    rule_ids = np.asarray(rule_classes, dtype=np.int64)
    for i, product_id in enumerate(product_ids.tolist()):
        if exclusive is not None and exclusive.shape[1]:
            row = (product_id, int(classes[top[i, 0]]), float(top_p[i, 0]),
                   json.dumps([[int(classes[c]), round(float(p), 5)] for c, p in zip(top[i], top_p[i])]),
                   float(entropy[i]), float(margin[i]))
        else:
            row = (product_id, None, None, "[]", None, None)
        rows.append(row + ((rule_ids[positives[i]].tolist() if positives is not None else []),))
    return rows



def predictions_write(*, version: ModelVersion, rows: list[tuple]) -> None:
    """Insert prediction rows for `version` in one statement (unnest), replacing any from an earlier attempt."""
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(Prediction._meta.db_table)
    product_ids, categories, confidences, top_ks, entropies, margins, positives = zip(*rows)
    # Postgres cannot unnest a ragged bigint[][]: the positives travel as text and are cast back per row.
    positives_text = ["{" + ",".join(map(str, ids)) + "}" for ids in positives]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (model_version_id, product_id, category_id, confidence, top_k, entropy, margin, "
            f"rule_positives, created_at) "
            f"SELECT %s, v.product_id, v.category_id, v.confidence, v.top_k::jsonb, v.entropy, v.margin, "
            f"v.positives::bigint[], now() "
            f"FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::text[], %s::float8[], %s::float8[], "
            f"%s::text[]) AS v(product_id, category_id, confidence, top_k, entropy, margin, positives) "
            f"ON CONFLICT (model_version_id, product_id) DO UPDATE SET category_id = EXCLUDED.category_id, "
            f"confidence = EXCLUDED.confidence, top_k = EXCLUDED.top_k, entropy = EXCLUDED.entropy, "
            f"margin = EXCLUDED.margin, rule_positives = EXCLUDED.rule_positives",
            [version.id, list(product_ids), list(categories), list(confidences), list(top_ks), list(entropies),
             list(margins), positives_text])

