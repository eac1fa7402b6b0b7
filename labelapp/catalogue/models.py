"""Catalogue, taxonomy, legacy rules and human labels."""

from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower


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
    model_category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                       help_text="The active model's top-1 category (set when a version is promoted).")
    model_confidence = models.FloatField(null=True, blank=True,
                                         help_text="The active model's calibrated confidence in it.")
    model_precision = models.FloatField(
        null=True, blank=True,
        help_text="The model's estimated precision here (its calibrated confidence) when its calibration was "
                  "measured on enough human labels; empty: unmeasured, so the model only fills products that no "
                  "other source categorises.")
    # The effective category, computed from the sources above, the labels and the rule labels by one service
    # (labelapp.catalogue.services.product_categories), which is the only code that writes these four fields.
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="products")
    category_source = models.CharField(max_length=10, choices=CategorySource.choices, default=CategorySource.NONE)
    category_precision = models.FloatField(null=True, blank=True,
                                           help_text="The estimated precision of the source that won (empty: "
                                                     "a human label, or a source not measured yet).")
    category_rule = models.ForeignKey("LegacyRule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                      help_text="The rule that won, when the category comes from the rules.")
    level2 = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    level3 = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    category_dirty = models.BooleanField(
        default=False, help_text="The category changed since its copies elsewhere (similarity vectors) were synced.")
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
            models.Index(fields=["id"], name="product_category_dirty_idx", condition=models.Q(category_dirty=True)),
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


class TrustKind(models.TextChoices):
    RULE = "rule", "legacy rule"
    RULES = "rules", "all legacy rules"
    FEED = "feed", "feed category (one source, one feed category)"
    FEED_SOURCE = "feed_source", "feed category (one source)"


class SourceTrust(models.Model):
    """The measured precision of a source of categories, from the human labels of dev-split products.

    One row per legacy rule, for all rules together, per feed source and per (feed source, feed category).
    `labelled` counts the labelled products where the source named a category, `correct` those where it named
    the label's category; `low`/`high` is the 95 % Wilson interval of correct/labelled. `precision` is what
    arbitration uses: the row's own rate shrunk towards its parent's (a rule towards all rules, a feed category
    towards its source) with the parent weighing as much as `SHRINK_LABELS` labels — the per-category figure
    where there is enough data, the per-source one otherwise. Rebuilt by `labelapp.catalogue.services.trust`.
    """

    kind = models.CharField(max_length=12, choices=TrustKind.choices)
    rule = models.ForeignKey(LegacyRule, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=100, blank=True, default="", help_text="The feed's source name.")
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    covered = models.PositiveIntegerField(default=0, help_text="Products where the source names a category.")
    labelled = models.PositiveIntegerField(default=0)
    correct = models.PositiveIntegerField(default=0)
    precision = models.FloatField(null=True, blank=True)
    low = models.FloatField(null=True, blank=True)
    high = models.FloatField(null=True, blank=True)
    evidence = models.CharField(max_length=20, blank=True, default="",
                                help_text="unbiased: random and imported labels only; all: every label.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "source", "rule", "category"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "rule", "source", "category"], nulls_distinct=False,
                                    name="sourcetrust_key_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.rule_id or self.source} {self.category_id}: {self.precision}"


class FeedCategoryMode(models.TextChoices):
    """How a source's feed paths find their taxonomy node (a table entry for the path wins over the mode)."""

    EXACT = "exact", "exact: the feed path is a node's full path"
    CUT = "cut", "cut: the feed path's first N levels are a node's full path"
    ANCESTOR = "ancestor", "ancestor: the deepest node whose path begins the feed path"


class FeedCategoryMap(models.Model):
    """How one source's feed category paths map onto the taxonomy (no row: exact).

    Names match case-insensitively; a feed path that is a number names a node by its taxonomy id. `version`
    grows with every change of the map or its entries, so a running import re-reads the map between batches.
    """

    source = models.CharField(max_length=100, unique=True)
    mode = models.CharField(max_length=10, choices=FeedCategoryMode.choices, default=FeedCategoryMode.EXACT)
    levels = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Levels kept in the cut mode.")
    version = models.PositiveIntegerField(default=0)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["source"]

    def __str__(self) -> str:
        return f"{self.source}: {self.mode}{f' {self.levels}' if self.mode == FeedCategoryMode.CUT else ''}"

    def clean(self) -> None:
        if self.mode == FeedCategoryMode.CUT and not self.levels:
            raise ValidationError({"levels": "The cut mode needs a number of levels (1 or more)."})


class FeedCategoryMapEntry(models.Model):
    """A table entry: this feed path (case-insensitive) of this source maps to this node, or to none (empty)."""

    source = models.CharField(max_length=100)
    feed_path = models.CharField(max_length=2000, help_text="A normalised feed path, 'A > B > C'.")
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                 help_text="Empty: the path maps to no node, whatever the mode says.")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["source", "feed_path"]
        constraints = [
            models.UniqueConstraint(models.F("source"), Lower("feed_path"), name="feedcategorymapentry_path_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.source}: {self.feed_path} → {self.category_id}"


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
    category_report = models.JSONField(
        default=dict, blank=True,
        help_text="Products: how many matched a taxonomy node, how many did not, the most frequent unmatched paths.")
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
