"""Column-wise product data (`ProductFrame`) and training targets (`Targets`), NumPy only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from classifier.core.config import FRAME_TEXT_COLUMNS


def _text_column(values: Sequence[Any] | np.ndarray | None, n: int) -> np.ndarray:
    """Return object [n] of str, with None / NaN as the empty string (a missing value)."""
    if values is None:
        return np.full(n, "", dtype=object)
    column = np.empty(len(values), dtype=object)
    column[:] = ["" if value is None or value != value else str(value) for value in values]
    return column


@dataclass(frozen=True, eq=False)
class ProductFrame:
    """Products as columns: strings (missing = "" or None) and image embeddings.

    `image` is float32 [n, d] (zeros where a product has no photo) and `image_present` float32 [n]
    (1 = has a photo). A column left as None is missing for every product.
    """

    title: Sequence[str] | np.ndarray
    description: Sequence[str] | np.ndarray | None = None
    brand: Sequence[str] | np.ndarray | None = None
    category: Sequence[str] | np.ndarray | None = None
    category_path: Sequence[str] | np.ndarray | None = None
    gender: Sequence[str] | np.ndarray | None = None
    size: Sequence[str] | np.ndarray | None = None
    image: np.ndarray | None = None
    image_present: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.title)
        for name in FRAME_TEXT_COLUMNS:
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise ValueError(f"column {name!r} has {len(values)} rows, title has {n}")
            object.__setattr__(self, name, _text_column(values, n))
        if self.image is not None:
            image = np.asarray(self.image, dtype=np.float32)
            if image.ndim != 2 or len(image) != n:
                raise ValueError(f"image must be float [n={n}, d], got shape {image.shape}")
            present = (np.any(image != 0, axis=1) if self.image_present is None
                       else np.asarray(self.image_present).reshape(n) != 0)
            object.__setattr__(self, "image", np.where(present[:, None], image, 0).astype(np.float32))
            object.__setattr__(self, "image_present", present.astype(np.float32))
        elif self.image_present is not None:
            raise ValueError("image_present given without image")

    def __len__(self) -> int:
        return len(self.title)

    def take(self, indices: Sequence[int] | np.ndarray) -> "ProductFrame":
        """Return the products at `indices` (int [m]) as a new frame."""
        indices = np.asarray(indices, dtype=np.int64)
        return ProductFrame(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[indices]
                               for f in dataclasses.fields(self)})

    def dense_column(self, name: str, *, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (float32 [n, dim] vectors, float32 [n, 1] presence) of a dense column, zeros when missing."""
        values = getattr(self, name)
        if values is None:
            return np.zeros((len(self), dim), np.float32), np.zeros((len(self), 1), np.float32)
        if values.shape[1] != dim:
            raise ValueError(f"column {name!r} has dimension {values.shape[1]}, the config says {dim}")
        return values, getattr(self, f"{name}_present").reshape(-1, 1)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], *, image_dim: int | None = None) -> "ProductFrame":
        """Build a frame from dicts keyed by column name (an absent key or None is a missing value)."""
        records = list(records)
        columns = {name: [record.get(name) for record in records] for name in FRAME_TEXT_COLUMNS}
        image = image_present = None
        if image_dim is not None:
            image = np.zeros((len(records), image_dim), np.float32)
            image_present = np.zeros(len(records), np.float32)
            for row, record in enumerate(records):
                if record.get("image") is not None:
                    image[row] = record["image"]
                    image_present[row] = 1.0
        return cls(**columns, image=image, image_present=image_present)


@dataclass(frozen=True, eq=False)
class Targets:
    """What each product should be, per objective; a product may have no target for an objective.

    exclusive: int [n] index into `classes`, -1 where no target is known.
    exclusive_weight: float [n] how much each exclusive target counts in the loss (default 1): a human label
    weighs 1, a weak target (a legacy rule's or the feed's category) the measured precision of its source.
    exclusive_soft: float [n, len(classes)] or None, the target of products whose class is known only as a
    distribution (rows ≥ 0 summing to 1; all zeros = none), e.g. weak evidence naming several categories. A
    product's exclusive target is its class where `exclusive` ≥ 0, else its `exclusive_soft` row, if any.
    rule: 0/1 [n, len(rule_classes)] categories the rules assign; `rule_known` bool [n] is False for
    products the rules never saw (their `rule` row is ignored).
    """

    exclusive: np.ndarray | None = None
    classes: Sequence[str] = ()
    rule: np.ndarray | None = None
    rule_known: np.ndarray | None = None
    rule_classes: Sequence[str] = ()
    exclusive_weight: np.ndarray | None = None
    exclusive_soft: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "rule_classes", tuple(str(c) for c in self.rule_classes))
        if self.exclusive is not None:
            exclusive = np.asarray(self.exclusive, dtype=np.int64).reshape(-1)
            if exclusive.size and (exclusive.min() < -1 or exclusive.max() >= len(self.classes)):
                raise ValueError(f"exclusive targets must lie in [-1, {len(self.classes)})")
            object.__setattr__(self, "exclusive", exclusive)
            weight = (np.ones(len(exclusive), np.float32) if self.exclusive_weight is None
                      else np.asarray(self.exclusive_weight, dtype=np.float32).reshape(len(exclusive)))
            if weight.size and (weight.min() < 0 or not np.isfinite(weight).all()):
                raise ValueError("exclusive weights must be finite and ≥ 0")
            object.__setattr__(self, "exclusive_weight", weight)
        if self.exclusive_soft is not None:
            if self.exclusive is None:
                raise ValueError("exclusive_soft needs exclusive (-1 where the soft row is the target)")
            soft = np.asarray(self.exclusive_soft, dtype=np.float32)
            if soft.shape != (len(self.exclusive), len(self.classes)):
                raise ValueError(f"exclusive_soft must be [{len(self.exclusive)}, {len(self.classes)}], "
                                 f"got {soft.shape}")
            sums = soft.sum(axis=1)
            if soft.size and (soft.min() < 0 or not np.isfinite(soft).all()
                              or not np.all((np.abs(sums - 1) < 1e-3) | (sums == 0))):
                raise ValueError("exclusive_soft rows must be ≥ 0 and sum to 1 (or be all zeros: no target)")
            object.__setattr__(self, "exclusive_soft", soft)
        if self.rule is not None:
            rule = np.asarray(self.rule, dtype=np.float32)
            if rule.ndim != 2 or rule.shape[1] != len(self.rule_classes):
                raise ValueError(f"rule targets must be [n, {len(self.rule_classes)}], got {rule.shape}")
            known = (np.ones(len(rule), bool) if self.rule_known is None
                     else np.asarray(self.rule_known, dtype=bool).reshape(len(rule)))
            object.__setattr__(self, "rule", rule)
            object.__setattr__(self, "rule_known", known)
        if self.exclusive is not None and self.rule is not None and len(self.exclusive) != len(self.rule):
            raise ValueError("exclusive and rule targets have different lengths")

    def __len__(self) -> int:
        return len(self.exclusive) if self.exclusive is not None else len(self.rule)

    @property
    def exclusive_known(self) -> np.ndarray:
        """Return bool [n]: the product has an exclusive target, a class or a soft row."""
        known = self.exclusive >= 0
        return known if self.exclusive_soft is None else known | (self.exclusive_soft.sum(axis=1) > 0)

    def exclusive_distribution(self) -> np.ndarray:
        """Return every product's exclusive target as a distribution float32 [n, len(classes)] (zeros: none)."""
        known = self.exclusive >= 0
        rows = np.zeros((len(self.exclusive), len(self.classes)), np.float32)
        if self.exclusive_soft is not None:
            rows[~known] = self.exclusive_soft[~known]
        rows[np.flatnonzero(known), self.exclusive[known]] = 1.0
        return rows

    def take(self, indices: Sequence[int] | np.ndarray) -> "Targets":
        """Return the targets of the products at `indices` (int [m])."""
        indices = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            exclusive=None if self.exclusive is None else self.exclusive[indices],
            exclusive_weight=None if self.exclusive_weight is None else self.exclusive_weight[indices],
            exclusive_soft=None if self.exclusive_soft is None else self.exclusive_soft[indices],
            rule=None if self.rule is None else self.rule[indices],
            rule_known=None if self.rule_known is None else self.rule_known[indices],
        )
