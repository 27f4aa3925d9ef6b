"""API routes of integrations.webhooks (included under /api/v1/)."""

urlpatterns: list = []
