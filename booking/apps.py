from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BookingConfig(AppConfig):
    """Who books and what they get: organisations, bookings, allocation, quotas, usage."""

    name = "booking"
    verbose_name = _("Bookings")

    def ready(self) -> None:
        from booking.events import connect_model_signals

        connect_model_signals()
