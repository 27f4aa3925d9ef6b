from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from testbed.api.errors import api_not_found
from testbed.api.token import LogoutAllView, LogoutView, TokenView
from testbed.health import healthz

api_v1: list = [
    path("auth/token", TokenView.as_view(), name="auth-token"),
    path("auth/logout", LogoutView.as_view(), name="auth-logout"),
    path("auth/logout-all", LogoutAllView.as_view(), name="auth-logout-all"),
    path("", include("equipment.api.urls")),
    path("", include("booking.api.urls")),
    path("", include("integrations.webhooks.urls")),
    path("", include("integrations.calendars.urls")),
    path("", include("integrations.slurm.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's init script as its own file: no inline script (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # testbed/templates/drf_spectacular/redoc.html drops the web-font links: no CDN at run time.
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    re_path(r"^api/", api_not_found),  # problem+json for unknown API paths, even with DEBUG on
    path("i18n/", include("django.conf.urls.i18n")),
    path("calendar/", include("integrations.calendars.feed_urls")),
    path("", include("portal.urls")),
]

# Problem+json instead of Django's HTML pages for API paths (testbed/api/errors.py).
handler400 = "testbed.api.errors.api_handler400"
handler403 = "testbed.api.errors.api_handler403"
handler404 = "testbed.api.errors.api_handler404"
handler500 = "testbed.api.errors.api_handler500"
