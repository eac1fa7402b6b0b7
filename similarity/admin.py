"""Django admin for the similarity app: jobs (progress, errors), failures, spaces, judgements."""
from django.contrib import admin

from .models import EmbeddingFailure, EmbeddingJob, EmbeddingSpace, ImageEmbedding, SimilarityJudgement, TextEmbedding


@admin.register(EmbeddingJob)
class EmbeddingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "model_version", "status", "total", "done", "skipped", "failed", "created_at",
                    "finished_at"]
    list_filter = ["kind", "status", "model_version"]
    readonly_fields = ["kind", "status", "model_version", "force", "total", "done", "skipped", "failed", "error",
                       "timings", "created_by", "created_at", "started_at", "heartbeat_at", "finished_at"]
    exclude = ["product_ids"]


@admin.register(EmbeddingFailure)
class EmbeddingFailureAdmin(admin.ModelAdmin):
    list_display = ["product", "model_version", "reason", "created_at"]
    list_filter = ["model_version"]
    search_fields = ["product__external_id", "reason"]
    raw_id_fields = ["product", "job"]
    list_select_related = ["product"]


@admin.register(EmbeddingSpace)
class EmbeddingSpaceAdmin(admin.ModelAdmin):
    list_display = ["model_version", "kind", "dim", "generation", "updated_at"]
    readonly_fields = ["generation", "created_at", "updated_at"]


class _VectorAdmin(admin.ModelAdmin):
    list_display = ["product", "model_version", "level2", "level3", "updated_at"]
    list_filter = ["model_version"]
    search_fields = ["product__external_id"]
    raw_id_fields = ["product", "level2", "level3"]
    exclude = ["embedding"]  # 1,280 numbers are no use in a form
    list_select_related = ["product", "level2", "level3"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


admin.site.register(ImageEmbedding, _VectorAdmin)
admin.site.register(TextEmbedding, _VectorAdmin)


@admin.register(SimilarityJudgement)
class SimilarityJudgementAdmin(admin.ModelAdmin):
    list_display = ["query", "neighbour", "scope", "modality", "model_version", "rank", "is_similar", "reviewer",
                    "updated_at"]
    list_filter = ["scope", "modality", "model_version", "is_similar"]
    raw_id_fields = ["query", "neighbour", "reviewer"]
