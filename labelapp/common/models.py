"""The outbox: tasks a service asked for, committed in the same transaction as the data they are about."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class OutboxMessage(models.Model):
    """A Celery task (or a whole canvas, such as a chain) waiting to be sent to the broker.

    `labelapp.common.dispatch` writes the row inside the caller's transaction, so the request to run the task
    exists exactly when the data it is about was committed. After commit it is sent at once; while the broker
    is away it stays here and the relay sends it when the broker answers again. A sent message is deleted.
    """

    task = models.CharField(max_length=200, help_text="The Celery task's name.")
    kwargs = models.JSONField(default=dict, blank=True)
    canvas = models.JSONField(null=True, blank=True, help_text="A serialised Celery signature (e.g. a chain).")
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["next_attempt_at", "id"], name="outbox_due_idx")]

    def __str__(self) -> str:
        return f"{self.task} {self.kwargs} (attempts {self.attempts})"
