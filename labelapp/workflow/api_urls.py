from django.urls import path

from labelapp.workflow import apis

urlpatterns = [
    path("products/", apis.ProductListApi.as_view(), name="api-products"),
    path("products/<int:product_id>/", apis.ProductDetailApi.as_view(), name="api-product-detail"),
]
