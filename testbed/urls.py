from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from testbed.api.token import TokenView
from testbed.health import healthz

api_v1: list = [
    path("auth/token", TokenView.as_view(), name="auth-token"),
    path("", include("equipment.api.urls")),
    path("", include("booking.api.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # testbed/templates/drf_spectacular/redoc.html drops the web-font links: no CDN at run time.
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("booking.urls")),
]
