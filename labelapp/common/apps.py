from django.apps import AppConfig


class CommonConfig(AppConfig):
    """Shared by every app: roles, the task dispatch seam (outbox), events, API helpers."""

    name = "labelapp.common"
    label = "common"
    verbose_name = "Common"
