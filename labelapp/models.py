"""Catalogue, taxonomy, legacy rules and human labels."""

from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import ValidationError
from django.db import models


class Category(models.Model):
    """A node of the category tree.

    `lineage` holds the ids from the root down to this node (inclusive), so both directions are one
    indexed query: descendants are `lineage__contains=[id]` (GIN), ancestors are `id__in=lineage`.
    `level2` / `level3` point at the depth-2 / depth-3 ancestor (or the node itself at that depth):
    the similarity filters read them without walking the tree.
    """

    external_id = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    full_path = models.CharField(max_length=2000, unique=True)
    depth = models.PositiveSmallIntegerField()
    lineage = ArrayField(models.BigIntegerField(), default=list, blank=True)
    level2 = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    level3 = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    is_exclusive = models.BooleanField(default=False, help_text="A mutually exclusive class (usually a leaf).")
    is_leaf = models.BooleanField(default=True)

    PATH_SEPARATOR = " > "

    class Meta:
        ordering = ["full_path"]
        verbose_name_plural = "categories"
        indexes = [
            GinIndex(fields=["lineage"], name="category_lineage_gin"),
            models.Index(fields=["is_exclusive"], name="category_exclusive_idx"),
        ]

    def __str__(self) -> str:
        return self.full_path


class Split(models.TextChoices):
    DEV = "dev", "dev"
    TEST = "test", "test"


def split_for(*, source: str, external_id: str) -> str:
    """Return the fixed dev/test split (90/10) of a product, deterministic from its ids."""
    digest = hashlib.sha1(f"{source}\x1f{external_id}".encode()).digest()
    return Split.TEST if int.from_bytes(digest[:8], "big") % 10 == 0 else Split.DEV


class CategorySource(models.TextChoices):
    """Where a product's effective category comes from, strongest first."""

    LABEL = "label", "human label"
    PREDICTION = "prediction", "model prediction"
    RULE = "rule", "legacy rule"
    FEED = "feed", "feed category"
    NONE = "none", "none"


class Product(models.Model):
    """A product as an affiliate network sent it (`raw`) plus the normalised fields derived from it."""

    source = models.CharField(max_length=100)
    external_id = models.CharField(max_length=255)
    raw = models.JSONField(help_text="The record exactly as received.")
    title = models.TextField()
    description = models.TextField(blank=True, default="")
    brand = models.CharField(max_length=255, blank=True, default="")
    category_path = models.CharField(max_length=2000, blank=True, default="",
                                     help_text="The feed's category path, normalised to 'A > B > C'.")
    gender = models.CharField(max_length=50, blank=True, default="")
    size = models.CharField(max_length=100, blank=True, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    attributes = models.JSONField(default=dict, blank=True, help_text="Other normalised fields (colour, season…).")
    image_ref = models.CharField(max_length=2000, blank=True, default="", help_text="Image path or URL in the feed.")
    image = models.ImageField(upload_to="products/", max_length=500, blank=True, default="")
    image_error = models.CharField(max_length=500, blank=True, default="")
    split = models.CharField(max_length=4, choices=Split.choices)
    feed_category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", help_text="The taxonomy node the feed path names.")
    # The effective category: human label > active model prediction > legacy rule > feed category.
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="products")
    category_source = models.CharField(max_length=10, choices=CategorySource.choices, default=CategorySource.NONE)
    level2 = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    level3 = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    import_run = models.ForeignKey("ImportRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="product_source_external_id_uniq"),
        ]
        indexes = [
            models.Index(fields=["external_id"], name="product_external_id_idx"),
            models.Index(fields=["split"], name="product_split_idx"),
            models.Index(fields=["category"], name="product_category_idx"),
            models.Index(fields=["level2"], name="product_level2_idx"),
            models.Index(fields=["level3"], name="product_level3_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id} {self.title[:60]}"


class LabelStrategy(models.TextChoices):
    """The sampling strategy that put a product in front of a labeller."""

    MANUAL = "manual", "manual"
    RANDOM = "random", "random"
    UNCERTAINTY = "uncertainty", "uncertainty (entropy, legacy name)"
    ENTROPY = "entropy", "entropy"
    MARGIN = "margin", "margin"
    LEAST_CONFIDENCE = "least_confidence", "least confidence"
    QBC = "qbc", "query by committee"
    QBC_VOTE = "qbc_vote", "query by committee (vote entropy)"
    QBC_KL = "qbc_kl", "query by committee (mean KL to consensus)"
    DENSITY = "density", "information density"
    TREE_ENTROPY = "tree_entropy", "tree-aware entropy"
    DIVERSITY = "diversity", "batch diversity"
    IMPORT = "import", "imported ground truth"


class Label(models.Model):
    """A human, exclusive label. Append-only: a correction is a new row and the newest row not undone is current."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="labels")
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.PROTECT, related_name="labels",
                                 help_text="Empty when the labeller said no exclusive category fits.")
    labeller = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                 related_name="labels")
    strategy = models.CharField(max_length=20, choices=LabelStrategy.choices, default=LabelStrategy.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    note = models.CharField(max_length=500, blank=True, default="")
    round = models.ForeignKey("LabellingRound", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="labels", help_text="The labelling round whose queue showed the product.")
    model_version = models.ForeignKey("classifier.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", help_text="The model whose scores chose the product.")
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True,
                                                help_text="How long the labeller looked at the product.")
    undone = models.BooleanField(default=False,
                                 help_text="The labeller took it back (undo): history keeps it, nothing reads it as current.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["product", "-created_at"], name="label_product_recent_idx")]

    def __str__(self) -> str:
        return f"{self.product_id} → {self.category_id} ({self.strategy})"

    def clean(self) -> None:
        if self.category_id and not self.category.is_exclusive:
            raise ValidationError({"category": "Human labels must name an exclusive category."})


class RuleOp(models.TextChoices):
    CONTAINS = "contains", "contains (case-insensitive substring)"
    CONTAINS_WORD = "contains_word", "contains word (case-insensitive, whole words)"
    EQUALS = "equals", "equals (case-insensitive)"
    REGEX = "regex", "matches regex"


class RuleCombinator(models.TextChoices):
    ALL = "and", "all conditions (AND)"
    ANY = "or", "any condition (OR)"


RULE_FIELDS = ("title", "description", "brand", "category_path", "gender", "size")


class LegacyRule(models.Model):
    """A rule of the legacy categoriser: conditions on product fields that, when met, assign a category.

    `conditions` is a list of {"field": …, "op": contains|contains_word|equals|regex, "value": …}.
    """

    name = models.CharField(max_length=255, unique=True)
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="rules")
    conditions = models.JSONField()
    combinator = models.CharField(max_length=3, choices=RuleCombinator.choices, default=RuleCombinator.ALL)
    active = models.BooleanField(default=True)
    origin = models.CharField(max_length=20, default="imported", help_text="imported | bootstrap | manual")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = rule_conditions_errors(self.conditions)
        if errors:
            raise ValidationError({"conditions": errors})


def rule_conditions_errors(conditions) -> list[str]:
    """Return what is wrong with a rule's condition list (empty when valid)."""
    if not isinstance(conditions, list) or not conditions:
        return ["conditions must be a non-empty list"]
    errors = []
    for index, condition in enumerate(conditions, start=1):
        if not isinstance(condition, dict):
            errors.append(f"condition {index} must be an object")
            continue
        field, op, value = condition.get("field"), condition.get("op"), condition.get("value")
        if field not in RULE_FIELDS:
            errors.append(f"condition {index}: unknown field {field!r} (one of {', '.join(RULE_FIELDS)})")
        if op not in RuleOp.values:
            errors.append(f"condition {index}: unknown op {op!r} (one of {', '.join(RuleOp.values)})")
        if not isinstance(value, str) or not value:
            errors.append(f"condition {index}: value must be a non-empty string")
        elif op == RuleOp.REGEX:
            try:
                re.compile(value)
            except re.error as exc:
                errors.append(f"condition {index}: invalid regex {value!r}: {exc}")
    return errors


class RuleLabel(models.Model):
    """A category a legacy rule assigned to a product, with the rule that fired (the trace)."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="rule_labels")
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="rule_labels")
    rule = models.ForeignKey(LegacyRule, on_delete=models.CASCADE, related_name="rule_labels")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["product_id", "category_id"]
        constraints = [models.UniqueConstraint(fields=["product", "rule"], name="rulelabel_product_rule_uniq")]
        indexes = [models.Index(fields=["category"], name="rulelabel_category_idx")]

    def __str__(self) -> str:
        return f"{self.product_id} → {self.category_id} by {self.rule_id}"


class ImportKind(models.TextChoices):
    PRODUCTS = "products", "products"
    TAXONOMY = "taxonomy", "taxonomy"
    RULES = "rules", "rules"


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"


class ImportRun(models.Model):
    """The report of one import: counts, and every rejected or repaired row (ImportRowIssue) with its reason."""

    kind = models.CharField(max_length=10, choices=ImportKind.choices)
    status = models.CharField(max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    source = models.CharField(max_length=100, blank=True, default="")
    file_name = models.CharField(max_length=1000)
    options = models.JSONField(default=dict, blank=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_created = models.PositiveIntegerField(default=0)
    rows_updated = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    rows_repaired = models.PositiveIntegerField(default=0)
    images_stored = models.PositiveIntegerField(default=0)
    images_failed = models.PositiveIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0, help_text="Progress while running: bytes of the file read.")
    bytes_total = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, default="", help_text="Why the whole import failed, if it did.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} import {self.id} of {self.file_name} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED)

    @property
    def progress_percent(self) -> int:
        if self.is_finished:
            return 100
        return int(100 * self.bytes_done / self.bytes_total) if self.bytes_total else 0


class RowOutcome(models.TextChoices):
    REJECTED = "rejected", "rejected"
    REPAIRED = "repaired", "repaired"
    WARNING = "warning", "accepted with a warning"


class ImportRowIssue(models.Model):
    """A row an import rejected, repaired or accepted with a warning: line number, reason, the row as it was."""

    import_run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="row_issues")
    line = models.PositiveIntegerField()
    outcome = models.CharField(max_length=10, choices=RowOutcome.choices)
    reason = models.CharField(max_length=1000)
    raw = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["import_run_id", "line", "id"]
        indexes = [models.Index(fields=["import_run", "outcome"], name="importrowissue_run_outcome_idx")]

    def __str__(self) -> str:
        return f"line {self.line} {self.outcome}: {self.reason}"


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
    model_version = models.ForeignKey("classifier.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", help_text="The model that scored the pool (none: cold start).")
    train_run = models.ForeignKey("classifier.TrainRun", null=True, blank=True, on_delete=models.SET_NULL,
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
