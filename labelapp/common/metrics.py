"""Prometheus metrics of the web and the workers, beside django-prometheus's request metrics.

Workers: Celery's task signals count every finished task by name and final state, its run time, and the
exceptions of failed ones; `worker_metrics_server_start` (on worker_ready) serves them over HTTP on
CELERY_METRICS_PORT. Web: /metrics (labelapp.common.views) serves the process's metrics plus two collectors read at
scrape time — the Celery queue lengths from the broker and the outbox backlog from the database.

A prefork worker or a gunicorn with several processes keeps each process's counts apart: set
PROMETHEUS_MULTIPROC_DIR (an empty folder per service, before it starts) and every process writes its counts there
and the exporter sums them (prometheus_client's multiprocess mode). Without it, one process's counts are served.
"""

from __future__ import annotations

import logging
import time

from celery.signals import task_failure, task_postrun, task_prerun, worker_ready
from django.conf import settings
from django.db import DatabaseError
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from labelapp.common.selectors import broker_connection, broker_queue_lengths, outbox_backlog

logger = logging.getLogger(__name__)

TASKS = Counter("labelapp_celery_tasks", "Celery tasks finished, by task name and final state "
                "(success, failure, retry, ...).", ["task", "state"])
TASK_FAILURES = Counter("labelapp_celery_task_failures", "Celery tasks that raised, by task name and exception type.",
                        ["task", "exception"])
TASK_DURATION = Histogram("labelapp_celery_task_duration_seconds", "Run time of Celery tasks, by task name.", ["task"],
                          buckets=(0.01, 0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600, float("inf")))

_started: dict[str, float] = {}


def _task_prerun(*, task_id: str, **kwargs) -> None:
    _started[task_id] = time.monotonic()


def _task_postrun(*, task_id: str, task, state: str | None = None, **kwargs) -> None:
    started = _started.pop(task_id, None)
    TASKS.labels(task=task.name, state=(state or "unknown").lower()).inc()
    if started is not None:
        TASK_DURATION.labels(task=task.name).observe(time.monotonic() - started)


def _task_failure(*, sender, exception: BaseException | None = None, **kwargs) -> None:
    TASK_FAILURES.labels(task=sender.name, exception=type(exception).__name__).inc()


def process_registry() -> CollectorRegistry:
    """The registry of this process's metrics, or of every process's in multiprocess mode."""
    if not settings.PROMETHEUS_MULTIPROC_DIR:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def worker_metrics_server_start(**kwargs) -> None:
    """Serve the worker's metrics on CELERY_METRICS_PORT (0: not at all); a busy port is logged, not fatal."""
    if not settings.CELERY_METRICS_PORT:
        return
    try:
        start_http_server(settings.CELERY_METRICS_PORT, addr=settings.CELERY_METRICS_ADDR, registry=process_registry())
    except OSError as error:
        logger.warning("metrics: cannot serve on %s:%s (%s)", settings.CELERY_METRICS_ADDR,
                       settings.CELERY_METRICS_PORT, error)
        return
    logger.info("metrics: serving on http://%s:%s/metrics", settings.CELERY_METRICS_ADDR, settings.CELERY_METRICS_PORT)


def celery_signals_connect() -> None:
    """Count tasks in whichever process runs them, and start the worker's metrics server when it is ready."""
    task_prerun.connect(_task_prerun, weak=False, dispatch_uid="labelapp.metrics.prerun")
    task_postrun.connect(_task_postrun, weak=False, dispatch_uid="labelapp.metrics.postrun")
    task_failure.connect(_task_failure, weak=False, dispatch_uid="labelapp.metrics.failure")
    worker_ready.connect(worker_metrics_server_start, weak=False, dispatch_uid="labelapp.metrics.worker_ready")


class BrokerQueuesCollector:
    """`labelapp_broker_up` and `labelapp_celery_queue_length{queue}`, read from the broker at each scrape."""

    def collect(self):
        up = GaugeMetricFamily("labelapp_broker_up", "1 when the broker answered this scrape, 0 when it did not.")
        lengths = GaugeMetricFamily("labelapp_celery_queue_length", "Messages waiting in each Celery queue.",
                                    labels=["queue"])
        try:
            with broker_connection() as conn:
                for queue, length in broker_queue_lengths(conn=conn):
                    lengths.add_metric([queue], length)
        except Exception as error:  # noqa: BLE001 — any broker failure means "down": the scrape still answers
            logger.warning("metrics: the broker did not answer (%s)", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield lengths


class OutboxCollector:
    """`labelapp_outbox_pending` and `labelapp_outbox_oldest_age_seconds`, read from the database at each scrape."""

    def collect(self):
        try:
            backlog = outbox_backlog(show=1)
        except DatabaseError as error:
            logger.warning("metrics: the database did not answer (%s)", error)
            return
        yield GaugeMetricFamily("labelapp_outbox_pending", "Task messages waiting in the outbox for the broker.",
                                value=backlog.pending)
        yield GaugeMetricFamily("labelapp_outbox_oldest_age_seconds",
                                "Age of the oldest waiting outbox message (0 when none waits).",
                                value=backlog.oldest_age_s or 0.0)


_LIVE = CollectorRegistry()
_LIVE.register(BrokerQueuesCollector())
_LIVE.register(OutboxCollector())


def metrics_exposition() -> bytes:
    """Prometheus text format: the process's (or all web processes') metrics, then the queue and outbox gauges."""
    return generate_latest(process_registry()) + generate_latest(_LIVE)
