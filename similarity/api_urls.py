from django.urls import path

from . import apis

urlpatterns = [
    # <path:…> so that external ids holding "/" (some feeds use paths as ids) can be asked for too.
    path("products/<path:external_id>/similar/", apis.SimilarProductsApi.as_view(), name="api-product-similar"),
]
