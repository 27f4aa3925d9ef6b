"""Deciding pending bookings: the locking rule of ARCHITECTURE.md in one durable transaction.

An allocation task decides the booking it was queued for and, in the same transaction, up to
TESTBED_ALLOCATION_BATCH - 1 other pending bookings that no other worker holds (SKIP LOCKED),
oldest first, so that under load one transaction and one read of each resource serve many
bookings; the tasks of the bookings decided along the way find them decided and do nothing.
1. lock the booking rows; then the rows whose availability shrinks (equipment types, then
   pools, by primary key), with a lock timeout; then the organisations' quota grants by pk;
2. read what holds the units or devices once per resource, choose with the pure allocator
   booking by booking (each sees the ones placed before it), insert allocation rows, move the
   bookings out of `pending`;
3. audit; decisions are published and emails queued on commit, never while locks are held.
PostgreSQL's exclusion constraints are the backstop: if they fire (only possible with locking
turned off), the decisions are simply made again and see the winner's rows.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from booking.allocator import (
    DeviceState,
    NodeState,
    UnitState,
    choose_devices,
    choose_units,
    find_alternatives,
)
from booking.choices import BookingStatus
from booking.models import Allocation, Booking
from booking.policy import check_maintenance
from booking.services import notifications
from booking.services.decisions import decisions_publish
from booking.services.quotas import QuotaExceeded, lock_grants, quota_reserve
from booking.services.resources import (
    buffer_of,
    node_states,
    policy_for,
    resource_maintenance,
    unit_states,
)
from equipment.models import AcceleratorPool, EquipmentType
from testbed.audit import audit_entry
from testbed.choices import Channel
from testbed.db import set_lock_timeout
from testbed.models import AuditEntry

logger = logging.getLogger(__name__)

ALTERNATIVES_HORIZON = dt.timedelta(days=14)


class AllocationBusy(Exception):
    """The resource's lock could not be taken in time: the task retries, the user never sees it."""


def _locking_enabled() -> bool:
    return getattr(settings, "TESTBED_ALLOCATION_LOCKING", True)


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


@dataclass
class _Resource:
    """One resource of a batch with what holds it over the span of the batch's bookings."""

    obj: EquipmentType | AcceleratorPool
    bookings: list[Booking]
    units: list[UnitState] | None = None
    nodes: list[NodeState] | None = None
    windows: list[tuple] = field(default_factory=list)

    def load(self) -> None:
        """One read of units or devices, allocations and maintenance for the whole batch."""
        buffer = buffer_of(self.obj)
        span_start = min(b.start for b in self.bookings)
        span_end = max(b.end for b in self.bookings) + buffer
        self.windows = resource_maintenance(self.obj, span_start, span_end)
        if isinstance(self.obj, EquipmentType):
            self.units = unit_states(self.obj, span_start, span_end)
        else:
            self.nodes = node_states(self.obj, span_start, span_end)

    def place(self, booking: Booking) -> tuple[list[int], dict[int, int] | None] | None:
        """(unit ids, None) or (device ids, node id by device), free over the booking; or None."""
        start, end = booking.start, booking.end + buffer_of(self.obj)
        if self.units is not None:
            chosen = choose_units(
                self.units, start, end, booking.quantity, pinned=booking.pinned_unit_id
            )
            return (chosen, None) if chosen else None
        assert self.nodes is not None
        placement = choose_devices(self.nodes, start, end, booking.quantity)
        if placement is None:
            return None
        node_of = {d.id: n.id for n in self.nodes for d in n.devices}
        return list(placement.device_ids), {d: node_of[d] for d in placement.device_ids}

    def hold(self, targets: list[int], start: dt.datetime, end: dt.datetime) -> None:
        """What later bookings of the batch see: these targets are now busy over [start, end)."""
        taken = set(targets)
        if self.units is not None:
            self.units = [
                UnitState(id=u.id, busy=(*u.busy, (start, end))) if u.id in taken else u
                for u in self.units
            ]
            return
        assert self.nodes is not None
        self.nodes = [
            NodeState(
                id=n.id,
                devices=tuple(
                    DeviceState(id=d.id, busy=(*d.busy, (start, end))) if d.id in taken else d
                    for d in n.devices
                ),
            )
            if any(d.id in taken for d in n.devices)
            else n
            for n in self.nodes
        ]


def _claim(booking_id: int, limit: int) -> tuple[str | None, list[Booking]]:
    """Lock the booking asked for, then up to limit-1 other pending ones nobody else holds.

    Returns the asked-for booking's status (None if it does not exist) and the batch, oldest
    first (empty when the asked-for booking is decided already). The asked-for row is waited for
    (under the lock timeout); the others are taken with SKIP LOCKED, so concurrent workers split
    the queue instead of queueing behind one another. Bookings of contested rounds wait for
    their round and are never taken uninvited.
    """
    status = (
        Booking.objects.select_for_update()
        .filter(pk=booking_id)
        .order_by()
        .values_list("status", flat=True)
        .first()
    )
    if status != BookingStatus.PENDING:
        return status, []  # the common case for a task whose booking a batch decided already
    ids = [booking_id]
    if limit > 1:
        ids += (
            Booking.objects.select_for_update(skip_locked=True)
            .filter(status=BookingStatus.PENDING, round__isnull=True)
            .exclude(pk=booking_id)
            .order_by("pk")
            .values_list("pk", flat=True)[: limit - 1]
        )
    # Locked above: read them whole now, with their users (for the decision emails).
    return status, list(Booking.objects.select_related("user").filter(pk__in=ids).order_by("pk"))


def _resources(bookings: list[Booking]) -> dict[tuple[str, int], _Resource]:
    """The batch's equipment types and pools, locked in one global order: types, then pools, by pk."""
    lock = _locking_enabled()
    found: dict[tuple[str, int], _Resource] = {}
    for kind, model, attr in (
        ("type", EquipmentType, "equipment_type_id"),
        ("pool", AcceleratorPool, "pool_id"),
    ):
        ids = sorted({getattr(b, attr) for b in bookings if getattr(b, attr)})
        if not ids:
            continue
        rows = model.objects.select_related("center").filter(pk__in=ids).order_by("pk")
        if lock:
            rows = rows.select_for_update(of=("self",))
        for obj in rows:
            found[(kind, obj.pk)] = _Resource(obj=obj, bookings=[])
    for b in bookings:
        entry = found[_key(b)]
        entry.bookings.append(b)
        if isinstance(entry.obj, EquipmentType):
            b.equipment_type = entry.obj
        else:
            b.pool = entry.obj
    return found


def _key(booking: Booking) -> tuple[str, int]:
    if booking.equipment_type_id:
        return ("type", booking.equipment_type_id)
    return ("pool", booking.pool_id or 0)


def _decide(booking_id: int, *, now: dt.datetime) -> str:
    """Decide the booking asked for, and the other pending bookings claimed with it, in one
    durable transaction under the locking rule. Returns the asked-for booking's status."""
    decided: list[tuple[Booking, str, list[int], tuple[str, str] | None]] = []
    with transaction.atomic(durable=True):
        set_lock_timeout(settings.TESTBED_LOCK_TIMEOUT_MS)
        status, batch = _claim(booking_id, settings.TESTBED_ALLOCATION_BATCH)
        if status is None:
            logger.warning("allocate: booking %s does not exist (deleted?)", booking_id)
            return "missing"
        if not batch:
            return status  # decided already: a task delivered twice changes nothing
        resources = _resources(batch)
        # Then the organisations' quota grants, all of them at once and sorted by primary key,
        # so that two batches can never wait on each other's grants.
        with_grants = lock_grants(organization_ids={b.organization_id for b in batch})
        for entry in resources.values():
            entry.load()
        if settings.TESTBED_DECIDE_DELAY_MS:
            time.sleep(settings.TESTBED_DECIDE_DELAY_MS / 1000)  # fault drill only (see settings)

        pending_rows: list[Allocation] = []
        confirmed: dict[tuple[str, bool], list[int]] = defaultdict(list)
        for booking in batch:
            entry = resources[_key(booking)]
            resource = entry.obj
            buffer = buffer_of(resource)
            rejection: tuple[str, str] | None = None
            placed = None
            clash = [w for w in entry.windows if w[0] < booking.end and w[1] > booking.start]
            if clash:
                w_start, w_end, reason = clash[0]
                rejection = (
                    "maintenance",
                    f"{resource.code} is under maintenance from "
                    f"{timezone.localtime(w_start):%Y-%m-%d %H:%M} to "
                    f"{timezone.localtime(w_end):%Y-%m-%d %H:%M} ({reason}): choose another time.",
                )
            else:
                placed = entry.place(booking)
                if placed is None:
                    what = "unit" if isinstance(resource, EquipmentType) else "device"
                    rejection = (
                        "unavailable",
                        f"Not enough free {what}s of {resource.code} for ×{booking.quantity} over "
                        "this window: pick one of the alternatives, or another time.",
                    )
            over_quota = False
            if rejection is None and booking.organization_id in with_grants:
                try:
                    over_quota = quota_reserve(booking=booking, resource=resource, now=now)
                except QuotaExceeded as exc:
                    rejection = ("quota_exceeded", exc.message)

            if rejection is not None:
                code, detail = rejection
                alternatives: list[dict] = []
                if code in {"unavailable", "maintenance"}:
                    _flush(pending_rows)  # alternatives read the rows this batch placed so far
                    alternatives = alternatives_for(resource, booking, now=now)
                Booking.objects.filter(pk=booking.pk).update(
                    status=BookingStatus.REJECTED,
                    rejection_code=code,
                    rejection_detail=detail[:500],
                    alternatives=alternatives,
                    decided_at=now,
                    updated_at=now,
                    allocation_attempts=F("allocation_attempts") + 1,
                )
                decided.append((booking, BookingStatus.REJECTED, [], rejection))
                continue
            assert placed is not None
            targets, node_of = placed
            end = booking.end + buffer
            entry.hold(targets, booking.start, end)
            pending_rows.extend(
                Allocation(
                    booking_id=booking.pk, unit_id=t, start=booking.start, end=end, created_at=now
                )
                if node_of is None
                else Allocation(
                    booking_id=booking.pk,
                    device_id=t,
                    node_id=node_of[t],
                    start=booking.start,
                    end=end,
                    created_at=now,
                )
                for t in targets
            )
            new_status: str = (
                BookingStatus.AWAITING_APPROVAL
                if resource.requires_approval
                else BookingStatus.CONFIRMED
            )
            confirmed[(new_status, over_quota)].append(booking.pk)
            decided.append((booking, new_status, targets, None))

        _flush(pending_rows)
        for (new_status, over_quota), ids in confirmed.items():
            Booking.objects.filter(pk__in=ids).update(
                status=new_status,
                over_quota=over_quota,
                decided_at=now,
                updated_at=now,
                allocation_attempts=F("allocation_attempts") + 1,
            )
        AuditEntry.objects.bulk_create(
            audit_entry(
                actor=None,
                channel=Channel.SYSTEM,
                action="booking.allocate",
                obj=booking,
                from_state=BookingStatus.PENDING,
                to_state=status,
                data={"targets": targets, "rejection": rejection[0] if rejection else None},
            )
            for booking, status, targets, rejection in decided
        )
        outcomes = {booking.pk: status for booking, status, _t, _r in decided}
        transaction.on_commit(lambda: decisions_publish(outcomes), robust=True)
        for booking, _status, _t, _r in decided:
            if booking.user.email:
                transaction.on_commit(
                    functools.partial(notifications.booking_decided, booking.pk), robust=True
                )
    if len(decided) > 1:
        logger.info("allocate: decided %d bookings in one transaction", len(decided))
    return outcomes[booking_id]


def _flush(rows: list[Allocation]) -> None:
    if rows:
        Allocation.objects.bulk_create(rows)
        rows.clear()


def booking_allocate(*, booking_id: int, attempts: int = 5) -> str:
    """Decide a pending booking; returns the resulting status. Safe to call any number of times."""
    # Under load most tasks find their booking decided by another task's batch: one plain read
    # answers them, without a transaction or a lock. A pending booking is read again under lock.
    status = (
        Booking.objects.filter(pk=booking_id).order_by().values_list("status", flat=True).first()
    )
    if status is None:
        logger.warning("allocate: booking %s does not exist (deleted?)", booking_id)
        return "missing"
    if status != BookingStatus.PENDING:
        return status
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
