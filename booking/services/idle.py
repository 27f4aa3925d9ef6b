"""Idle reclaim: the centre takes back accelerators a booking holds but does not use.

Each pool sets the rule: under `idle_threshold_pct` utilisation on every device for
`idle_minutes` flags the booking (the organisation is told); still idle `idle_grace_minutes`
after the flag, the rest of the slot is released: the devices are free from the next slot
boundary, the booking is completed with `actual_end` = now, and the quota hold is refunded
except for the time used. Utilisation coming back clears the flag.

Idleness is judged from telemetry only, and only when the samples cover the whole span: a
booking with no samples, or with a gap in them (agent down, node unreachable), is *unknown*,
never idle. Lack of data must not take a paying user's GPUs away.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from booking.choices import BookingStatus
from booking.models import Allocation, Booking, TelemetrySample
from booking.policy import align_up
from booking.services import notifications
from booking.services.bookings import _finish
from booking.services.resources import policy_for
from equipment.models import AcceleratorPool
from testbed.audit import audit_record
from testbed.choices import Channel
from testbed.errors import Conflict

logger = logging.getLogger(__name__)

# The longest silence between two readings of a device that still counts as covered: a few
# missed readings are fine, a stopped agent is not. Never more than a quarter of the span.
MAX_SAMPLE_GAP = dt.timedelta(minutes=10)
MIN_SAMPLE_GAP = dt.timedelta(minutes=1)


def _pool_of(booking: Booking) -> AcceleratorPool:
    assert booking.pool is not None, "idle reclaim is for pool bookings"
    return booking.pool


def _max_gap(span: dt.timedelta) -> dt.timedelta:
    return max(MIN_SAMPLE_GAP, min(MAX_SAMPLE_GAP, span / 4))


def booking_idle_verdict(
    *, booking: Booking, since: dt.datetime, now: dt.datetime, threshold_pct: float
) -> bool | None:
    """Was the booking idle over (since, now]? True, False, or None when the samples cannot tell.

    True: every device it holds has readings covering the span (from near `since` to near `now`,
    no long gap) and every reading is under `threshold_pct`. False: some reading is at or above it.
    None: a device has no readings, or they leave part of the span uncovered.
    """
    device_ids = set(
        Allocation.objects.filter(booking=booking, active=True, device__isnull=False).values_list(
            "device_id", flat=True
        )
    )
    if not device_ids:
        return None
    stats = {
        row["device_id"]: row
        for row in TelemetrySample.objects.filter(booking=booking, at__gt=since, at__lte=now)
        .values("device_id")
        .annotate(peak=Max("utilization_pct"), first=Min("at"), last=Max("at"), n=Count("id"))
    }
    if any(row["peak"] >= threshold_pct for row in stats.values()):
        return False
    gap = _max_gap(now - since)
    for device_id in device_ids:
        row = stats.get(device_id)
        if row is None or row["first"] - since > gap or now - row["last"] > gap:
            return None
    # Edges are covered and every reading is low: look for holes in between (rare path, so the
    # readings are fetched only here).
    previous: dict[int, dt.datetime] = {}
    for device_id, at in (
        TelemetrySample.objects.filter(
            booking=booking, at__gt=since, at__lte=now, device_id__in=device_ids
        )
        .order_by("device_id", "at")
        .values_list("device_id", "at")
        .iterator(chunk_size=5000)
    ):
        last = previous.get(device_id)
        if last is not None and at - last > gap:
            return None
        previous[device_id] = at
    return True


def _flag(booking: Booking, *, now: dt.datetime, window_start: dt.datetime) -> bool:
    with transaction.atomic():
        updated = Booking.objects.filter(
            pk=booking.pk, status=BookingStatus.ACTIVE, idle_flagged_at__isnull=True
        ).update(idle_flagged_at=now, updated_at=now)
        if updated != 1:
            return False
        pool = _pool_of(booking)
        audit_record(
            actor=None,
            channel=Channel.SYSTEM,
            action="booking.idle_flag",
            obj=booking,
            data={
                "threshold_pct": pool.idle_threshold_pct,
                "idle_minutes": pool.idle_minutes,
                "since": window_start.isoformat(),
                "grace_minutes": pool.idle_grace_minutes,
            },
        )
        transaction.on_commit(
            lambda: notifications.booking_changed(booking.pk, "idle_flagged"), robust=True
        )
    return True


def _unflag(booking: Booking, *, now: dt.datetime) -> bool:
    with transaction.atomic():
        updated = Booking.objects.filter(
            pk=booking.pk, idle_flagged_at=booking.idle_flagged_at
        ).update(idle_flagged_at=None, updated_at=now)
        if updated != 1:
            return False
        audit_record(
            actor=None,
            channel=Channel.SYSTEM,
            action="booking.idle_unflag",
            obj=booking,
            data={
                "flagged_at": booking.idle_flagged_at.isoformat() if booking.idle_flagged_at else ""
            },
        )
    return True


def bookings_flag_idle(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Flag active pool bookings idle for their pool's `idle_minutes`; clear flags whose use came back.

    A pool with `idle_minutes` 0 is never flagged (idle reclaim off). Returns counts.
    """
    now = now or timezone.now()
    flagged = unflagged = 0
    candidates = Booking.objects.filter(
        status=BookingStatus.ACTIVE, pool__isnull=False
    ).select_related("pool")
    for booking in candidates.iterator():
        pool = _pool_of(booking)
        if booking.idle_flagged_at is not None:
            verdict = booking_idle_verdict(
                booking=booking,
                since=booking.idle_flagged_at,
                now=now,
                threshold_pct=pool.idle_threshold_pct,
            )
            if verdict is False and _unflag(booking, now=now):
                unflagged += 1
            continue
        if not pool.idle_minutes:
            continue
        window_start = now - dt.timedelta(minutes=pool.idle_minutes)
        # Time checked in before the slot belongs to the booking before it (lifecycle.used_span).
        if max(booking.actual_start or booking.start, booking.start) > window_start:
            continue  # not running long enough to have been idle that long
        verdict = booking_idle_verdict(
            booking=booking, since=window_start, now=now, threshold_pct=pool.idle_threshold_pct
        )
        if verdict is True and _flag(booking, now=now, window_start=window_start):
            flagged += 1
    return {"flagged": flagged, "unflagged": unflagged}


def booking_reclaim(
    *, booking: Booking, now: dt.datetime, actor=None, channel: str = Channel.SYSTEM
) -> Booking:
    """Take back an active pool booking's devices from the next slot boundary on and complete it.

    The quota hold is released in full and the time used (start to now) consumed; the price is set
    from that. Refuses (Conflict) when the booking is no longer active or no longer flagged.
    """
    with transaction.atomic():
        locked = (
            Booking.objects.select_for_update(of=("self",))
            .select_related("pool__center")
            .filter(pk=booking.pk)
            .first()
        )
        if (
            locked is None
            or locked.status != BookingStatus.ACTIVE
            or locked.idle_flagged_at is None
        ):
            raise Conflict(
                f"Booking #{booking.pk} is no longer an active idle-flagged booking: nothing to reclaim.",
                code="invalid_state",
            )
        # Bookings start on slot boundaries, so the devices are of use to others from the next one.
        release_at = min(align_up(policy_for(_pool_of(locked)), now), locked.end)
        booking = _finish(
            booking=locked,
            actor=actor,
            channel=channel,
            action="booking.reclaim",
            now=now,
            actual_end=now,
            from_states=[BookingStatus.ACTIVE],
            release_at=release_at,
            reason="reclaimed: idle",
            reclaimed_at=now,
        )
        transaction.on_commit(
            lambda: notifications.booking_changed(booking.pk, "reclaimed"), robust=True
        )
    return booking


def bookings_reclaim_idle(*, now: dt.datetime | None = None) -> list[int]:
    """Reclaim bookings flagged at least their pool's grace ago and idle ever since. Returns their ids."""
    now = now or timezone.now()
    reclaimed = []
    flagged = Booking.objects.filter(
        status=BookingStatus.ACTIVE,
        pool__isnull=False,
        idle_flagged_at__isnull=False,
        end__gt=now,
    ).select_related("pool")
    for booking in flagged.iterator():
        pool = _pool_of(booking)
        assert booking.idle_flagged_at is not None
        if booking.idle_flagged_at > now - dt.timedelta(minutes=pool.idle_grace_minutes):
            continue
        verdict = booking_idle_verdict(
            booking=booking,
            since=booking.idle_flagged_at,
            now=now,
            threshold_pct=pool.idle_threshold_pct,
        )
        if verdict is not True:
            continue  # busy again (the flag task clears the flag) or unknown: never reclaim on no data
        try:
            booking_reclaim(booking=booking, now=now)
        except Conflict:
            continue
        reclaimed.append(booking.pk)
        logger.info("reclaimed idle booking %s", booking.pk)
    return reclaimed
