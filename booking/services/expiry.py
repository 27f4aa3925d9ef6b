"""Expiry of requests still undecided at their start: the `booking.expire_unapproved` beat task's work.

A request awaiting approval (or never allocated) whose start passes would otherwise hold its
units and quota and could be approved late into a no-show bill; it expires instead.
"""

from __future__ import annotations

import datetime as dt
import functools

from django.db import transaction
from django.utils import timezone

from booking.choices import BookingStatus
from booking.models import Booking
from booking.services import notifications
from booking.services.bookings import UNDECIDED, _local, _release_allocations, _transition
from booking.services.quotas import quota_release
from testbed.choices import Channel
from testbed.db import sweep_step
from testbed.errors import Conflict


def bookings_expire_unapproved(*, now: dt.datetime | None = None, limit: int = 1000) -> int:
    """Requests still undecided at their start (awaiting approval, or never allocated) expire:
    `rejected` with code `expired`, allocations and quota hold released, nothing charged, the
    booker and the organisation's managers told, an audit entry. Each is a conditional UPDATE on
    the status, so two sweeps, or a sweep racing an approval, move a booking at most once."""
    now = now or timezone.now()
    done = 0
    due = (
        Booking.objects.filter(status__in=UNDECIDED, start__lte=now)
        .select_related("equipment_type", "pool")
        .order_by("start", "pk")[:limit]
    )
    for booking in list(due):
        detail = (
            f"No operator approved this request before its start ({_local(booking.start)}): it "
            "expired, its hold is released and nothing is charged. Book another window."
            if booking.status == BookingStatus.AWAITING_APPROVAL
            else f"This request could not be allocated before its start ({_local(booking.start)}): "
            "it expired and nothing is charged. Book another window."
        )
        with sweep_step("expiry", booking.pk):
            try:
                booking = _transition(
                    booking=booking,
                    actor=None,
                    channel=Channel.SYSTEM,
                    action="booking.expire",
                    from_states=[booking.status],
                    to_state=BookingStatus.REJECTED,
                    now=now,
                    rejection_code="expired",
                    rejection_detail=detail,
                    decided_at=now,
                )
            except Conflict:
                continue  # decided meanwhile (or by another sweep)
            _release_allocations(booking)
            quota_release(booking=booking, now=now, reason="expired: undecided at its start")
            transaction.on_commit(
                functools.partial(notifications.booking_changed, booking.pk, "expired"), robust=True
            )
            done += 1
    return done
