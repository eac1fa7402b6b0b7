"""Django admin for labelling rounds and their queues (read-only: they change through the pages)."""
from django.contrib import admin

from labelapp.workflow.models import LabelContext, LabellingRound, QueueItem


@admin.register(LabellingRound)
class LabellingRoundAdmin(admin.ModelAdmin):
    """Rounds change state through the labelling and review pages (close, retrain): read-only here."""

    list_display = ["number", "status", "strategy_mix", "random_share", "batch_size", "objectives", "model_version",
                    "train_run", "created_at", "closed_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in LabellingRound._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(QueueItem)
class QueueItemAdmin(admin.ModelAdmin):
    """Queue items are leased and labelled through the labelling page: read-only here."""

    list_display = ["round", "position", "product", "strategy", "score", "status", "leased_to", "lease_expires_at",
                    "flagged"]
    list_filter = ["status", "strategy", "flagged", "round"]
    search_fields = ["product__external_id", "product__title"]
    readonly_fields = [f.name for f in QueueItem._meta.fields]
    list_select_related = ["round", "product", "leased_to"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(LabelContext)
class LabelContextAdmin(admin.ModelAdmin):
    """Where each queued label was made: written by the labelling page, read-only here."""

    list_display = ["label", "round", "model_version", "time_spent_ms"]
    list_filter = ["round"]
    readonly_fields = [f.name for f in LabelContext._meta.fields]
    list_select_related = ["label", "round", "model_version"]

    def has_add_permission(self, request) -> bool:
        return False
