"""App configuration of integrations.calendars."""

from django.apps import AppConfig


class CalendarsConfig(AppConfig):
    name = "integrations.calendars"
    label = "calendars"
    default_auto_field = "django.db.models.BigAutoField"
