"""URL routes: the HTML UI, the admin and the versioned REST API."""
from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from labelapp.common.views import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus: staff sessions or the METRICS_TOKEN bearer
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The schema answers 401 without credentials (SPECTACULAR_SETTINGS); the docs page sends people to log in.
    path("api/v1/docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
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

# An uncaught error raised outside a view: 503 when the database is away, the usual 500 page otherwise.
handler500 = "labelapp.common.middleware.server_error"
# A path no route matches: under /api/ a JSON 404, as the OpenAPI schema documents.
handler404 = "labelapp.common.apis.not_found"

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
