"""What a batch's decisions tell once they are made: the audit log in the transaction; after
commit, the waiting requests (booking/services/decisions.py), the bookers' emails, the operators'
alerts and the domain events (booking/events.py). Used by booking/services/allocation.py."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from booking import events
from booking.choices import BookingStatus
from booking.models import Booking
from booking.services import notifications
from booking.services.decisions import decisions_publish
from equipment.models import Device, EquipmentUnit
from testbed.audit import audit_entry
from testbed.choices import Channel
from testbed.models import AuditEntry

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How one booking of a batch was decided (written in bulk after the loop)."""

    booking: Booking
    status: str
    targets: list[int] = field(default_factory=list)
    rejection: tuple[str, str] | None = None
    error: str | None = None  # why deciding it raised (INTERNAL_ERROR only)
    alternatives: list[dict] = field(default_factory=list)
    over_quota: bool = False
    node_of: dict[int, int] | None = None  # device → node, for pool placements
    replaced: Booking | None = None  # a move's old booking, cancelled by this decision


def event_of(outcome: Outcome) -> str:
    if outcome.status == BookingStatus.REJECTED:
        return events.BOOKING_REJECTED
    if outcome.status == BookingStatus.AWAITING_APPROVAL:
        return events.APPROVAL_REQUESTED
    return events.BOOKING_CONFIRMED


def _published(outcomes: list[Outcome], now: dt.datetime) -> dict[int, dict]:
    """Each booking's decision as its API answer needs it (booking/api/views.py answers a
    `Prefer: wait` from this without reading the booking again): at most two reads for the
    whole batch, of the chosen units' codes and devices' names."""
    units = [t for o in outcomes if o.node_of is None for t in o.targets]
    devices = [t for o in outcomes if o.node_of is not None for t in o.targets]
    unit_code = dict(EquipmentUnit.objects.filter(pk__in=units).values_list("pk", "code"))
    device_label = {
        pk: {"node": hostname, "device": str(uuid), "device_index": index}
        for pk, hostname, uuid, index in Device.objects.filter(pk__in=devices).values_list(
            "pk", "node__hostname", "uuid", "index"
        )
    }
    empty = {"unit": None, "node": None, "device": None, "device_index": None}
    decided: dict[int, dict] = {}
    for o in outcomes:
        decision: dict = {
            "status": o.status,
            "over_quota": o.over_quota,
            "updated_at": now.isoformat(),
            "allocations": [
                {**empty, "unit": unit_code.get(t)}
                if o.node_of is None
                else {**empty, **device_label.get(t, {})}
                for t in o.targets
            ],
        }
        if o.rejection is not None:
            decision |= {
                "rejection_code": o.rejection[0],
                "rejection_detail": o.rejection[1][:500],
                "alternatives": o.alternatives,
            }
        decided[o.booking.pk] = decision
    return decided


def _publish(outcomes: list[Outcome], now: dt.datetime) -> None:
    try:
        decisions = _published(outcomes, now)
    except Exception:  # the row is the truth: waiters read it
        logger.warning("could not describe the decisions; publishing statuses", exc_info=True)
        decisions = {o.booking.pk: {"status": o.status} for o in outcomes}
    decisions_publish(decisions)


def on_commit_tell(outcomes: list[Outcome], now: dt.datetime | None = None) -> None:
    """After commit: wake waiting requests, email the bookers, alert operators of failures."""
    decided_at = now or timezone.now()
    transaction.on_commit(lambda: _publish(outcomes, decided_at), robust=True)
    for o in outcomes:  # the bookings in hand, as decided (their rows were updated in bulk)
        o.booking.status = o.status
        o.booking.rejection_code = o.rejection[0] if o.rejection else ""
    decided: list[tuple[str, Booking, dict]] = []
    for o in outcomes:
        if o.replaced is None:
            decided.append((event_of(o), o.booking, {}))
            continue
        # A move: the new booking took over, and the old one is cancelled (both told, each
        # naming the other, so a receiver that hears only cancellations still learns it).
        decided.append((events.BOOKING_MOVED, o.booking, {"moved_from": o.replaced.pk}))
        decided.append((events.BOOKING_CANCELLED, o.replaced, {"moved_to": o.booking.pk}))
    events.publish_decided(decided)
    for outcome in outcomes:
        if outcome.booking.user.email:
            transaction.on_commit(
                functools.partial(notifications.booking_decided, outcome.booking.pk), robust=True
            )
        if outcome.error is not None:
            transaction.on_commit(
                functools.partial(notifications.allocation_failed, outcome.booking.pk),
                robust=True,
            )


def audit(outcomes: list[Outcome]) -> None:
    AuditEntry.objects.bulk_create(
        audit_entry(
            actor=None,
            channel=Channel.SYSTEM,
            action="booking.allocate",
            obj=o.booking,
            from_state=BookingStatus.PENDING,
            to_state=o.status,
            data={"targets": o.targets, "rejection": o.rejection[0] if o.rejection else None}
            | ({"error": o.error} if o.error is not None else {}),
        )
        for o in outcomes
    )
