"""Domain events: what happened to a booking, a quota grant or a resource, told after commit.

Services call `publish(...)` at the moment of a change; receivers (webhook delivery, the Slurm
reservation sync, ...) connect to `event_published` and are called only once the transaction
commits (at once outside one), so a rolled-back change is never announced and no receiver runs
while the service holds locks. Receivers must be cheap: they queue Celery work and return. A
receiver that raises is logged and never undoes the change or stops the other receivers.

Every event carries the organisation it concerns (`organization_id`): an integration of one
organisation only ever hears of its own. An event that concerns several organisations (a
maintenance window over several companies' bookings) is published once per organisation.
`data` is plain JSON (the webhook body's `data`); `BOOKING_EVENTS` etc. list the public names.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

logger = logging.getLogger(__name__)

BOOKING_CONFIRMED = "booking.confirmed"
BOOKING_REJECTED = "booking.rejected"
BOOKING_CANCELLED = "booking.cancelled"
BOOKING_MOVED = "booking.moved"
BOOKING_NO_SHOW = "booking.no_show"
BOOKING_RECLAIMED = "booking.reclaimed"
BOOKING_COMPLETED = "booking.completed"  # internal (reservation sync): not offered to webhooks
APPROVAL_REQUESTED = "approval.requested"
QUOTA_THRESHOLD = "quota.threshold"
MAINTENANCE_SCHEDULED = "maintenance.scheduled"
MAINTENANCE_CHANGED = "maintenance.changed"  # internal: a window was edited or deleted

# What an organisation may subscribe to (webhooks), in the order the docs list them.
PUBLIC_EVENTS = (
    BOOKING_CONFIRMED,
    BOOKING_REJECTED,
    BOOKING_CANCELLED,
    BOOKING_MOVED,
    BOOKING_NO_SHOW,
    BOOKING_RECLAIMED,
    APPROVAL_REQUESTED,
    QUOTA_THRESHOLD,
    MAINTENANCE_SCHEDULED,
)

# Sent after commit with: event (a DomainEvent).
event_published = Signal()


@dataclass(frozen=True)
class DomainEvent:
    type: str
    organization_id: int | None
    data: dict
    id: str = field(default_factory=lambda: f"evt_{uuid.uuid4().hex}")
    occurred_at: dt.datetime = field(default_factory=timezone.now)


def _send(event: DomainEvent) -> None:
    from testbed import readcache

    with readcache.scope():  # receivers read what they need from the read cache
        for receiver, result in event_published.send_robust(sender=DomainEvent, event=event):
            if isinstance(result, Exception):
                logger.error(
                    "event %s (%s): receiver %r failed: %s", event.type, event.id, receiver, result
                )


def _send_all(events: list[DomainEvent]) -> None:
    from testbed import readcache

    with readcache.scope():  # one generation read for the whole batch
        for event in events:
            _send(event)


def publish(type_: str, *, organization_id: int | None, data: dict) -> DomainEvent:
    """Announce `type_` to the receivers once the current transaction commits."""
    event = DomainEvent(type=type_, organization_id=organization_id, data=data)
    transaction.on_commit(lambda: _send(event), robust=True)
    return event


def _iso(moment: dt.datetime | None) -> str | None:
    return timezone.localtime(moment).isoformat() if moment is not None else None


def booking_data(booking, **extra) -> dict:
    """The public picture of a booking in an event body (no price, no other organisation)."""
    resource = booking.equipment_type if booking.equipment_type_id else booking.pool
    base = getattr(settings, "TESTBED_PUBLIC_URL", "").rstrip("/")
    return {
        "booking": {
            "id": booking.pk,
            "status": booking.status,
            "organization": booking.organization.slug,
            "booked_by": booking.user.get_username(),
            "resource": {
                "kind": "equipment" if booking.equipment_type_id else "pool",
                "code": resource.code if resource is not None else None,
            },
            "quantity": booking.quantity,
            "start": _iso(booking.start),
            "end": _iso(booking.end),
            "rejection_code": booking.rejection_code or None,
            "url": f"{base}/bookings/{booking.pk}/" if base else f"/bookings/{booking.pk}/",
        },
        **extra,
    }


def publish_decided(decided: list[tuple[str, Any, dict]]) -> None:
    """Announce a batch of (event type, booking, extra data) after commit, from the bookings in
    hand (their organisation, user and resource loaded; status as decided): no read then."""
    if not decided:
        return
    built = [
        DomainEvent(type=t, organization_id=b.organization_id, data=booking_data(b, **extra))
        for t, b, extra in decided
    ]
    transaction.on_commit(lambda: _send_all(built), robust=True)


def publish_bookings(type_: str, booking_ids: list[int], **extra) -> None:
    """Announce the same event for several bookings, read in one query at commit time."""
    if not booking_ids:
        return

    def _after_commit() -> None:
        from booking.models import Booking

        rows = Booking.objects.select_related("organization", "user", "equipment_type", "pool")
        _send_all(
            [
                DomainEvent(
                    type=type_,
                    organization_id=booking.organization_id,
                    data=booking_data(booking, **extra),
                )
                for booking in rows.filter(pk__in=booking_ids).order_by("pk")
            ]
        )

    transaction.on_commit(_after_commit, robust=True)


def maintenance_data(window) -> dict:
    """The public picture of a maintenance window (what it covers and when)."""
    target = {
        "equipment_type": window.equipment_type_id,
        "unit": window.unit_id,
        "pool": window.pool_id,
        "node": window.node_id,
    }
    kind, target_id = next(((k, v) for k, v in target.items() if v), (None, None))
    return {
        "id": window.pk,
        "target": {"kind": kind, "id": target_id, "name": str(getattr(window, kind, "") or "")}
        if kind
        else None,
        "start": _iso(window.start),
        "end": _iso(window.end),
        "reason": window.reason,
    }


def _maintenance_changed(sender, instance, **kwargs) -> None:
    """Any save or delete of a maintenance window (API, admin, service): internal event for
    integrations that mirror windows elsewhere (Slurm MAINT reservations)."""
    data = {"maintenance": maintenance_data(instance), "deleted": "created" not in kwargs}
    publish(MAINTENANCE_CHANGED, organization_id=None, data=data)


def connect_model_signals() -> None:
    """Called by BookingConfig.ready()."""
    from django.db.models.signals import post_delete, post_save

    from equipment.models import MaintenanceWindow

    post_save.connect(_maintenance_changed, sender=MaintenanceWindow, dispatch_uid="events-mw-save")
    post_delete.connect(
        _maintenance_changed, sender=MaintenanceWindow, dispatch_uid="events-mw-delete"
    )
