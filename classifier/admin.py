from django.contrib import admin

from classifier.models import ModelVersion, Prediction, TrainRun


@admin.register(TrainRun)
class TrainRunAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "stage", "progress_percent", "architecture", "objectives", "trigger", "outcome",
                    "created_at", "finished_at")
    list_filter = ("status", "architecture", "trigger", "outcome")
    readonly_fields = [field.name for field in TrainRun._meta.fields]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "is_active", "architecture", "objectives", "headline_metric", "headline_value",
                    "predictions_count", "created_at", "activated_at")
    list_filter = ("is_active", "architecture")
    readonly_fields = [field.name for field in ModelVersion._meta.fields]


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("product", "model_version", "category", "confidence", "margin", "entropy")
    list_filter = ("model_version",)
    list_select_related = ("product", "category", "model_version")
    raw_id_fields = ("product", "category", "model_version")
    search_fields = ("product__title", "product__external_id")
