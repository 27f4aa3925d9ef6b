"""API routes of integrations.webhooks (included under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from integrations.webhooks.api.views import WebhookEndpointViewSet

router = SimpleRouter()
router.trailing_slash = "/?"  # like the other API routes: no trailing slash, both accepted
router.register("webhook-endpoints", WebhookEndpointViewSet, basename="webhook-endpoint")

urlpatterns = router.urls
