"""The copies of each product's level-2 / level-3 category on its vectors, which the similar-products filters read.

The catalogue's one writer of the effective category marks every product it changes `category_dirty`; this
module copies the categories of dirty products onto their vectors and clears the flag in one transaction. It
runs after every commit that changed categories (the CATEGORIES_CHANGED event, subscribed in apps.py) and as a
periodic sweep (beat), which catches anything a crash between commit and handler left behind.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, transaction

from labelapp.catalogue.models import Product
from labelapp.catalogue.services.product_categories import products_category_dirty_claim
from similarity.models import ImageEmbedding, TextEmbedding
from similarity.services.spaces import embedding_spaces_bump

SYNC_CHUNK = 10_000


def embeddings_sync_categories(*, product_ids: Iterable[int] | None = None) -> int:
    """Copy products' current level-2/level-3 categories onto their vectors (every version); return rows changed.

    Call it after a product's effective category changes (a label, a prediction, a rule, an import).
    `product_ids=None` re-syncs every vector (a repair).
    """
    ids = sorted(set(product_ids)) if product_ids is not None else None
    chunks = [ids[start:start + SYNC_CHUNK] for start in range(0, len(ids), SYNC_CHUNK)] if ids is not None else [None]
    changed = 0
    for chunk in chunks:
        if chunk == []:
            continue
        with transaction.atomic():
            versions: set[str] = set()
            for model in (ImageEmbedding, TextEmbedding):
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"""WITH changed AS (
                              UPDATE {model._meta.db_table} AS e
                              SET level2_id = p.level2_id, level3_id = p.level3_id, updated_at = now()
                              FROM {Product._meta.db_table} AS p
                              WHERE p.id = e.product_id
                                AND (e.level2_id IS DISTINCT FROM p.level2_id
                                     OR e.level3_id IS DISTINCT FROM p.level3_id)
                                {"AND e.product_id = ANY(%s)" if chunk is not None else ""}
                              RETURNING e.model_version)
                            SELECT model_version, count(*) FROM changed GROUP BY model_version""",
                        [chunk] if chunk is not None else [],
                    )
                    for version, count in cursor.fetchall():
                        versions.add(version)
                        changed += count
            embedding_spaces_bump(model_versions=versions)
    return changed


def embeddings_categories_sync_dirty(*, limit: int = SYNC_CHUNK, **_event) -> int:
    """Re-sync the category copies of every product marked dirty, `limit` at a time; return vector rows changed."""
    changed = 0
    while True:
        with transaction.atomic():
            claimed = products_category_dirty_claim(limit=limit)
            if claimed:
                changed += embeddings_sync_categories(product_ids=[row[0] for row in claimed])
        if len(claimed) < limit:
            return changed
