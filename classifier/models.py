"""Train runs, the model versions they produce, and the predictions a version makes for the catalogue.

A TrainRun is one pass of the pipeline (dataset → train → save → evaluate → predict → promote). A successful run
leaves a ModelVersion whose artefact (a saved `ProductClassifier` directory under ARTEFACT_ROOT) is complete
before the row exists; at most one version is active, enforced by a partial unique index, and promotion flips it
in one transaction. Predictions are written under their version before it becomes active, so readers of the
active version never see a half-predicted catalogue.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from labelapp.catalogue.models import Category, Product


class TrainStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"


class TrainStage(models.TextChoices):
    """Where a running pipeline is; `progress_percent` is within the whole run."""

    QUEUED = "queued", "queued"
    DATASET = "dataset", "building the dataset"
    TRAIN = "train", "training"
    SAVE = "save", "saving the artefact"
    EVALUATE = "evaluate", "evaluating"
    PREDICT = "predict", "predicting the catalogue"
    PROMOTE = "promote", "promoting"
    DONE = "done", "done"


class PromotionOutcome(models.TextChoices):
    PENDING = "", "not decided"
    PROMOTED = "promoted", "promoted"
    REGRESSION = "regression", "kept the previous version: regression beyond the threshold"
    BLOCKED = "blocked", "kept the previous version: worse on the ground truth"
    FORCED = "forced", "promoted by a reviewer despite the guard"
    NOT_REQUESTED = "not_requested", "not promoted: promotion not requested"


class TrainRun(models.Model):
    """One run of the training pipeline, with everything needed to reproduce and judge it."""

    status = models.CharField(max_length=10, choices=TrainStatus.choices, default=TrainStatus.QUEUED)
    stage = models.CharField(max_length=10, choices=TrainStage.choices, default=TrainStage.QUEUED)
    progress_percent = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=500, blank=True, default="")
    architecture = models.CharField(max_length=30)
    objectives = ArrayField(models.CharField(max_length=20), default=list)
    params = models.JSONField(default=dict, blank=True,
                                help_text="Training parameters (epochs, batch size, learning rate, loss weights…).")
    feature_config = models.TextField(help_text="The feature config (TOML) the run trains with.")
    promote = models.BooleanField(default=True, help_text="Make the new version active when the run succeeds.")
    max_regression = models.FloatField(
        null=True, blank=True,
        help_text="Promote only if the headline metric drops by at most this much against the active version.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    trigger = models.CharField(max_length=20, default="manual", help_text="manual | api | command | round")
    data_counts = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True,
                               help_text="Reports on the rule-based test set and the hand-labelled ground truth.")
    history = models.JSONField(default=dict, blank=True, help_text="Per-epoch losses.")
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per stage.")
    error = models.TextField(blank=True, default="")
    artefact_path = models.CharField(max_length=1000, blank=True, default="")
    outcome = models.CharField(max_length=20, choices=PromotionOutcome.choices, blank=True, default="")
    promotion_reason = models.TextField(blank=True, default="",
                                        help_text="Why the promotion guard promoted or kept the active version.")
    worker = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"], name="trainrun_status_idx")]

    def __str__(self) -> str:
        return f"train run {self.pk} {self.architecture} [{'+'.join(self.objectives)}] {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in (TrainStatus.SUCCEEDED, TrainStatus.FAILED)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        return ((self.finished_at or self.heartbeat_at or self.started_at) - self.started_at).total_seconds()


class ModelVersion(models.Model):
    """A trained classifier that may serve predictions; `is_active` marks the one that does (at most one)."""

    name = models.CharField(max_length=100, unique=True)
    train_run = models.OneToOneField(TrainRun, on_delete=models.PROTECT, related_name="model_version")
    architecture = models.CharField(max_length=30)
    objectives = ArrayField(models.CharField(max_length=20), default=list)
    artefact_path = models.CharField(max_length=1000)
    classes = ArrayField(models.BigIntegerField(), default=list, blank=True,
                        help_text="Exclusive head: category id of each softmax output.")
    rule_classes = ArrayField(models.BigIntegerField(), default=list, blank=True,
                             help_text="Rule head: category id of each sigmoid output.")
    rule_thresholds = ArrayField(models.FloatField(), default=list, blank=True,
                                 help_text="Per rule class, tuned on the validation slice.")
    image_model_version = models.CharField(max_length=100, blank=True, default="",
                                           help_text="The image embeddings it reads (similarity model version).")
    temperature = models.FloatField(default=1.0, help_text="The exclusive head's calibration (temperature scaling).")
    calibration = models.JSONField(default=dict, blank=True,
                                   help_text="How the temperature was fitted: on which labels, how many, ECE before "
                                             "and after, and whether that measures the model's precision.")
    precision_measured = models.BooleanField(
        default=False, help_text="Its calibration was fitted on enough human labels for its calibrated confidence to "
                                 "stand as its precision in arbitration; otherwise it only fills gaps.")
    headline_metric = models.CharField(max_length=60, blank=True, default="")
    headline_value = models.FloatField(null=True, blank=True)
    is_active = models.BooleanField(default=False)
    predictions_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model_version"),
        ]

    def __str__(self) -> str:
        return f"{self.name}{' (active)' if self.is_active else ''}"


class Prediction(models.Model):
    """What one model version says about one product: top-k exclusive classes, uncertainty, rule-head positives."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="predictions")
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                 help_text="Top-1 exclusive category (empty for a rule-only model).")
    confidence = models.FloatField(null=True, blank=True, help_text="Top-1 probability.")
    top_k = models.JSONField(default=list, blank=True, help_text="[[category id, probability], …] best first.")
    entropy = models.FloatField(null=True, blank=True)
    margin = models.FloatField(null=True, blank=True, help_text="Top-1 minus top-2 probability.")
    rule_positives = ArrayField(models.BigIntegerField(), default=list, blank=True,
                                help_text="Categories the rule head predicts (probability ≥ the class threshold).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_version", "product"]
        constraints = [
            models.UniqueConstraint(fields=["model_version", "product"], name="prediction_version_product_uniq"),
        ]
        indexes = [
            models.Index(fields=["model_version", "confidence"], name="prediction_version_conf_idx"),
            models.Index(fields=["model_version", "category"], name="prediction_version_cat_idx"),
            models.Index(fields=["product"], name="prediction_product_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.product_id} → {self.category_id} ({self.confidence})"
