"""Small helpers shared by the classifier's selectors: tolerant readers of stored JSON, category lookups.

The pipeline stores reports as JSON where any key may be missing and any number may be null (NaN), so every
accessor tolerates both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from labelapp.catalogue.models import Category


def number(value: Any) -> float | None:
    """Return a finite float, or None for anything else (null, NaN, text, booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def json_at(data: Any, path: str) -> Any:
    """Return data["a"]["b"]… for the dotted path "a.b…", or None where any step is missing."""
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def duration_text(seconds: float | None) -> str:
    """Return '1 h 02 min', '3 min 05 s' or '12.3 s' ('' when unknown)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def level_sort_key(key: str) -> tuple[int, str]:
    """Return a sort key that puts numeric report levels in number order ("2" before "10"), others after."""
    return (int(key), key) if str(key).isdigit() else (10**6, str(key))


def category_choices(*, max_depth: int = 2) -> list[Category]:
    """Return the top of the tree (depth ≤ max_depth) in path order, for a subtree picker."""
    return list(Category.objects.filter(depth__lte=max_depth).only("id", "full_path", "depth").order_by("full_path"))


def category_get(*, category_id: int) -> Category | None:
    """Return one category, or None."""
    return Category.objects.filter(pk=category_id).first()


def category_lookup(*, ids) -> dict[int, Category]:
    """Return {id: category} for the given ids (unknown ids are simply absent)."""
    wanted = {int(i) for i in ids if isinstance(i, int) or (isinstance(i, str) and i.isdigit())}
    if not wanted:
        return {}
    return {c.id: c for c in Category.objects.filter(id__in=wanted).only("id", "name", "full_path", "depth")}


@dataclass(frozen=True)
class CategoryRef:
    """A category id from a report, resolved when the node still exists."""

    id: int | None
    node: Category | None

    @property
    def name(self) -> str:
        return self.node.name if self.node else (f"category {self.id}" if self.id is not None else "none")

    @property
    def full_path(self) -> str:
        return self.node.full_path if self.node else self.name


def category_ref(category_id: Any, lookup: dict[int, Category]) -> CategoryRef:
    """Return the report's category id resolved through `lookup` (node None when unknown or not an id)."""
    cid = int(category_id) if isinstance(category_id, (int, float)) and not isinstance(category_id, bool) else None
    return CategoryRef(id=cid, node=lookup.get(cid) if cid is not None else None)


def categories_by_id(*, category_ids: Iterable[int]) -> dict[int, Category]:
    """Return id → Category for the ids (to show predictions' category paths)."""
    return Category.objects.in_bulk(list(set(category_ids)))
