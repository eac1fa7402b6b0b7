"""Django admin for every catalogue model."""
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from labelapp.catalogue.models import (
    Category,
    FeedCategoryMap,
    FeedCategoryMapEntry,
    ImportRowIssue,
    ImportRun,
    Label,
    LegacyRule,
    Product,
    RuleLabel,
)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["full_path", "external_id", "depth", "is_exclusive", "is_leaf"]
    list_filter = ["depth", "is_exclusive", "is_leaf"]
    search_fields = ["full_path", "external_id"]
    readonly_fields = ["lineage", "level2", "level3", "depth", "full_path", "parent"]
    list_editable = ["is_exclusive"]


class RuleLabelInline(admin.TabularInline):
    model = RuleLabel
    extra = 0
    readonly_fields = ["category", "rule", "created_at"]
    can_delete = False


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0
    readonly_fields = ["category", "labeller", "strategy", "created_at", "note"]
    can_delete = False


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["external_id", "source", "title", "category", "category_source", "split", "has_image"]
    list_filter = ["source", "split", "category_source"]
    search_fields = ["external_id", "title", "brand"]
    raw_id_fields = ["feed_category", "import_run"]
    # The effective category has one writer (services.product_categories): shown here, never edited.
    readonly_fields = ["raw", "created_at", "updated_at", "split", "category", "category_source", "level2", "level3",
                       "model_category", "model_confidence", "category_dirty"]
    inlines = [RuleLabelInline, LabelInline]
    list_select_related = ["category"]
    show_full_result_count = False

    @admin.display(boolean=True)
    def has_image(self, product: Product) -> bool:
        return bool(product.image)


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    """Labels are append-only: they are added through the labelling UI or API, never edited here."""

    list_display = ["product", "category", "labeller", "strategy", "undone", "created_at"]
    list_filter = ["strategy", "undone"]
    raw_id_fields = ["product", "category", "labeller"]
    search_fields = ["product__external_id"]

    def has_add_permission(self, request) -> bool:
        return False  # a label changes the product's category: only the labelling services may write one

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LegacyRule)
class LegacyRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "category", "combinator", "active", "origin"]
    list_filter = ["active", "origin", "combinator"]
    search_fields = ["name", "category__full_path"]
    raw_id_fields = ["category"]


@admin.register(RuleLabel)
class RuleLabelAdmin(admin.ModelAdmin):
    list_display = ["product", "category", "rule", "created_at"]
    raw_id_fields = ["product", "category", "rule"]
    search_fields = ["product__external_id", "rule__name"]


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "file_name", "source", "status", "rows_total", "rows_created", "rows_updated",
                    "rows_repaired", "rows_rejected", "images_failed", "created_at", "issues_link"]
    list_filter = ["kind", "status", "source"]
    readonly_fields = [f.name for f in ImportRun._meta.fields] + ["issues_link"]

    @admin.display(description="row issues")
    def issues_link(self, run: ImportRun) -> str:
        url = reverse("admin:labelapp_importrowissue_changelist") + f"?import_run__id__exact={run.id}"
        return format_html('<a href="{}">{} rejected, {} repaired</a>', url, run.rows_rejected, run.rows_repaired)


@admin.register(ImportRowIssue)
class ImportRowIssueAdmin(admin.ModelAdmin):
    list_display = ["import_run", "line", "outcome", "reason"]
    list_filter = ["outcome", "import_run"]
    search_fields = ["reason", "raw"]
    readonly_fields = ["import_run", "line", "outcome", "reason", "raw"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never edited here: a change must re-map the source's products (the reviewers' feed categories page)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(FeedCategoryMap)
class FeedCategoryMapAdmin(ReadOnlyAdmin):
    list_display = ["source", "mode", "levels", "version", "updated_by", "updated_at"]


@admin.register(FeedCategoryMapEntry)
class FeedCategoryMapEntryAdmin(ReadOnlyAdmin):
    list_display = ["source", "feed_path", "category", "updated_by", "updated_at"]
    list_filter = ["source"]
    search_fields = ["feed_path"]
