from django.urls import path

from labelapp.catalogue import views

urlpatterns = [
    path("", views.home, name="home"),
    path("products/", views.product_list_view, name="product-list"),
    path("categories/", views.category_tree_view, name="category-tree"),
    path("imports/", views.import_list_view, name="import-list"),
    path("imports/<int:run_id>/", views.import_detail_view, name="import-detail"),
]
