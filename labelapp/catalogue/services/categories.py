"""Writes to the category tree."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from labelapp.catalogue.models import Category


def _external_id_for_path(names: Sequence[str]) -> str:
    return Category.PATH_SEPARATOR.join(names)


@transaction.atomic
def category_path_ensure(*, names: Sequence[str], external_id: str | None = None,
                         cache: dict[str, Category] | None = None) -> Category:
    """Return the node for a path of names, creating it and any missing ancestors.

    `external_id` names the deepest node only (e.g. a Google taxonomy id); ancestors created here get their
    path as external id. `cache` (full path -> node) saves queries when many paths are ensured in a row.
    """
    names = [name.strip() for name in names]
    if not names or any(not name for name in names):
        raise ValueError(f"a category path needs non-empty names, got {list(names)!r}")
    cache = cache if cache is not None else {}
    parent: Category | None = None
    for depth in range(1, len(names) + 1):
        full_path = Category.PATH_SEPARATOR.join(names[:depth])
        node = cache.get(full_path)
        if node is None:
            node = Category.objects.filter(full_path=full_path).first()
        is_deepest = depth == len(names)
        if node is None:
            node = Category(
                external_id=(external_id if is_deepest and external_id else _external_id_for_path(names[:depth])),
                name=names[depth - 1],
                parent=parent,
                full_path=full_path,
                depth=depth,
                is_leaf=True,
            )
            node.save()
            node.lineage = [*(parent.lineage if parent else []), node.id]
            node.level2_id = node.lineage[1] if depth >= 2 else None
            node.level3_id = node.lineage[2] if depth >= 3 else None
            node.save(update_fields=["lineage", "level2", "level3"])
            if parent is not None and parent.is_leaf:
                parent.is_leaf = False
                Category.objects.filter(pk=parent.pk).update(is_leaf=False)
        elif is_deepest and external_id and node.external_id != external_id:
            node.external_id = external_id
            node.save(update_fields=["external_id"])
        cache[full_path] = node
        parent = node
    return parent
