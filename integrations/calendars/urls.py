"""API routes of integrations.calendars (included under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from integrations.calendars.api.views import CalendarFeedViewSet

router = SimpleRouter()
router.trailing_slash = "/?"  # API.md paths have no trailing slash; accept both
router.register("calendar-feeds", CalendarFeedViewSet, basename="calendar-feed")

urlpatterns = router.urls
