"""Human labels: append-only rows, and the product's effective category they decide."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from labelapp.models import Category, CategorySource, Label, LabelStrategy, Product


def product_category_set(*, product: Product, category: Category | None, source: str) -> None:
    """Set a product's effective category and its level-2/level-3 ancestors in one UPDATE."""
    Product.objects.filter(pk=product.pk).update(
        category=category,
        category_source=source if category else CategorySource.NONE,
        level2_id=category.level2_id if category else None,
        level3_id=category.level3_id if category else None,
    )
    product.category = category
    product.category_source = source if category else CategorySource.NONE
    product.level2_id = category.level2_id if category else None
    product.level3_id = category.level3_id if category else None


@transaction.atomic
def label_create(*, product: Product, category: Category | None, user: AbstractBaseUser | None,
                 strategy: str = LabelStrategy.MANUAL, note: str = "") -> Label:
    """Append a human label for a product and make it the product's effective category.

    `category=None` records "no exclusive category fits": history keeps it, and the product falls back
    to its next-strongest category source only when it had no other label-based category.
    """
    if strategy not in LabelStrategy.values:
        raise ValidationError({"strategy": f"unknown strategy {strategy!r}"})
    label = Label(product=product, category=category, labeller=user, strategy=strategy, note=note)
    label.full_clean()
    label.save()
    if category is not None:
        product_category_set(product=product, category=category, source=CategorySource.LABEL)
        from similarity.services.embeddings import embeddings_sync_categories

        # Similar-product filters read the category copied onto the vectors: keep it current.
        product_id = product.pk
        transaction.on_commit(lambda: embeddings_sync_categories(product_ids=[product_id]))
    return label
