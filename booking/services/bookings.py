"""The booking lifecycle. Every transition is one function here and writes an audit entry.
(Requesting one, and the checks a request passes, are in requests.py.)

pending → awaiting_approval → confirmed | rejected; confirmed → active → completed;
or cancelled (pending, awaiting_approval, confirmed) and no_show (confirmed, not checked in);
requests still undecided at their start expire (rejected, code `expired`).
Transitions are conditional UPDATEs on the status with the row count checked, so two
concurrent actors can never both move one booking. What each settlement charges, in quota and
price alike, and which actions an ended booking refuses, is booking/lifecycle.py's one rule set.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from booking import events
from booking.choices import BookingStatus
from booking.lifecycle import (
    CHECK_IN_EARLY,
    Charge,
    cancellation_charge,
    has_ended,
    has_started,
    no_show_charge,
    use_charge,
)
from booking.models import Allocation, Booking
from booking.services import notifications
from booking.services.access import (
    check_can_change_booking,
    check_can_use_booking,
    is_operator,
)
from booking.services.fees import booking_price_set
from booking.services.quotas import quota_release, quota_settle

# Requesting a booking (its policy checks and the store step) lives in requests.py; these names
# stay importable from here, where the lifecycle has always been.
from booking.services.requests import (  # noqa: F401
    booking_check,
    booking_request,
    check_qualification,
)
from booking.services.resources import buffer_of
from booking.services.wakeup import allocation_wake_forced, shard_of
from testbed.audit import audit_record
from testbed.choices import Channel
from testbed.db import sweep_step
from testbed.errors import Conflict, NotFound, PermissionDenied, ServiceError

_VERBS = {
    "booking.cancel": "cancelled",
    "booking.approve": "approved",
    "booking.reject": "rejected",
    "booking.check_in": "checked in",
    "booking.check_out": "checked out",
    "booking.complete": "completed",
    "booking.no_show": "marked as a no-show",
    "booking.start": "started",
    "booking.reclaim": "reclaimed",
    "booking.expire": "expired",
}
# The domain event each transition announces after commit (booking/events.py).
_EVENTS = {
    "booking.cancel": events.BOOKING_CANCELLED,
    "booking.approve": events.BOOKING_CONFIRMED,
    "booking.reject": events.BOOKING_REJECTED,
    "booking.expire": events.BOOKING_REJECTED,
    "booking.no_show": events.BOOKING_NO_SHOW,
    "booking.reclaim": events.BOOKING_RECLAIMED,
    "booking.complete": events.BOOKING_COMPLETED,
    "booking.check_out": events.BOOKING_COMPLETED,
}
CANCELLABLE = (BookingStatus.PENDING, BookingStatus.AWAITING_APPROVAL, BookingStatus.CONFIRMED)
UNDECIDED = (BookingStatus.PENDING, BookingStatus.AWAITING_APPROVAL)

logger = logging.getLogger(__name__)


def _transition(
    *,
    booking: Booking,
    actor,
    channel: str,
    action: str,
    from_states: Iterable[str],
    to_state: str,
    now: dt.datetime,
    **fields,
) -> Booking:
    """Move the booking if it is still in one of from_states; refuse clearly otherwise."""
    from_states = list(from_states)
    updated = Booking.objects.filter(pk=booking.pk, status__in=from_states).update(
        status=to_state, updated_at=now, **fields
    )
    if updated != 1:
        current = Booking.objects.filter(pk=booking.pk).values_list("status", flat=True).first()
        verb = _VERBS.get(action, action.split(".")[-1].replace("_", " "))
        raise Conflict(
            f"Booking #{booking.pk} is {current}, so it cannot be {verb} (only when {' or '.join(from_states)}).",
            code="invalid_state",
        )
    from_state = booking.status
    booking.refresh_from_db()
    audit_record(
        actor=actor,
        channel=channel,
        action=action,
        obj=booking,
        from_state=from_state,
        to_state=to_state,
        data={k: str(v) for k, v in fields.items()},
    )
    if action in _EVENTS:
        events.publish_bookings(_EVENTS[action], [booking.pk])
    return booking


def _release_allocations(booking: Booking) -> None:
    Allocation.objects.filter(booking=booking, active=True).update(active=False)


def _settle(booking: Booking, charge: Charge, now: dt.datetime) -> None:
    """Release the quota hold, consume the charged span and price the same span: quota and price
    follow one Charge (booking/lifecycle.py), so they never disagree. Call inside the transaction."""
    quota_settle(
        booking=booking, used_start=charge.start, used_end=charge.end, now=now, reason=charge.reason
    )
    booking_price_set(booking=booking, span=charge.span)


def _lock(booking: Booking) -> Booking:
    """The booking's row, locked until the transaction ends, so that a decision that depends on
    its state and times (what a cancellation charges, approving before the start) stays true."""
    locked = (
        Booking.objects.select_for_update(of=("self",))
        .select_related("equipment_type", "pool")
        .filter(pk=booking.pk)
        .first()
    )
    if locked is None:
        raise NotFound(f"Booking #{booking.pk} does not exist.")
    return locked


def _local(moment: dt.datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M}"


def _refuse_if_ended(booking: Booking, now: dt.datetime, verb: str) -> None:
    if has_ended(end=booking.end, now=now):
        raise Conflict(
            f"Booking #{booking.pk} ended at {_local(booking.end)}: ended bookings are history, "
            f"so it can no longer be {verb}.",
            code="invalid_state",
        )


def _refuse_if_started(booking: Booking, now: dt.datetime, verb: str) -> None:
    """Undecided requests expire at their start (bookings_expire_unapproved): too late to decide."""
    if booking.status in UNDECIDED and has_started(start=booking.start, now=now):
        raise Conflict(
            f"Booking #{booking.pk} was to start at {_local(booking.start)}: a request can no "
            f"longer be {verb} after its start. It expires (hold released, the organisation "
            "told); the booker can request a new window.",
            code="invalid_state",
        )


def booking_cancel(
    *, actor, booking: Booking, reason: str, channel: str, now: dt.datetime | None = None
) -> Booking:
    now = now or timezone.now()
    check_can_change_booking(actor=actor, booking=booking)
    if not reason or not reason.strip():
        raise ServiceError(
            "Say why you cancel (`reason`): the operator and your manager see it.", field="reason"
        )
    with transaction.atomic():
        current = _lock(booking)
        if current.status == BookingStatus.ACTIVE:
            raise Conflict(
                f"Booking #{current.pk} is checked in (active): check out instead to end it; "
                "the time used is charged.",
                code="invalid_state",
            )
        if current.status in CANCELLABLE:
            _refuse_if_ended(current, now, "cancelled")
        # Late (inside the free-cancellation limit, or after the start): charged like a no-show.
        charge = cancellation_charge(
            was_confirmed=current.status == BookingStatus.CONFIRMED,
            start=current.start,
            end=current.end,
            at=now,
            free_minutes=current.resource.cancel_free_minutes,
        )
        booking = _transition(
            booking=current,
            actor=actor,
            channel=channel,
            action="booking.cancel",
            from_states=CANCELLABLE,
            to_state=BookingStatus.CANCELLED,
            now=now,
            cancel_reason=reason.strip()[:500],
            cancelled_at=now,
        )
        _release_allocations(booking)
        _settle(booking, charge, now)
        transaction.on_commit(
            lambda: notifications.booking_changed(booking.pk, "cancelled"), robust=True
        )
    return booking


def _require_operator(actor, what: str) -> None:
    if not is_operator(actor):
        raise PermissionDenied(f"Only a facility operator may {what} bookings.")


def booking_approve(
    *, actor, booking: Booking, channel: str, now: dt.datetime | None = None
) -> Booking:
    _require_operator(actor, "approve")
    now = now or timezone.now()
    with transaction.atomic():
        current = _lock(booking)
        if current.status == BookingStatus.AWAITING_APPROVAL:
            _refuse_if_ended(current, now, "approved")
            _refuse_if_started(current, now, "approved")
        booking = _transition(
            booking=current,
            actor=actor,
            channel=channel,
            action="booking.approve",
            from_states=[BookingStatus.AWAITING_APPROVAL],
            to_state=BookingStatus.CONFIRMED,
            now=now,
        )
        transaction.on_commit(lambda: notifications.booking_decided(booking.pk), robust=True)
    return booking


def booking_reject(
    *, actor, booking: Booking, reason: str, channel: str, now: dt.datetime | None = None
) -> Booking:
    _require_operator(actor, "reject")
    now = now or timezone.now()
    if not reason or not reason.strip():
        raise ServiceError(
            "Say why the booking is rejected (`reason`): the booker sees it.", field="reason"
        )
    with transaction.atomic():
        current = _lock(booking)
        if current.status in UNDECIDED:
            _refuse_if_ended(current, now, "rejected")
            _refuse_if_started(current, now, "rejected")
        booking = _transition(
            booking=current,
            actor=actor,
            channel=channel,
            action="booking.reject",
            from_states=[BookingStatus.AWAITING_APPROVAL, BookingStatus.PENDING],
            to_state=BookingStatus.REJECTED,
            now=now,
            rejection_code="operator_rejected",
            rejection_detail=reason.strip()[:500],
            decided_at=now,
        )
        _release_allocations(booking)
        quota_release(booking=booking, now=now, reason="rejected by operator")
        transaction.on_commit(lambda: notifications.booking_decided(booking.pk), robust=True)
    return booking


def booking_check_in(
    *, actor, booking: Booking, channel: str, now: dt.datetime | None = None
) -> Booking:
    now = now or timezone.now()
    check_can_use_booking(actor=actor, booking=booking)
    if now < booking.start - CHECK_IN_EARLY:
        raise ServiceError(
            f"Check-in opens 30 minutes before the start ({timezone.localtime(booking.start - CHECK_IN_EARLY):%H:%M}).",
            code="too_early",
        )
    _refuse_if_ended(booking, now, "checked in")
    with transaction.atomic():
        return _transition(
            booking=booking,
            actor=actor,
            channel=channel,
            action="booking.check_in",
            from_states=[BookingStatus.CONFIRMED],
            to_state=BookingStatus.ACTIVE,
            now=now,
            actual_start=now,
        )


def _finish(
    *,
    booking: Booking,
    actor,
    channel: str,
    action: str,
    now: dt.datetime,
    actual_end: dt.datetime,
    from_states: Iterable[str] = (BookingStatus.ACTIVE, BookingStatus.CONFIRMED),
    release_at: dt.datetime | None = None,
    reason: str = "completed",
    **fields,
) -> Booking:
    """Complete a booking: free the rest of its slot, settle its quota hold against actual use,
    set its final price. Call inside a transaction. `release_at` overrides when the units or
    devices become free again (default: the actual end plus the type's buffer)."""
    booking = _transition(
        booking=booking,
        actor=actor,
        channel=channel,
        action=action,
        from_states=from_states,
        to_state=BookingStatus.COMPLETED,
        now=now,
        actual_end=actual_end,
        **fields,
    )
    if release_at is None and actual_end < booking.end:
        release_at = max(actual_end, booking.start) + buffer_of(booking.resource)
    if release_at is not None:
        Allocation.objects.filter(
            booking=booking, active=True, start__lt=release_at, end__gt=release_at
        ).update(end=release_at)
    # Use counts from max(check-in, start) to min(check-out, end): lifecycle.used_span.
    charge = use_charge(
        start=booking.start,
        end=booking.end,
        actual_start=booking.actual_start,
        actual_end=actual_end,
        reason=reason,
    )
    _settle(booking, charge, now)
    return booking


def booking_check_out(
    *, actor, booking: Booking, channel: str, now: dt.datetime | None = None
) -> Booking:
    now = now or timezone.now()
    check_can_use_booking(actor=actor, booking=booking)
    if booking.status != BookingStatus.ACTIVE:
        raise Conflict(
            f"Booking #{booking.pk} is {booking.status}: only a checked-in booking can be checked out.",
            code="invalid_state",
        )
    with transaction.atomic():
        return _finish(
            booking=booking,
            actor=actor,
            channel=channel,
            action="booking.check_out",
            now=now,
            actual_end=min(now, booking.end),
        )


# --- periodic work (Celery beat) -----------------------------------------------------------


def bookings_mark_no_shows(*, now: dt.datetime | None = None) -> int:
    """Equipment bookings nobody checked in within the type's grace period: no_show, slot released."""
    now = now or timezone.now()
    done = 0
    candidates = Booking.objects.filter(
        status=BookingStatus.CONFIRMED,
        equipment_type__isnull=False,
        start__lt=now,
    ).select_related("equipment_type")
    for booking in candidates.iterator():
        assert booking.equipment_type is not None  # filtered on above
        grace = dt.timedelta(minutes=booking.equipment_type.no_show_grace_minutes)
        if booking.start + grace > now:
            continue
        with sweep_step("mark no shows", booking.pk):
            try:
                booking = _transition(
                    booking=booking,
                    actor=None,
                    channel=Channel.SYSTEM,
                    action="booking.no_show",
                    from_states=[BookingStatus.CONFIRMED],
                    to_state=BookingStatus.NO_SHOW,
                    now=now,
                )
            except Conflict:
                continue
            _release_allocations(booking)
            _settle(booking, no_show_charge(start=booking.start, end=booking.end), now)
            transaction.on_commit(
                functools.partial(notifications.booking_changed, booking.pk, "no_show"), robust=True
            )
            done += 1
    return done


def bookings_start_pool_sessions(*, now: dt.datetime | None = None) -> int:
    """Accelerator bookings become active at their start: the devices are theirs, no desk to check in at."""
    now = now or timezone.now()
    done = 0
    for booking in Booking.objects.filter(
        status=BookingStatus.CONFIRMED, pool__isnull=False, start__lte=now, end__gt=now
    ).iterator():
        with sweep_step("start pool sessions", booking.pk):
            try:
                _transition(
                    booking=booking,
                    actor=None,
                    channel=Channel.SYSTEM,
                    action="booking.start",
                    from_states=[BookingStatus.CONFIRMED],
                    to_state=BookingStatus.ACTIVE,
                    now=now,
                    actual_start=booking.start,
                )
                done += 1
            except Conflict:
                continue
    return done


def bookings_complete_ended(*, now: dt.datetime | None = None) -> int:
    """Bookings past their end: checked-in ones (and pool ones) become completed."""
    now = now or timezone.now()
    done = 0
    qs = Booking.objects.filter(end__lte=now).filter(
        Q(status=BookingStatus.ACTIVE) | Q(status=BookingStatus.CONFIRMED, pool__isnull=False)
    )
    for booking in qs.select_related("equipment_type", "pool").iterator():
        with sweep_step("complete ended", booking.pk):
            try:
                _finish(
                    booking=booking,
                    actor=None,
                    channel=Channel.SYSTEM,
                    action="booking.complete",
                    now=now,
                    actual_end=booking.actual_end or booking.end,
                )
                done += 1
            except Conflict:
                continue
    return done


def bookings_requeue_lost(*, older_than: dt.timedelta, now: dt.datetime | None = None) -> list[int]:
    """`pending` bookings whose decider was lost (task never delivered, worker died holding the
    shard's flag): queue their shards' tasks again, whatever the flags say. Returns their ids."""
    now = now or timezone.now()
    rows = list(
        Booking.objects.filter(status=BookingStatus.PENDING, created_at__lt=now - older_than)
        .filter(Q(round__isnull=True) | Q(round__allocated_at__isnull=False))
        .order_by("created_at")
        .values_list("pk", "equipment_type_id", "pool_id", "round_id")[:1000]
    )
    shards: set[int] = set()
    for booking_id, type_id, pool_id, round_id in rows:
        if round_id is not None:
            # A round's booking is never claimed uninvited by a shard's decider: its own task.
            _enqueue_booking(booking_id)
        else:
            shards.add(shard_of(equipment_type_id=type_id, pool_id=pool_id))
    for shard in sorted(shards):
        allocation_wake_forced(shard)
    return [row[0] for row in rows]


def _enqueue_booking(booking_id: int) -> None:
    from booking.tasks import allocate_booking

    try:
        allocate_booking.delay(booking_id)
    except Exception:  # broker down: the next sweep tries again
        logger.exception("could not queue allocation of booking %s", booking_id)
