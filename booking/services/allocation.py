"""Deciding a pending booking: the locking rule of ARCHITECTURE.md in one durable transaction.

1. lock the row whose availability shrinks (the equipment type or pool), with a lock timeout;
2. lock the organisation's applicable quota grants, sorted by primary key (inside quota_reserve);
3. re-read what holds the units or devices, choose with the pure allocator, insert allocation
   rows, move the booking out of `pending` with a conditional UPDATE (row count checked);
4. audit; notifications go out on commit, never while locks are held.
PostgreSQL's exclusion constraints are the backstop: if they fire (only possible with locking
turned off), the decision is simply made again and sees the winner's rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from booking.allocator import choose_devices, choose_units, find_alternatives
from booking.choices import BookingStatus
from booking.models import Allocation, Booking
from booking.policy import check_maintenance
from booking.services import notifications
from booking.services.decisions import decision_publish
from booking.services.quotas import QuotaExceeded, quota_reserve
from booking.services.resources import (
    buffer_of,
    node_states,
    policy_for,
    resource_maintenance,
    unit_states,
)
from equipment.models import AcceleratorPool, EquipmentType
from testbed.audit import audit_record
from testbed.choices import Channel
from testbed.db import set_lock_timeout

logger = logging.getLogger(__name__)

ALTERNATIVES_HORIZON = dt.timedelta(days=14)


class AllocationBusy(Exception):
    """The resource's lock could not be taken in time: the task retries, the user never sees it."""


def _locking_enabled() -> bool:
    return getattr(settings, "TESTBED_ALLOCATION_LOCKING", True)


def _resource_of(booking: Booking) -> EquipmentType | AcceleratorPool:
    if booking.equipment_type_id:
        kind = EquipmentType.objects.select_related("center").get(pk=booking.equipment_type_id)
        booking.equipment_type = kind
        return kind
    pool = AcceleratorPool.objects.select_related("center").get(pk=booking.pool_id or 0)
    booking.pool = pool
    return pool


def _lock_resource(resource) -> None:
    model = type(resource)
    model.objects.select_for_update().filter(pk=resource.pk).values_list("pk", flat=True).first()


def _placement(resource, booking: Booking, start: dt.datetime, end: dt.datetime):
    """(unit ids, None) or (device ids, node ids by device) free over [start, end) (buffer included)."""
    if isinstance(resource, EquipmentType):
        units = unit_states(resource, start, end)
        chosen = choose_units(units, start, end, booking.quantity, pinned=booking.pinned_unit_id)
        return (chosen, None) if chosen else (None, None)
    nodes = node_states(resource, start, end)
    placement = choose_devices(nodes, start, end, booking.quantity)
    if placement is None:
        return None, None
    node_of = {d.id: n.id for n in nodes for d in n.devices}
    return list(placement.device_ids), {d: node_of[d] for d in placement.device_ids}


def alternatives_for(resource, booking: Booking, *, now: dt.datetime, limit: int = 5) -> list[dict]:
    """Up to `limit` windows at or after the asked start, same duration and quantity, that fit now."""
    policy = policy_for(resource)
    buffer = buffer_of(resource)
    duration = booking.end - booking.start
    latest_start = min(
        booking.start + ALTERNATIVES_HORIZON, now + dt.timedelta(days=policy.max_lead_days)
    )
    horizon_end = latest_start + duration + buffer
    if isinstance(resource, EquipmentType):
        units = unit_states(resource, booking.start, horizon_end, exclude_booking=booking.pk)
        busy_ends = [e for u in units for _s, e in u.busy]

        def fits(s: dt.datetime, e: dt.datetime) -> bool:
            return (
                choose_units(units, s, e + buffer, booking.quantity, pinned=booking.pinned_unit_id)
                is not None
            )
    else:
        nodes = node_states(resource, booking.start, horizon_end, exclude_booking=booking.pk)
        busy_ends = [e for n in nodes for d in n.devices for _s, e in d.busy]

        def fits(s: dt.datetime, e: dt.datetime) -> bool:
            return choose_devices(nodes, s, e, booking.quantity) is not None

    windows = resource_maintenance(resource, booking.start, horizon_end)
    busy_ends.extend(w[1] for w in windows)
    min_start = max(booking.start, now + dt.timedelta(minutes=policy.min_lead_minutes))

    def fits_all(s: dt.datetime, e: dt.datetime) -> bool:
        return check_maintenance(windows, s, e) is None and fits(s, e)

    found = find_alternatives(
        fits_all,
        policy,
        start=min_start,
        duration=duration,
        until=latest_start,
        busy_ends=busy_ends,
        limit=limit,
    )
    return [{"start": s.isoformat(), "end": e.isoformat()} for s, e in found]


def _decide(booking_id: int, *, now: dt.datetime) -> str:
    with transaction.atomic(durable=True):
        set_lock_timeout(settings.TESTBED_LOCK_TIMEOUT_MS)
        # Simple queries, not one wide join: this runs for every booking and PostgreSQL spends
        # longer planning a six-table join than running these.
        booking = Booking.objects.select_related("user").filter(pk=booking_id).first()
        if booking is None:
            logger.warning("allocate: booking %s does not exist (deleted?)", booking_id)
            return "missing"
        if booking.status != BookingStatus.PENDING:
            return booking.status  # decided already: a task delivered twice changes nothing
        resource = _resource_of(booking)
        if _locking_enabled():
            _lock_resource(resource)
            # Look again under the lock: another worker may have decided meanwhile.
            status = Booking.objects.filter(pk=booking_id).values_list("status", flat=True).first()
            if status != BookingStatus.PENDING:
                return status or "missing"

        buffer = buffer_of(resource)
        windows = resource_maintenance(resource, booking.start, booking.end)
        rejection: tuple[str, str] | None = None
        targets, node_of = (None, None)
        if windows:
            w_start, w_end, reason = windows[0]
            rejection = (
                "maintenance",
                f"{resource.code} is under maintenance from {timezone.localtime(w_start):%Y-%m-%d %H:%M} "
                f"to {timezone.localtime(w_end):%Y-%m-%d %H:%M} ({reason}): choose another time.",
            )
        else:
            targets, node_of = _placement(resource, booking, booking.start, booking.end + buffer)
            if targets is None:
                what = "unit" if isinstance(resource, EquipmentType) else "device"
                rejection = (
                    "unavailable",
                    f"Not enough free {what}s of {resource.code} for ×{booking.quantity} over this window: "
                    "pick one of the alternatives, or another time.",
                )

        if settings.TESTBED_DECIDE_DELAY_MS:
            time.sleep(settings.TESTBED_DECIDE_DELAY_MS / 1000)  # fault drill only (see settings)

        over_quota = False
        if rejection is None:
            try:
                over_quota = quota_reserve(booking=booking, resource=resource, now=now)
            except QuotaExceeded as exc:
                rejection = ("quota_exceeded", exc.message)

        if rejection is not None:
            code, detail = rejection
            alternatives = (
                alternatives_for(resource, booking, now=now)
                if code in {"unavailable", "maintenance"}
                else []
            )
            updated = Booking.objects.filter(pk=booking_id, status=BookingStatus.PENDING).update(
                status=BookingStatus.REJECTED,
                rejection_code=code,
                rejection_detail=detail[:500],
                alternatives=alternatives,
                decided_at=now,
                updated_at=now,
                allocation_attempts=booking.allocation_attempts + 1,
            )
            new_status = BookingStatus.REJECTED
        else:
            assert targets is not None
            rows = [
                Allocation(
                    booking_id=booking_id,
                    unit_id=t,
                    start=booking.start,
                    end=booking.end + buffer,
                    created_at=now,
                )
                if node_of is None
                else Allocation(
                    booking_id=booking_id,
                    device_id=t,
                    node_id=node_of[t],
                    start=booking.start,
                    end=booking.end + buffer,
                    created_at=now,
                )
                for t in targets
            ]
            Allocation.objects.bulk_create(rows)
            new_status = (
                BookingStatus.AWAITING_APPROVAL
                if resource.requires_approval
                else BookingStatus.CONFIRMED
            )
            updated = Booking.objects.filter(pk=booking_id, status=BookingStatus.PENDING).update(
                status=new_status,
                over_quota=over_quota,
                decided_at=now,
                updated_at=now,
                allocation_attempts=booking.allocation_attempts + 1,
            )
        if updated != 1:
            # Somebody else moved it (e.g. cancelled while we decided): undo our writes.
            transaction.set_rollback(True)
            return (
                Booking.objects.filter(pk=booking_id).values_list("status", flat=True).first()
                or "missing"
            )
        booking.status = new_status
        audit_record(
            actor=None,
            channel=Channel.SYSTEM,
            action="booking.allocate",
            obj=booking,
            from_state=BookingStatus.PENDING,
            to_state=new_status,
            data={"targets": targets or [], "rejection": rejection[0] if rejection else None},
        )
        transaction.on_commit(lambda: decision_publish(booking_id, new_status), robust=True)
        if booking.user.email:
            transaction.on_commit(lambda: notifications.booking_decided(booking_id), robust=True)
        return new_status


def booking_allocate(*, booking_id: int, attempts: int = 5) -> str:
    """Decide a pending booking; returns the resulting status. Safe to call any number of times."""
    for attempt in range(1, attempts + 1):
        try:
            return _decide(booking_id, now=timezone.now())
        except IntegrityError as exc:
            # Only reachable when the exclusion constraint caught a race (locking turned off):
            # the rows of the winner are committed now, so deciding again sees them.
            logger.info(
                "allocate %s: constraint stopped a double booking (%s), deciding again",
                booking_id,
                exc,
            )
            if attempt == attempts:
                raise AllocationBusy(str(exc)) from exc
        except OperationalError as exc:
            if "lock" in str(exc).lower() or "locked" in str(exc).lower():
                raise AllocationBusy(str(exc)) from exc
            raise
    raise AllocationBusy("gave up")  # pragma: no cover - the loop returns or raises
