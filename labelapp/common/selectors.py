"""Reads about the running system, for the operations page and /metrics: services, queues, workers, the outbox.

Each read that needs the broker or the database raises when that service does not answer; `reading()` turns the
failure into an `unavailable` text, so a page shows what is down instead of failing with it. The broker is reached
at settings.CELERY_BROKER_URL with no retries and short timeouts: a dead broker costs a page about a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from celery import current_app
from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection

from labelapp.common.dispatch import outbox_pending_count
from labelapp.common.models import OutboxMessage

T = TypeVar("T")
BROKER_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Reading(Generic[T]):
    """A value read from a service, or why it could not be read (`unavailable`, empty when it was)."""

    value: T | None = None
    unavailable: str = ""


def reading(read: Callable[[], T]) -> Reading[T]:
    """Call `read`; return its value, or the error as an `unavailable` text."""
    try:
        return Reading(value=read())
    except Exception as error:  # noqa: BLE001 — services fail in many types; every one means "unavailable"
        return Reading(unavailable=f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class WorkerStatus:
    """A Celery worker that answered, with what it is running now."""

    hostname: str
    pool: str
    concurrency: int | None
    processed: int
    active: list[dict] = field(default_factory=list)  # name, id, started (datetime | None)


@dataclass(frozen=True)
class OutboxBacklog:
    """Messages waiting in the outbox for the broker; `oldest` are the first few, oldest first."""

    pending: int
    oldest: list[OutboxMessage]
    oldest_age_s: float | None


@dataclass(frozen=True)
class OperationsOverview:
    """What the operations page shows: each part read, or why it could not be."""

    database: Reading[str]
    broker: Reading[str]
    queues: Reading[list[tuple[str, int]]]
    workers: Reading[list[WorkerStatus]]
    outbox: Reading[OutboxBacklog]


def broker_connection() -> Connection:
    """Open a connection to the broker that fails at once, with no retry, when the broker does not answer."""
    conn = current_app.connection_for_read(url=settings.CELERY_BROKER_URL, connect_timeout=BROKER_TIMEOUT_S,
                                           transport_options={"socket_timeout": BROKER_TIMEOUT_S,
                                                              "socket_connect_timeout": BROKER_TIMEOUT_S})
    try:
        conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_S)
    except Exception:
        conn.release()
        raise
    return conn


def celery_queue_names() -> list[str]:
    """The Celery queues this deployment routes tasks to (settings), each once."""
    return list(dict.fromkeys([settings.CELERY_TASK_DEFAULT_QUEUE, settings.CELERY_ML_QUEUE]))


def broker_queue_lengths(*, conn: Connection) -> list[tuple[str, int]]:
    """Return (queue, messages waiting) for each Celery queue: LLEN of its Redis lists, one per priority step."""
    channel = conn.default_channel
    lengths = []
    for name in celery_queue_names():
        keys = [f"{name}{channel.sep}{step}" if step else name for step in channel.priority_steps]
        with channel.client.pipeline() as pipe:
            for key in keys:
                pipe.llen(key)
            lengths.append((name, sum(pipe.execute())))
    return lengths


def celery_workers(*, conn: Connection, timeout: float = BROKER_TIMEOUT_S) -> list[WorkerStatus]:
    """Return the workers answering a ping within `timeout`, with their pool, counts and active tasks."""
    pongs = current_app.control.inspect(timeout=timeout, connection=conn).ping() or {}
    if not pongs:
        return []
    # Knowing who answered, the next two broadcasts return as soon as all of them reply.
    inspect = current_app.control.inspect(destination=list(pongs), timeout=timeout, limit=len(pongs), connection=conn)
    stats, active = inspect.stats() or {}, inspect.active() or {}
    workers = []
    for hostname in sorted(pongs):
        worker_stats = stats.get(hostname, {})
        pool = worker_stats.get("pool", {})
        tasks = [{"name": task.get("name", "?"), "id": task.get("id", ""),
                  "started": _timestamp(task.get("time_start"))} for task in active.get(hostname, [])]
        workers.append(WorkerStatus(hostname=hostname, pool=str(pool.get("implementation", "")).rsplit(":", 1)[-1],
                                    concurrency=pool.get("max-concurrency"),
                                    processed=sum(worker_stats.get("total", {}).values()), active=tasks))
    return workers


def _timestamp(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.get_current_timezone()) if value else None


def outbox_backlog(*, show: int = 5) -> OutboxBacklog:
    """Return how many messages wait in the outbox and the oldest `show` of them."""
    oldest = list(OutboxMessage.objects.order_by("created_at", "id")[:show])
    age = (timezone.now() - oldest[0].created_at).total_seconds() if oldest else None
    return OutboxBacklog(pending=outbox_pending_count(), oldest=oldest, oldest_age_s=age)


def database_check() -> str:
    """Return "ok" when the database answers a query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def operations_overview() -> OperationsOverview:
    """Read every service and queue the operations page shows; a part that cannot be read says why."""
    database, outbox = reading(database_check), reading(outbox_backlog)
    try:
        conn = broker_connection()
    except Exception as error:  # noqa: BLE001 — whatever the broker's failure, every part that needs it is down
        down = Reading(unavailable=f"{type(error).__name__}: {error}")
        return OperationsOverview(database=database, broker=down, queues=down, workers=down, outbox=outbox)
    with conn:
        return OperationsOverview(database=database, broker=Reading(value="ok"),
                                  queues=reading(lambda: broker_queue_lengths(conn=conn)),
                                  workers=reading(lambda: celery_workers(conn=conn)), outbox=outbox)
