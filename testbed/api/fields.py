"""Serializer fields shared by every app's API."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

FACILITY_ZONE = zoneinfo.ZoneInfo(settings.TIME_ZONE)


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an offset, or refused: a naive time is ambiguous across zones and DST."""

    default_error_messages = {
        **serializers.DateTimeField.default_error_messages,
        "naive": "Give the time with an offset, e.g. 2026-12-01T09:00:00+09:00; a time without one is ambiguous.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("default_timezone", FACILITY_ZONE)
        super().__init__(**kwargs)

    def to_internal_value(self, value):
        if isinstance(value, str):
            parsed = serializers.DateTimeField.to_internal_value(
                serializers.DateTimeField(default_timezone=zoneinfo.ZoneInfo("UTC")), value
            )
            # Parse once more, without a default zone, to learn whether an offset was given.
            from django.utils.dateparse import parse_datetime

            raw = parse_datetime(value.strip())
            if raw is not None and timezone.is_naive(raw):
                self.fail("naive")
            return parsed.astimezone(FACILITY_ZONE)
        if hasattr(value, "tzinfo") and value.tzinfo is None:
            self.fail("naive")
        return super().to_internal_value(value)

    def to_representation(self, value):
        if value is None:
            return None
        return value.astimezone(FACILITY_ZONE).isoformat()
