from django.urls import path

from labelapp.common import apis

urlpatterns = [
    path("health/", apis.HealthApi.as_view(), name="api-health"),
]
