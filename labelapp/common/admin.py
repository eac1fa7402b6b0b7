"""Django admin for the outbox: what waits for the broker, and why."""
from django.contrib import admin

from labelapp.common.models import OutboxMessage


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "created_at", "attempts", "next_attempt_at", "last_error"]
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]
    search_fields = ["task"]

    def has_add_permission(self, request) -> bool:
        return False
