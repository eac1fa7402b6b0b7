from django.urls import path

from labelapp.workflow import views

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
]
