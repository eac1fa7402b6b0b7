"""Embeddings in pgvector, the jobs that write them, and reviewers' judgements of the neighbours they give.

Every vector row carries the `model_version` that produced it, so a backbone change writes new rows beside the
old ones and queries only ever compare vectors of one version. Rows copy the product's effective level-2 and
level-3 category (`Product.level2` / `Product.level3`: the ancestors of the human label if any, else of the
active model's prediction, else of the legacy rule or the raw feed category) so a filtered nearest-neighbour
query needs no join; `embeddings_sync_categories` keeps the copies in step when a product's category changes.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from pgvector.django import HalfVectorField, HnswIndex

from labelapp.catalogue.models import Category, Product

IMAGE_DIM = 1280
TEXT_DIM = 256


class EmbeddingKind(models.TextChoices):
    IMAGE = "image", "image"
    TEXT = "text", "text"


class Modality(models.TextChoices):
    """What a similarity query compares; hybrid blends image and text scores."""

    IMAGE = "image", "image"
    TEXT = "text", "text"
    HYBRID = "hybrid", "hybrid (image + text)"


class Scope(models.TextChoices):
    """Which products a similarity query may return, relative to the query product's effective category."""

    LEVEL2 = "level2", "same level-2 category"
    LEVEL3 = "level3", "same level-3 category"
    GLOBAL = "global", "whole catalogue"


class EmbeddingSpace(models.Model):
    """One model version's vector space: its kind, dimension and a generation bumped on every write.

    The generation is part of every cache key of similarity answers, and it is bumped in the same transaction
    as the rows it describes, so a cached answer never outlives the vectors it was computed from.
    """

    model_version = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=5, choices=EmbeddingKind.choices)
    dim = models.PositiveIntegerField()
    generation = models.BigIntegerField(default=1)
    artefact = models.CharField(max_length=1000, blank=True, default="",
                                help_text="Where the model lives, for text models (a .npz under ARTEFACT_ROOT).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.model_version} (generation {self.generation})"


class EmbeddingBase(models.Model):
    """Columns shared by image and text vectors; the subclass adds the vector column and its HNSW index."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    model_version = models.CharField(max_length=100)
    # Copies of Product.level2 / level3 (see the module docstring); no FK constraint so that a category
    # change never takes locks on millions of vector rows, and no Django-side cascade on category deletion.
    level2 = models.ForeignKey(Category, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
                               db_index=False, related_name="+")
    level3 = models.ForeignKey(Category, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
                               db_index=False, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ImageEmbedding(EmbeddingBase):
    """A product photo's L2-normalised CNN embedding, stored as halfvec (half the bytes of vector).

    halfvec keeps cosine neighbours of L2-normalised CNN features: over the 9,583 Myntra photos the exact top-10
    with float16 vectors matches float32 at recall 0.9991 and top-100 at 0.9998, the largest score difference
    being 7.6e-5 (bench/bench_precision.py; asserted on 2,500 photos in tests/similarity/test_similarity_recall.py),
    for half the bytes of `vector` in the heap and in the HNSW index. The column is stored PLAIN (inline, see the
    migration): exact scans then read no TOAST.
    """

    embedding = HalfVectorField(dimensions=IMAGE_DIM)
    fingerprint = models.CharField(max_length=100, help_text="size:mtime_ns of the image file embedded.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_version", "product"], name="imageembedding_version_product_uniq"),
        ]
        indexes = [
            HnswIndex(name="imageembedding_hnsw_cos", fields=["embedding"], m=16, ef_construction=64,
                      opclasses=["halfvec_cosine_ops"]),
            models.Index(fields=["level2", "model_version"], name="imageembedding_level2_idx"),
            models.Index(fields=["level3", "model_version"], name="imageembedding_level3_idx"),
        ]

    def __str__(self) -> str:
        return f"image embedding of {self.product_id} ({self.model_version})"


class TextEmbedding(EmbeddingBase):
    """A product title's TF-IDF/LSA vector (similarity.core.text), L2-normalised, per text-model version.

    Titles with no known word give an all-zero vector, which has no cosine direction: no row is stored.
    """

    embedding = HalfVectorField(dimensions=TEXT_DIM)
    fingerprint = models.CharField(max_length=100, help_text="sha1 of the text embedded.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_version", "product"], name="textembedding_version_product_uniq"),
        ]
        indexes = [
            HnswIndex(name="textembedding_hnsw_cos", fields=["embedding"], m=16, ef_construction=64,
                      opclasses=["halfvec_cosine_ops"]),
            models.Index(fields=["level2", "model_version"], name="textembedding_level2_idx"),
            models.Index(fields=["level3", "model_version"], name="textembedding_level3_idx"),
        ]

    def __str__(self) -> str:
        return f"text embedding of {self.product_id} ({self.model_version})"


class EmbeddingFailure(models.Model):
    """Why a product's image could not be embedded by a model version (missing file, corrupt JPEG…).

    Kept with the image's fingerprint, so an unchanged bad image is not retried by every job, and removed
    when a later job embeds the product.
    """

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    model_version = models.CharField(max_length=100)
    fingerprint = models.CharField(max_length=100, blank=True, default="")
    reason = models.CharField(max_length=1000)
    job = models.ForeignKey("EmbeddingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["model_version", "product"], name="embeddingfailure_version_product_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.product_id} ({self.model_version}): {self.reason}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"


class EmbeddingJob(models.Model):
    """One run that embeds products' images (or titles) with one model version, chunk by chunk.

    `product_ids` empty means every product. Counters are updated as each chunk commits, so they are the
    job's visible progress and a crash leaves them true for the chunks that were written.
    """

    kind = models.CharField(max_length=5, choices=EmbeddingKind.choices, default=EmbeddingKind.IMAGE)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    model_version = models.CharField(max_length=100, blank=True,
                                     help_text="Empty on a text job that fits a new text model (set once fitted).")
    product_ids = ArrayField(models.BigIntegerField(), null=True, blank=True,
                             help_text="The products to consider; empty means all.")
    force = models.BooleanField(default=False, help_text="Re-embed even unchanged images.")
    total = models.PositiveIntegerField(default=0, help_text="Products considered.")
    done = models.PositiveIntegerField(default=0, help_text="Products embedded.")
    skipped = models.PositiveIntegerField(default=0, help_text="Products unchanged since their last embedding.")
    failed = models.PositiveIntegerField(default=0, help_text="Products whose image could not be embedded.")
    error = models.TextField(blank=True, default="", help_text="Why the whole job failed, if it did.")
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds spent per phase.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "kind"], name="embeddingjob_status_idx")]

    def __str__(self) -> str:
        return f"{self.kind} embedding job {self.id} ({self.model_version}, {self.status})"

    @property
    def processed(self) -> int:
        return self.done + self.skipped + self.failed

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, round(100 * self.processed / self.total))

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)


class NeighbourCache(models.Model):
    """Precomputed top-k image neighbours of a product in one scope, valid while its generation is current."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    model_version = models.CharField(max_length=100)
    scope = models.CharField(max_length=6, choices=Scope.choices)
    generation = models.BigIntegerField()
    neighbour_ids = ArrayField(models.BigIntegerField())
    scores = ArrayField(models.FloatField())
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_version", "scope", "product"],
                                    name="neighbourcache_version_scope_product_uniq"),
        ]

    def __str__(self) -> str:
        return f"{len(self.neighbour_ids)} neighbours of {self.product_id} ({self.scope}, {self.model_version})"


class SimilarityJudgement(models.Model):
    """A reviewer's verdict on one neighbour shown for one query product (one row per reviewer and setting)."""

    query = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    neighbour = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=6, choices=Scope.choices)
    modality = models.CharField(max_length=6, choices=Modality.choices)
    model_version = models.CharField(max_length=100)
    rank = models.PositiveSmallIntegerField(help_text="1-based position of the neighbour when it was judged.")
    is_similar = models.BooleanField()
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["query", "neighbour", "scope", "modality", "model_version", "reviewer"],
                name="similarityjudgement_uniq",
            ),
        ]
        indexes = [models.Index(fields=["model_version", "modality", "scope"], name="similarityjudgement_set_idx")]

    def __str__(self) -> str:
        verdict = "similar" if self.is_similar else "not similar"
        return f"{self.neighbour_id} for {self.query_id}: {verdict} ({self.reviewer_id})"
