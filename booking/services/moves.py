"""Moving a booking to another window: the old slot is kept until the new one is confirmed.

`booking_move` stores the new window as a `pending` booking that `replaces` the old one (same
organisation, resource, quantity, purpose and pinned unit, the same policy checks as any new
booking: it goes through booking_request) and queues its allocation on commit. The old booking
stays confirmed and keeps its units or devices and its quota hold.

The allocation batch (booking/services/allocation.py) decides the replacement like any booking,
with three differences, all made here or in the modules named:
- the old booking's allocations count as free for its replacement, so moving one hour later on
  the same GPU works (placement.BatchResource.place(freeing=...));
- its quota is judged as if the old hold were released (QuotaBook.reserve(credit=...)), so an
  organisation at its limit can still move a booking of the same size;
- when it is confirmed, in the same transaction, `move_complete` cancels the old booking without
  fee or quota charge (hold released, allocations released, audit `booking.move` naming both
  ids): there is never a moment with neither slot, and never one with both.
When it is rejected (window taken, maintenance, quota) the old booking is unchanged: the
rejection and its alternatives are on the new booking, which is what the booker sees.

One pending move per booking: a second is refused with 409 `invalid_state` (cancel the pending
one, free, to ask for another window). A move whose old booking changed while it waited
(cancelled, checked in, started) is rejected with `move_obsolete`. Resources that need an
operator's approval are not moved (the replacement would hold units while waiting for it).

Lock order (ARCHITECTURE.md): the batch's booking rows, then the old bookings they replace
(by pk, `moves_lock`), then the resources, then the quota grants.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from booking.choices import BookingStatus
from booking.lifecycle import has_started
from booking.models import Allocation, Booking
from booking.services.access import check_can_change_booking, role_in
from booking.services.placement import Held
from booking.services.quotas import holds_by_booking, quota_release
from testbed.audit import audit_record
from testbed.choices import Channel
from testbed.errors import Conflict, NotFound, ServiceError

UNDECIDED = (BookingStatus.PENDING, BookingStatus.AWAITING_APPROVAL)
OBSOLETE = "move_obsolete"


def _local(moment: dt.datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M}"


def _why_not_movable(booking: Booking, *, now: dt.datetime, requires_approval: bool) -> str | None:
    """Why this booking cannot be moved now (its state, its start, its resource), or None."""
    if booking.status != BookingStatus.CONFIRMED:
        return (
            f"Booking #{booking.pk} is {booking.status}: only a confirmed booking that has not "
            "started can be moved."
        )
    if has_started(start=booking.start, now=now):
        return (
            f"Booking #{booking.pk} started at {_local(booking.start)}: it can no longer be "
            "moved. Book the new window as a new booking instead."
        )
    if requires_approval:
        return (
            f"Booking #{booking.pk} is for a resource whose bookings an operator approves: it "
            "cannot be moved. Book the new window, then cancel this booking."
        )
    return None


def pending_move_of(booking: Booking) -> Booking | None:
    """The move of this booking still waiting for its decision, if any."""
    return Booking.objects.filter(replaces=booking, status__in=UNDECIDED).order_by("pk").first()


def booking_can_move(*, actor, booking: Booking, now: dt.datetime | None = None) -> bool:
    """For pages: whether this person may move this booking now (load it with its resource)."""
    try:
        check_can_change_booking(actor=actor, booking=booking)
    except ServiceError:
        return False
    now = now or timezone.now()
    if _why_not_movable(booking, now=now, requires_approval=booking.resource.requires_approval):
        return False
    return pending_move_of(booking) is None


def _requester(actor, booking: Booking):
    """In whose name the new window is requested: the booker's, so that their qualification is
    what counts and they keep the right to check in; the actor's when the booker can no longer
    book for the organisation (a key's service account, a member who left)."""
    if booking.user_id == getattr(actor, "pk", None):
        return actor
    if role_in(booking.user, booking.organization) is not None:
        return booking.user
    return actor


def booking_move(
    *,
    actor,
    booking: Booking,
    start: dt.datetime,
    end: dt.datetime,
    channel: str,
    now: dt.datetime | None = None,
) -> Booking:
    """Ask for `booking` to move to [start, end): returns the new `pending` booking.

    The old booking stays confirmed until the new one is confirmed (see the module docstring).
    Refusals raise ServiceError naming the field (the window's rules, as for a new booking) or
    Conflict `invalid_state` (not confirmed, started, a move already pending); nothing changes.
    """
    from booking.services.bookings import booking_request

    now = now or timezone.now()
    check_can_change_booking(actor=actor, booking=booking)
    with transaction.atomic():
        current = (
            Booking.objects.select_for_update(of=("self",))
            .select_related("organization", "user", "equipment_type", "pool", "pinned_unit")
            .filter(pk=booking.pk)
            .first()
        )
        if current is None:
            raise NotFound(f"Booking #{booking.pk} does not exist.")
        why = _why_not_movable(
            current, now=now, requires_approval=current.resource.requires_approval
        )
        if why:
            raise Conflict(why, code="invalid_state")
        waiting = pending_move_of(current)
        if waiting is not None:
            raise Conflict(
                f"Booking #{current.pk} already has a move waiting for its decision (booking "
                f"#{waiting.pk}): wait for it, or cancel #{waiting.pk} to ask for another window.",
                code="invalid_state",
            )
        aware = not (timezone.is_naive(start) or timezone.is_naive(end))
        if aware and start == current.start and end == current.end:
            raise ServiceError(
                "The new window is the booking's current window: choose another start or end.",
                field="start",
            )
        moved = booking_request(
            actor=_requester(actor, current),
            organization=current.organization,
            resource_code=current.resource_code,
            quantity=current.quantity,
            start=start,
            end=end,
            purpose=current.purpose,
            unit_code=current.pinned_unit.code if current.pinned_unit else None,
            channel=channel,
            now=now,
        )
        # Same transaction: the worker (queued on commit) never sees it without `replaces`.
        Booking.objects.filter(pk=moved.pk).update(replaces=current, user=current.user)
        moved.replaces = current
        moved.user = current.user
        audit_record(
            actor=actor,
            channel=channel,
            action="booking.move_request",
            obj=current,
            data={"to": moved.pk, "start": start.isoformat(), "end": end.isoformat()},
        )
    return moved


# --- the decision hook (booking/services/allocation.py) ------------------------------------------


@dataclass
class Move:
    """A replacement being decided: the old booking (locked) and what it holds."""

    old: Booking
    freed: list[Held] = field(default_factory=list)  # its active allocations
    credit: dict[int, Decimal] = field(default_factory=dict)  # its quota hold, by grant


def moves_lock(batch: list[Booking]) -> dict[int, Move]:
    """Lock the old bookings of the batch's moves, by primary key, and read what they hold.

    Call inside the allocation transaction right after the batch's own rows are locked and
    before the resources and grants (the locking rule). Returns new booking id → Move.
    """
    old_ids = sorted({b.replaces_id for b in batch if b.replaces_id})
    if not old_ids:
        return {}
    olds = {
        b.pk: b
        for b in Booking.objects.select_for_update(of=("self",))
        .select_related("organization", "user", "equipment_type", "pool")  # for their events
        .filter(pk__in=old_ids)
        .order_by("pk")
    }
    freed: dict[int, list[Held]] = defaultdict(list)
    for booking_id, unit_id, device_id, start, end in (
        Allocation.objects.filter(booking_id__in=old_ids, active=True)
        .order_by()
        .values_list("booking_id", "unit_id", "device_id", "start", "end")
    ):
        freed[booking_id].append((unit_id or device_id, start, end))
    credits = holds_by_booking(old_ids)
    return {
        b.pk: Move(
            old=olds[b.replaces_id],
            freed=freed.get(b.replaces_id, []),
            credit=credits.get(b.replaces_id, {}),
        )
        for b in batch
        if b.replaces_id in olds
    }


def move_obstacle(
    move: Move, *, now: dt.datetime, requires_approval: bool
) -> tuple[str, str] | None:
    """A rejection (code, detail) when the old booking can no longer be moved, else None."""
    why = _why_not_movable(move.old, now=now, requires_approval=requires_approval)
    if why is None:
        return None
    return OBSOLETE, f"{why} Nothing was moved."


def move_complete(move: Move, *, new: Booking, now: dt.datetime) -> None:
    """The replacement is placed: cancel the old booking free of fee and quota, in the caller's
    transaction (the allocation batch, holding the old booking's lock)."""
    old = move.old
    updated = Booking.objects.filter(pk=old.pk, status=BookingStatus.CONFIRMED).update(
        status=BookingStatus.CANCELLED,
        cancel_reason=f"Moved to booking #{new.pk}",
        cancelled_at=now,
        updated_at=now,
        final_price_krw=0,
    )
    if updated != 1:  # impossible while its lock is held and move_obstacle passed
        raise RuntimeError(f"booking {old.pk} changed under its lock while being moved")
    Allocation.objects.filter(booking_id=old.pk, active=True).update(active=False)
    quota_release(booking=old, now=now, reason=f"moved to booking #{new.pk}")
    audit_record(
        actor=None,
        channel=Channel.SYSTEM,
        action="booking.move",
        obj=old,
        from_state=BookingStatus.CONFIRMED,
        to_state=BookingStatus.CANCELLED,
        data={"from": old.pk, "to": new.pk},
    )
    old.status = BookingStatus.CANCELLED
