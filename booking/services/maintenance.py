"""Maintenance windows: creating one over confirmed bookings marks them affected and tells them."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from booking import events
from booking.choices import BookingStatus
from booking.models import Booking
from booking.services import notifications
from booking.services.allocation import alternatives_for
from equipment.models import AcceleratorPool, EquipmentType, EquipmentUnit, MaintenanceWindow, Node
from testbed.audit import audit_record
from testbed.errors import ServiceError

AFFECTABLE = [BookingStatus.AWAITING_APPROVAL, BookingStatus.CONFIRMED]


def maintenance_target_for(code: str):
    """An equipment type, pool, unit (by code) or node (by host name)."""
    for model, field in (
        (EquipmentType, "code"),
        (AcceleratorPool, "code"),
        (EquipmentUnit, "code"),
        (Node, "hostname"),
    ):
        found = model.objects.filter(**{field: code}).first()
        if found is not None:
            return found
    raise ServiceError(
        f"Nothing has the code {code!r}: give an equipment type, pool or unit code, or a node's host name.",
        field="resource",
    )


def _affected_bookings(*, target, start: dt.datetime, end: dt.datetime):
    """The one rule for which bookings a maintenance window over `target` in [start, end) hits:
    undecided or confirmed bookings of the type or pool, or holding the unit or a device of the node."""
    q = Q(start__lt=end, end__gt=start, status__in=AFFECTABLE)
    if isinstance(target, EquipmentType):
        q &= Q(equipment_type=target)
    elif isinstance(target, AcceleratorPool):
        q &= Q(pool=target)
    elif isinstance(target, EquipmentUnit):
        q &= Q(allocations__unit=target, allocations__active=True)
    else:
        q &= Q(allocations__node=target, allocations__active=True)
    return (
        Booking.objects.filter(q)
        .distinct()
        .select_related("equipment_type__center", "pool__center")
    )


def maintenance_preview(*, target, start: dt.datetime, end: dt.datetime) -> list[Booking]:
    """Read-only: the bookings a window over `target` in [start, end) would hit, soonest first,
    with their organisation and booker (what `maintenance_window_create` would mark affected).

    Refuses the same bad windows as the create service, naming the field; changes nothing."""
    _check_window(start=start, end=end)
    return list(
        _affected_bookings(target=target, start=start, end=end)
        .select_related("organization", "user")
        .order_by("start", "pk")
    )


def _announce(window: MaintenanceWindow, affected: list[int]) -> None:
    """maintenance.scheduled to each organisation with a booking in the window (after commit)."""
    by_org: dict[int, list[int]] = {}
    for organization_id, booking_id in Booking.objects.filter(pk__in=affected).values_list(
        "organization_id", "pk"
    ):
        by_org.setdefault(organization_id, []).append(booking_id)
    for organization_id, booking_ids in sorted(by_org.items()):
        events.publish(
            events.MAINTENANCE_SCHEDULED,
            organization_id=organization_id,
            data={"maintenance": events.maintenance_data(window), "affected_bookings": booking_ids},
        )


def _check_window(*, start: dt.datetime, end: dt.datetime) -> None:
    if end <= start:
        raise ServiceError("The end must be after the start.", field="end")


def maintenance_window_create(
    *, actor, target, start: dt.datetime, end: dt.datetime, reason: str, channel: str
) -> tuple[MaintenanceWindow, list[int]]:
    """Create the window; bookings it overlaps are marked affected, offered alternatives, emailed."""
    _check_window(start=start, end=end)
    if not reason.strip():
        raise ServiceError(
            "Say what the maintenance is (`reason`): affected bookers see it.", field="reason"
        )
    kwargs = {
        EquipmentType: "equipment_type",
        AcceleratorPool: "pool",
        EquipmentUnit: "unit",
        Node: "node",
    }
    field = kwargs[type(target)]
    now = timezone.now()
    with transaction.atomic():
        window = MaintenanceWindow.objects.create(
            start=start,
            end=end,
            reason=reason.strip(),
            created_by=actor if getattr(actor, "pk", None) else None,
            **{field: target},
        )
        affected = []
        for booking in _affected_bookings(target=target, start=start, end=end):
            booking.alternatives = alternatives_for(booking.resource, booking, now=now)
            booking.affected_by_maintenance = window
            booking.save(update_fields=["alternatives", "affected_by_maintenance", "updated_at"])
            affected.append(booking.pk)
        audit_record(
            actor=actor,
            channel=channel,
            action="maintenance.create",
            obj=window,
            data={"target": str(target), "affected_bookings": affected},
        )
        transaction.on_commit(
            lambda: notifications.maintenance_affects(affected, window.pk), robust=True
        )
        _announce(window, affected)
    return window, affected
