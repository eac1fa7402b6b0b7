from django.urls import path

from labelapp.workflow import onboarding_views, views

urlpatterns = [
    path("products/<int:product_id>/", views.product_detail_view, name="product-detail"),
    path("label/", views.labelling_view, name="labelling"),
    path("label/items/<int:item_id>/submit/", views.labelling_submit_view, name="labelling-submit"),
    path("label/items/<int:item_id>/skip/", views.labelling_skip_view, name="labelling-skip"),
    path("label/undo/", views.labelling_undo_view, name="labelling-undo"),
    path("label/categories.json", views.labelling_categories_view, name="labelling-categories"),
    path("label/rounds/", views.round_list_view, name="round-list"),
    path("label/rounds/<int:round_id>/", views.round_detail_view, name="round-detail"),
    path("label/rounds/<int:round_id>/close/", views.round_close_view, name="round-close"),
    path("review/operations/", views.operations_view, name="operations"),
    path("onboarding/", onboarding_views.onboarding_view, name="onboarding"),
    path("onboarding/upload/", onboarding_views.onboarding_upload_view, name="onboarding-upload"),
    path("onboarding/import/", onboarding_views.onboarding_import_view, name="onboarding-import"),
    path("onboarding/match/", onboarding_views.onboarding_match_view, name="onboarding-match"),
    path("onboarding/rules/", onboarding_views.onboarding_rules_view, name="onboarding-rules"),
    path("onboarding/train/", onboarding_views.onboarding_train_view, name="onboarding-train"),
    path("onboarding/round/", onboarding_views.onboarding_round_view, name="onboarding-round"),
]
