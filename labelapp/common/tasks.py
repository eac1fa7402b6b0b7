"""Celery entry points of the shared layer."""

from __future__ import annotations

from celery import shared_task

from labelapp.common.dispatch import outbox_relay


@shared_task
def outbox_relay_task() -> int:
    """Send the outbox messages that could not be sent when they were committed (beat, every few seconds)."""
    return outbox_relay()
