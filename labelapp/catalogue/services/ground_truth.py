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

from labelapp.catalogue.models import Label, LabelStrategy, Product
from labelapp.catalogue.services.product_categories import products_category_refresh


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
        "id", "feed_category_id", "source", "external_id"))
    if limit is not None:
        rows = sorted(rows, key=lambda row: hashlib.sha1(f"seed\x1f{row[2]}\x1f{row[3]}".encode()).digest())[:limit]
    Label.objects.bulk_create([Label(product_id=product_id, category_id=category_id, labeller=None,
                                     strategy=LabelStrategy.IMPORT, note=note)
                               for product_id, category_id, *_ in rows], batch_size=5000)
    products_category_refresh(product_ids=[row[0] for row in rows])
    result.labelled = len(rows)
    return result
