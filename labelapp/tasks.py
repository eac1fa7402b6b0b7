"""Celery entry points of labelapp: thin, idempotent, ids in; each calls one service."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task
from django.db import OperationalError


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def rules_apply_task(product_ids: list[int] | None = None) -> dict[str, int]:
    """Apply the active legacy rules to the given products (all when None); return the run's counts."""
    from labelapp.services.rules import rules_apply

    return asdict(rules_apply(product_ids=product_ids))
