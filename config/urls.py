"""URL routes: the HTML UI, the admin and the versioned REST API."""
from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("similarity.api_urls")),
    path("api/v1/", include("labelapp.common.api_urls")),
    path("api/v1/", include("labelapp.catalogue.api_urls")),
    path("api/v1/", include("labelapp.workflow.api_urls")),
    path("api/v1/", include("classifier.api_urls")),
    path("similarity/", include("similarity.urls")),
    path("review/", include("classifier.urls")),
    path("", include("labelapp.catalogue.urls")),
    path("", include("labelapp.workflow.urls")),
]

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
