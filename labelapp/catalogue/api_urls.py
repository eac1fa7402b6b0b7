from django.urls import path

from labelapp.catalogue import apis

urlpatterns = [
    path("categories/", apis.CategoryListApi.as_view(), name="api-categories"),
    path("categories/tree/", apis.CategoryTreeApi.as_view(), name="api-category-tree"),
    path("labels/", apis.LabelListCreateApi.as_view(), name="api-labels"),
    path("rule-labels/", apis.RuleLabelListApi.as_view(), name="api-rule-labels"),
    path("rules/", apis.RuleListApi.as_view(), name="api-rules"),
    path("imports/", apis.ImportRunListCreateApi.as_view(), name="api-imports"),
    path("imports/<int:run_id>/", apis.ImportRunDetailApi.as_view(), name="api-import-detail"),
]
