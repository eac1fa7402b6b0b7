from django.urls import path

from . import apis

urlpatterns = [
    path("train-runs/", apis.TrainRunListCreateApi.as_view(), name="api-train-runs"),
    path("train-runs/<int:train_run_id>/", apis.TrainRunDetailApi.as_view(), name="api-train-run-detail"),
    path("train-runs/<int:train_run_id>/promote/", apis.TrainRunPromoteApi.as_view(), name="api-train-run-promote"),
    path("model-versions/", apis.ModelVersionListApi.as_view(), name="api-model-versions"),
    path("model-versions/<int:version_id>/activate/", apis.ModelVersionActivateApi.as_view(),
         name="api-model-version-activate"),
]
