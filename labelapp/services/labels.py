"""Human labels: append-only rows, and the product's effective category they decide."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from labelapp.models import Category, CategorySource, Label, LabelStrategy, LabellingRound, Product


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


def _embeddings_sync_on_commit(*, product_id: int) -> None:
    from similarity.services.embeddings import embeddings_sync_categories

    # Similar-product filters read the category copied onto the vectors: keep it current.
    transaction.on_commit(lambda: embeddings_sync_categories(product_ids=[product_id]))


def label_create(*, product: Product, category: Category | None, user: AbstractBaseUser | None,
                 strategy: str = LabelStrategy.MANUAL, note: str = "", round: LabellingRound | None = None,
                 model_version_id: int | None = None, time_spent_ms: int | None = None) -> Label:
    """Append a human label for a product and make it the product's effective category.

    `category=None` records "no exclusive category fits": history keeps it, and the product falls back
    to its next-strongest category source only when it had no other label-based category. `round`,
    `model_version_id` and `time_spent_ms` record the labelling round that showed the product, the model
    that chose it and how long the labeller looked at it.
    """
    if strategy not in LabelStrategy.values:
        raise ValidationError({"strategy": f"unknown strategy {strategy!r}"})
    label = Label(product=product, category=category, labeller=user, strategy=strategy, note=note, round=round,
                  model_version_id=model_version_id, time_spent_ms=time_spent_ms)
    # Related rows given as instances (and the model version's id, which the database's foreign key checks)
    # are not re-read to validate them: a query per key on the labelling hot path. Missing ones still are.
    given = {"product": product, "category": category, "labeller": user, "round": round}
    label.full_clean(exclude=[name for name, value in given.items() if value is not None] + ["model_version"])
    # Validation is done, so only a database error can interrupt the writes, and PostgreSQL aborts the
    # caller's transaction on one anyway: no savepoint (two round trips saved on the labelling hot path).
    with transaction.atomic(savepoint=False):
        label.save()
        if category is not None:
            product_category_set(product=product, category=category, source=CategorySource.LABEL)
            _embeddings_sync_on_commit(product_id=product.pk)
    return label


def product_category_recompute(*, product: Product) -> None:
    """Recompute a product's effective category from its sources, strongest first, and store it.

    The newest human label that is not undone and names a category (a "none fits" label leaves the
    category to the weaker sources, as `label_create` does) > the active model version's prediction > the
    legacy rules when they name exactly one category > the feed's category > none. Used after an undo.
    """
    from classifier.models import Prediction

    label = (Label.objects.filter(product=product, undone=False, category__isnull=False)
             .select_related("category").order_by("-created_at", "-id").first())
    if label is not None:
        category, source = label.category, CategorySource.LABEL
    else:
        prediction = (Prediction.objects.filter(product=product, model_version__is_active=True,
                                                category__isnull=False).select_related("category").first())
        rule_categories = set(product.rule_labels.values_list("category_id", flat=True))
        if prediction is not None:
            category, source = prediction.category, CategorySource.PREDICTION
        elif len(rule_categories) == 1:
            category, source = Category.objects.get(pk=rule_categories.pop()), CategorySource.RULE
        elif product.feed_category_id is not None:
            category, source = Category.objects.get(pk=product.feed_category_id), CategorySource.FEED
        else:
            category, source = None, CategorySource.NONE
    if (product.category_id, product.category_source) != (category.pk if category else None, source):
        product_category_set(product=product, category=category, source=source)
        _embeddings_sync_on_commit(product_id=product.pk)


@transaction.atomic
def label_undo(*, label: Label) -> Label:
    """Mark a label undone (it stays in the history) and recompute the product's effective category."""
    Label.objects.filter(pk=label.pk).update(undone=True)
    label.undone = True
    product_category_recompute(product=Product.objects.get(pk=label.product_id))
    return label
