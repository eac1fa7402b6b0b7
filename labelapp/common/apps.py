from django.apps import AppConfig


class CommonConfig(AppConfig):
    """Shared by every app: roles, the task dispatch seam (outbox), events, API helpers, metrics."""

    name = "labelapp.common"
    label = "common"
    verbose_name = "Common"

    def ready(self) -> None:
        from labelapp.common import metrics

        metrics.celery_signals_connect()
