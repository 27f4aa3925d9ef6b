"""Serializer fields shared by every app's API, and the facility-wide bounds on time they enforce.

Every date, datetime and duration the API accepts is bounded *before* any arithmetic is done
with it, so no input can overflow Python's calendar (year 1–9999) or the database's columns:

- a datetime or date lies in the years EARLIEST_YEAR..LATEST_YEAR and within HORIZON of now
  (bookings, availability, reports, maintenance windows, quota grant periods, filters);
- lead times, durations and grace periods of the catalogue are at most the MAX_* below.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

FACILITY_ZONE = zoneinfo.ZoneInfo(settings.TIME_ZONE)

# The calendar the API speaks: anything outside is a typo or a probe, never a real booking.
EARLIEST_YEAR = 2000
LATEST_YEAR = 2100
# How far from now (either way) any window the API accepts may lie: bookings, availability,
# reports, maintenance windows and quota grant periods.
HORIZON_YEARS = 10
HORIZON = dt.timedelta(days=366 * HORIZON_YEARS)
# Catalogue bounds: booking lead time and durations, in the units of the model fields.
MAX_LEAD_DAYS = 2 * 366  # how far ahead a resource may take bookings
MAX_BOOKING_MINUTES = 90 * 24 * 60  # the longest booking any resource may allow (90 days)
MAX_MINOR_MINUTES = 30 * 24 * 60  # lead, buffer, grace and idle periods (30 days)
MAX_MAINTENANCE = dt.timedelta(days=366)  # one maintenance window
MAX_GRANT_PERIOD_DAYS = 3 * 366  # one quota grant's period

HORIZON_HINT = (
    f"years {EARLIEST_YEAR}–{LATEST_YEAR}, within {HORIZON_YEARS} years of now, "
    "e.g. 2026-12-01T09:00:00+09:00"
)


def now_local() -> dt.datetime:
    return timezone.now().astimezone(FACILITY_ZONE)


def outside_horizon(moment: dt.datetime | dt.date, *, now: dt.datetime | None = None) -> bool:
    """True when `moment` lies outside the calendar years or the horizon around now."""
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        return True
    now = now or now_local()
    if isinstance(moment, dt.datetime):
        return abs(moment - now) > HORIZON
    return abs(moment - now.date()) > HORIZON


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an offset, or refused: a naive time is ambiguous across zones and DST.

    The year must lie in EARLIEST_YEAR..LATEST_YEAR and the moment within HORIZON of now,
    checked on the text as given, before any conversion that could overflow.
    """

    default_error_messages = {
        **serializers.DateTimeField.default_error_messages,
        "invalid": "Give an ISO 8601 time with an offset, e.g. 2026-12-01T09:00:00+09:00.",
        "naive": "Give the time with an offset, e.g. 2026-12-01T09:00:00+09:00; a time without one is ambiguous.",
        "out_of_range": f"Give a time in {HORIZON_HINT}.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("default_timezone", FACILITY_ZONE)
        super().__init__(**kwargs)

    def to_internal_value(self, value):
        if isinstance(value, str):
            if "\x00" in value:
                self.fail("invalid")
            try:
                raw = parse_datetime(value.strip())
            except ValueError:  # well-formed but impossible, e.g. 2026-02-30
                raw = None
            if raw is None:
                self.fail("invalid")
        elif isinstance(value, dt.datetime):
            raw = value
        else:
            self.fail("invalid")
        if timezone.is_naive(raw):
            self.fail("naive")
        if not EARLIEST_YEAR <= raw.year <= LATEST_YEAR:
            self.fail("out_of_range")
        moment = raw.astimezone(FACILITY_ZONE)
        if outside_horizon(moment):
            self.fail("out_of_range")
        return moment

    def to_representation(self, value):
        if value is None:
            return None
        return value.astimezone(FACILITY_ZONE).isoformat()


class BoundedDateField(serializers.DateField):
    """A calendar date (YYYY-MM-DD) in EARLIEST_YEAR..LATEST_YEAR and within HORIZON of today."""

    default_error_messages = {
        **serializers.DateField.default_error_messages,
        "invalid": "Give a date as YYYY-MM-DD, e.g. 2026-12-01.",
        "out_of_range": f"Give a date in years {EARLIEST_YEAR}–{LATEST_YEAR}, within {HORIZON_YEARS} years of today.",
    }

    def to_internal_value(self, value):
        if isinstance(value, str) and "\x00" in value:
            self.fail("invalid")
        day = super().to_internal_value(value)
        if outside_horizon(day):
            self.fail("out_of_range")
        return day


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
        "example": "09:00",
        "description": "A wall-clock time in the facility's zone (Asia/Seoul), HH:MM, no offset.",
    }
)
class LocalTimeField(serializers.TimeField):
    """A facility wall-clock time as "HH:MM" (opening hours): no offset, so not OpenAPI's `time`."""

    default_error_messages = {
        **serializers.TimeField.default_error_messages,
        "invalid": "Give a time of day as HH:MM, e.g. 09:00.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("format", "%H:%M")
        kwargs.setdefault("input_formats", ["%H:%M", "%H:%M:%S"])
        super().__init__(**kwargs)

    def to_internal_value(self, value):
        if isinstance(value, dt.time):
            return value
        if not isinstance(value, str) or "\x00" in value:
            self.fail("invalid", format="HH:MM")
        return super().to_internal_value(value)


def iso(value: dt.datetime | None) -> str | None:
    """A datetime as ISO 8601 in the facility's zone (+09:00), the one form every response uses."""
    return None if value is None else value.astimezone(FACILITY_ZONE).isoformat()
