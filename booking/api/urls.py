from django.urls import path
from rest_framework.routers import SimpleRouter

from booking.api import organizations, quotas, reports, views
from booking.api.telemetry import TelemetryView

router = SimpleRouter()
router.trailing_slash = "/?"  # API.md paths have no trailing slash; accept both
router.register("bookings", views.BookingViewSet, basename="booking")
router.register("organizations", organizations.OrganizationViewSet, basename="organization")
router.register("quota-grants", quotas.QuotaGrantViewSet, basename="quota-grant")
router.register(
    "maintenance-windows", views.MaintenanceWindowViewSet, basename="maintenance-window"
)
router.register("rounds", quotas.ContestedRoundViewSet, basename="round")
router.register("invitations", organizations.InvitationViewSet, basename="invitation")

urlpatterns = [
    path("availability", views.AvailabilityView.as_view(), name="availability"),
    path("usage", reports.UsageView.as_view(), name="usage"),
    path("reports/utilisation", reports.UtilisationView.as_view(), name="utilisation-report"),
    path("telemetry", TelemetryView.as_view(), name="telemetry"),
    *router.urls,
]
