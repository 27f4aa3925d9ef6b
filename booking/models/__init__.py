"""Booking models: core (organisations, bookings, allocations, quotas) and usage."""

from booking.models.core import (
    Allocation,
    ApiKey,
    Booking,
    DiscountRule,
    IdempotencyRecord,
    Invitation,
    Membership,
    Organization,
    Qualification,
    QuotaGrant,
    QuotaLedgerEntry,
)
from booking.models.occupancy import Occupancy
from booking.models.usage import BookingUsage, ContestedRound, DailyUsage, TelemetrySample

__all__ = [
    "Allocation",
    "ApiKey",
    "Booking",
    "BookingUsage",
    "ContestedRound",
    "DailyUsage",
    "DiscountRule",
    "IdempotencyRecord",
    "Invitation",
    "Membership",
    "Occupancy",
    "Organization",
    "Qualification",
    "QuotaGrant",
    "QuotaLedgerEntry",
    "TelemetrySample",
]
