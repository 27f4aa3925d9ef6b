"""The lifecycle's one charging rule: which span of a booking is charged, in quota and price alike.

Pure: standard library only, no Django. The services (booking/services/bookings.py) ask this
module when a booking leaves the open states, and feed the one answer both to the quota ledger
(quotas.quota_settle) and to the price (fees.booking_price_set); the reports and rollups count
used time with the same clamp (`used_span`, and its SQL twin in booking/reports.py).

The rules, for people:
- Use counts from the later of check-in and the booking's start to the earlier of check-out and
  its end. Checking in early (CHECK_IN_EARLY) is allowed, but the time before the slot belongs to
  the booking before it and is never counted; a booking cannot use a device past its end (the
  next booking holds it), so check-out after the end counts as the end.
- A no-show is charged the booked time.
- A cancellation of a *confirmed* booking is late when it comes after the resource's free
  cancellation limit (`cancel_free_minutes` before the start) or after the start itself; a late
  cancellation is charged like a no-show: the booked time, in quota and price alike. An earlier
  one is free. Requests never confirmed (pending, awaiting approval) cancel free at any time.
- A request still awaiting approval at its start expires: free, hold released.
- A booking whose end has passed is history: it can no longer be cancelled, approved, rejected
  or checked in (the periodic services settle it as used, completed or no-show).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Check-in opens this long before the start (the time before the start is never counted).
CHECK_IN_EARLY = timedelta(minutes=30)


@dataclass(frozen=True)
class Charge:
    """The span a booking is charged for (None: nothing) and why, as the ledger records it."""

    start: datetime | None
    end: datetime | None
    reason: str

    @property
    def span(self) -> tuple[datetime, datetime] | None:
        if self.start is None or self.end is None or self.end <= self.start:
            return None
        return self.start, self.end

    @property
    def seconds(self) -> float:
        span = self.span
        return (span[1] - span[0]).total_seconds() if span else 0.0


def used_span(
    *,
    start: datetime,
    end: datetime,
    actual_start: datetime | None,
    actual_end: datetime | None,
) -> tuple[datetime, datetime] | None:
    """[max(check-in, start), min(check-out, end)), or None when nothing of the slot was used.

    A missing check-in counts from the start (pool sessions start by themselves), a missing
    check-out to the end.
    """
    used_from = max(actual_start or start, start)
    used_to = min(actual_end or end, end)
    return (used_from, used_to) if used_to > used_from else None


def use_charge(
    *,
    start: datetime,
    end: datetime,
    actual_start: datetime | None,
    actual_end: datetime | None,
    reason: str = "completed",
) -> Charge:
    """A completed (or reclaimed) booking is charged the part of its slot it used."""
    span = used_span(start=start, end=end, actual_start=actual_start, actual_end=actual_end)
    return Charge(span[0], span[1], reason) if span else Charge(None, None, reason)


def no_show_charge(*, start: datetime, end: datetime) -> Charge:
    return Charge(start, end, "no-show")


def is_late_cancellation(*, start: datetime, at: datetime, free_minutes: int) -> bool:
    """Later than `free_minutes` before the start (the start itself and after included)."""
    return at > start - timedelta(minutes=free_minutes) or at >= start


def cancellation_charge(
    *, was_confirmed: bool, start: datetime, end: datetime, at: datetime, free_minutes: int
) -> Charge:
    """Free for a request never confirmed, or a confirmed booking cancelled in time; otherwise
    the booked time, exactly what a no-show would be charged."""
    if not was_confirmed:
        return Charge(None, None, "cancelled before confirmation")
    if not is_late_cancellation(start=start, at=at, free_minutes=free_minutes):
        return Charge(None, None, "cancelled in time")
    after_start = at >= start
    return Charge(
        start,
        end,
        "cancelled after the start: charged like a no-show"
        if after_start
        else f"cancelled within {free_minutes} minutes of the start: charged as booked",
    )


def has_ended(*, end: datetime, now: datetime) -> bool:
    return now >= end


def has_started(*, start: datetime, now: datetime) -> bool:
    return now >= start
