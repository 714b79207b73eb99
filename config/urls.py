"""URL configuration."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic.base import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from automation import views as automation_views
from config import api_urls, views
from config.api import api_not_found

handler404 = "config.views.page_not_found"
handler500 = "config.views.server_error"

# The API is tried first and, within it, the events list (``POST /api/v1/events/``, what
# integrations call most): Django tries patterns in order, and the router lists it after 40
# others. No two of these patterns match one path, so the order decides nothing else.
api_patterns = sorted(
    api_urls.urlpatterns, key=lambda pattern: getattr(pattern, "name", None) != "event-list"
)

urlpatterns = [
    path("api/v1/", include(api_patterns)),
    path("", views.home, name="home"),
    path(
        "favicon.ico",
        RedirectView.as_view(url=static("favicon.svg"), permanent=True),
        name="favicon",
    ),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", automation_views.prometheus_metrics, name="metrics"),
    path("monitoring/", automation_views.monitoring_page, name="monitoring"),
    path("exports/<int:pk>/download/", automation_views.export_download, name="export-download"),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/auth/", include("rest_framework.urls")),
    re_path(r"^api/", api_not_found),
    path("", include("tasks_inbox.urls")),
    path("", include("workflows.urls")),
]
