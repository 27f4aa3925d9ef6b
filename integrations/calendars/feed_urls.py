"""Public feed addresses (secret token in the path), included at /calendar/."""

from django.urls import path

from integrations.calendars.views import calendar_feed

urlpatterns = [
    path("<str:token>.ics", calendar_feed, name="calendar-feed"),
]
