"""Human labels: append-only rows, and the product's effective category they decide."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from labelapp.catalogue.models import Category, Label, LabelStrategy, Product
from labelapp.catalogue.services.product_categories import product_category_recompute


def label_create(*, product: Product, category: Category | None, user: AbstractBaseUser | None,
                 strategy: str = LabelStrategy.MANUAL, note: str = "") -> Label:
    """Append a human label for a product and make it the product's effective category.

    `category=None` records "no exclusive category fits": history keeps it, and the product falls back
    to its next-strongest category source only when it had no other label-based category. Where the label was
    made (a labelling round, the model that chose the product, time spent) is the workflow's to record.
    """
    if strategy not in LabelStrategy.values:
        raise ValidationError({"strategy": f"unknown strategy {strategy!r}"})
    label = Label(product=product, category=category, labeller=user, strategy=strategy, note=note)
    # Related rows given as instances are not re-read to validate them: a query per key on the labelling hot
    # path. Missing ones still are.
    given = {"product": product, "category": category, "labeller": user}
    label.full_clean(exclude=[name for name, value in given.items() if value is not None])
    # Validation is done, so only a database error can interrupt the writes, and PostgreSQL aborts the
    # caller's transaction on one anyway: no savepoint (two round trips saved on the labelling hot path).
    with transaction.atomic(savepoint=False):
        label.save()
        if category is not None:
            product_category_recompute(product=product)
    return label


@transaction.atomic
def label_undo(*, label: Label) -> Label:
    """Mark a label undone (it stays in the history) and recompute the product's effective category."""
    Label.objects.filter(pk=label.pk).update(undone=True)
    label.undone = True
    product_category_recompute(product=Product.objects.get(pk=label.product_id))
    return label
