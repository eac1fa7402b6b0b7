"""The labelling workflow: rounds, their queues, and where each queued label was made.

The catalogue's Label is the fact (who said which category, chosen by which strategy); `LabelContext` adds
what only the workflow knows: the round whose queue showed the product, the model whose scores chose it and
how long the labeller looked at it.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

from classifier.models import ModelVersion, TrainRun
from labelapp.catalogue.models import Label, LabelStrategy, Product


class RoundStatus(models.TextChoices):
    OPEN = "open", "open"
    CLOSING = "closing", "closing: retraining"
    CLOSED = "closed", "closed"
    FAILED = "failed", "closing failed"


class LabellingRound(models.Model):
    """A batch of products chosen for labelling by a strategy mix, scored by one model version.

    `strategy_mix` maps sampling strategy names (classifier.core.sampling) to shares of the batch, e.g.
    {"margin": 0.8, "random": 0.2}; `random_share` of every round is drawn at random on top of the mix's own
    random share so accuracy on those labels is an unbiased estimate. The six thesis settings are
    objectives {exclusive} or {exclusive, rule} × mix {random} / {entropy} / {random + entropy}.
    Closing a round retrains with `objectives` / `architecture` and opens the next round with the same settings.
    """

    number = models.PositiveIntegerField(unique=True)
    status = models.CharField(max_length=10, choices=RoundStatus.choices, default=RoundStatus.OPEN)
    strategy_mix = models.JSONField(default=dict)
    random_share = models.FloatField(default=0.0)
    batch_size = models.PositiveIntegerField()
    objectives = ArrayField(models.CharField(max_length=20), default=list)
    architecture = models.CharField(max_length=30, blank=True, default="")
    options = models.JSONField(default=dict, blank=True, help_text="Strategy options (beta, diversity…).")
    auto_continue = models.BooleanField(default=True, help_text="Open the next round after retraining.")
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", help_text="The model that scored the pool (none: cold start).")
    train_run = models.ForeignKey(TrainRun, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", help_text="The retraining that closing this round started.")
    previous = models.OneToOneField("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="next")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    close_reason = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=models.Q(status="open"), name="one_open_round"),
        ]

    def __str__(self) -> str:
        return f"round {self.number} ({self.status})"


class QueueItemStatus(models.TextChoices):
    PENDING = "pending", "pending"
    LEASED = "leased", "leased"
    DONE = "done", "labelled"
    SKIPPED = "skipped", "skipped"


class QueueItem(models.Model):
    """One product of a round's queue; a labeller leases it, then labels or skips it.

    A lease is valid while `lease_expires_at` is in the future; an expired lease is free to take again.
    Claiming uses SELECT … FOR UPDATE SKIP LOCKED, so concurrent labellers never get the same item.
    """

    round = models.ForeignKey(LabellingRound, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="queue_items")
    strategy = models.CharField(max_length=20, choices=LabelStrategy.choices)
    score = models.FloatField(null=True, blank=True, help_text="The strategy's score when the round was filled.")
    position = models.PositiveIntegerField(help_text="Queue order: lower is shown first.")
    status = models.CharField(max_length=10, choices=QueueItemStatus.choices, default=QueueItemStatus.PENDING)
    leased_to = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    skipped_by = ArrayField(models.BigIntegerField(), default=list, blank=True)
    flagged = models.BooleanField(default=False)
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round", "position"]
        constraints = [
            models.UniqueConstraint(fields=["round", "product"], name="queueitem_round_product_uniq"),
        ]
        indexes = [
            models.Index(fields=["round", "status", "position"], name="queueitem_next_idx"),
            # Claiming walks the claimable items in queue order and stops at the first it can lock.
            models.Index(fields=["round", "position"], name="queueitem_claim_idx",
                         condition=models.Q(status__in=["pending", "leased"])),
        ]

    def __str__(self) -> str:
        return f"round {self.round_id} #{self.position} product {self.product_id} ({self.status})"


class LabelContext(models.Model):
    """Where a label was made: the round whose queue showed the product, the model that chose it, time spent."""

    label = models.OneToOneField(Label, primary_key=True, on_delete=models.CASCADE, related_name="context")
    round = models.ForeignKey(LabellingRound, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="label_contexts",
                              help_text="The labelling round whose queue showed the product.")
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", help_text="The model whose scores chose the product.")
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True,
                                                help_text="How long the labeller looked at the product.")

    def __str__(self) -> str:
        return f"label {self.label_id} in round {self.round_id}"


class SetupStep(models.Model):
    """A one-time installation step that has run (e.g. a step of `load_demo`): re-running it changes nothing.

    A crash between steps leaves the finished ones recorded, so the next run resumes at the first unfinished one.
    """

    name = models.CharField(max_length=100, unique=True)
    done_at = models.DateTimeField(auto_now_add=True)
    detail = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["done_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.done_at:%Y-%m-%d %H:%M})"
