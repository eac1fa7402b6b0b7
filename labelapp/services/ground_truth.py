"""Ground-truth labels from a trusted source: a catalogue whose feed category is known to be right.

Some affiliate feeds (and the Myntra demo catalogue) carry the true exclusive category. Importing it as human
labels of the test split gives the classifier a hand-labelled ground truth to be evaluated on, and importing it
for the dev split gives the simulation an oracle — without anyone clicking through thousands of products.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Exists, OuterRef

from labelapp.models import CategorySource, Label, LabelStrategy, Product


@dataclass
class GroundTruthResult:
    labelled: int = 0
    already_labelled: int = 0
    not_exclusive: int = 0


@transaction.atomic
def labels_import_from_feed(*, source: str | None = None, split: str | None = None, limit: int | None = None,
                            note: str = "ground truth from the feed category") -> GroundTruthResult:
    """Label every product (of `source` / `split`) whose feed category is exclusive with that category.

    `limit` labels only the first that many unlabelled products by a fixed pseudo-random order (the split
    hash), e.g. a seed set. Products that already have a label keep it. Labels get strategy "import"; the products' effective category
    becomes the label.
    """
    from similarity.services.embeddings import embeddings_sync_categories

    products = Product.objects.all()
    if source:
        products = products.filter(source=source)
    if split:
        products = products.filter(split=split)
    has_label = Exists(Label.objects.filter(product=OuterRef("pk")))
    result = GroundTruthResult(
        already_labelled=products.filter(has_label).count(),
        not_exclusive=products.filter(~has_label).exclude(feed_category__is_exclusive=True).count(),
    )
    rows = list(products.filter(~has_label, feed_category__is_exclusive=True).values_list(
        "id", "feed_category_id", "feed_category__level2_id", "feed_category__level3_id", "source", "external_id"))
    if limit is not None:
        rows = sorted(rows, key=lambda row: hashlib.sha1(f"seed\x1f{row[4]}\x1f{row[5]}".encode()).digest())[:limit]
    rows = [row[:4] for row in rows]
    Label.objects.bulk_create([Label(product_id=product_id, category_id=category_id, labeller=None,
                                     strategy=LabelStrategy.IMPORT, note=note)
                               for product_id, category_id, _, _ in rows], batch_size=5000)
    for product_id, category_id, level2_id, level3_id in rows:
        Product.objects.filter(id=product_id).update(category_id=category_id, category_source=CategorySource.LABEL,
                                                     level2_id=level2_id, level3_id=level3_id)
    result.labelled = len(rows)
    ids = [row[0] for row in rows]
    transaction.on_commit(lambda: embeddings_sync_categories(product_ids=ids) if ids else None)
    return result
