"""In-process events: how a lower layer tells a higher one that something happened, without importing it.

The catalogue publishes `CATEGORIES_CHANGED` when products' effective categories change; the similarity app
subscribes (in its AppConfig.ready) and re-syncs the category copies on its vectors. Handlers run after the
publishing transaction commits, in the same process. The durable fact is always recorded in the data itself
(a product's `category_dirty` flag), and each subscriber's periodic sweep catches anything a handler missed
(a crash between commit and handler), so an event is a prompt, never the only copy of the news.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable

from django.db import transaction

logger = logging.getLogger(__name__)

CATEGORIES_CHANGED = "catalogue.categories_changed"
"""Payload: product_ids (list[int]). Products whose effective category, level-2 or level-3 changed."""
PRODUCTS_IMPORTED = "catalogue.products_imported"
"""Payload: product_ids (list[int]). Products an import created or whose photo or title changed."""

_handlers: dict[str, list[Callable[..., None]]] = defaultdict(list)


def event_subscribe(topic: str, handler: Callable[..., None]) -> None:
    """Call `handler(**payload)` after each commit that published `topic` (idempotent per handler)."""
    if handler not in _handlers[topic]:
        _handlers[topic].append(handler)


def event_publish(topic: str, **payload) -> None:
    """Run the topic's handlers once the caller's transaction commits (at once when there is none)."""
    if _handlers.get(topic):
        transaction.on_commit(lambda: _handlers_run(topic, payload))


def _handlers_run(topic: str, payload: dict) -> None:
    for handler in list(_handlers.get(topic, ())):
        try:
            handler(**payload)
        except Exception:  # noqa: BLE001 — a subscriber's sweep catches up; the publisher's work is committed
            logger.exception("event %s: handler %s failed; its periodic sweep will catch up", topic,
                             getattr(handler, "__qualname__", handler))
