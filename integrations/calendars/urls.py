"""API routes of integrations.calendars (included under /api/v1/)."""

urlpatterns: list = []
