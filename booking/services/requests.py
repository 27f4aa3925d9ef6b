"""Requesting a booking: the policy checks (one set of rules), storing the request, and the
estimate a form shows before it is sent.

`booking_check` runs every synchronous rule of a request without writing anything, so the web
form can validate as the person types with exactly the checks `booking_request` applies (which
calls it first). `booking_estimate` says what the request would cost and which quota grants it
would use; it decides nothing (the allocation transaction does, under its locks).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from booking.choices import BookingStatus
from booking.models import Booking, Organization, Qualification, QuotaGrant
from booking.policy import Refusal, check_maintenance, check_quantity, check_window
from booking.services.access import check_can_book_for, is_operator
from booking.services.fees import booking_price, discount_for
from booking.services.quotas import grant_balances, grants_candidates, split_by_grant
from booking.services.resources import (
    Resource,
    buffer_of,
    capacity_of,
    policy_for,
    resource_for_code,
    resource_maintenance,
)
from booking.services.wakeup import allocation_wake, shard_of
from equipment.choices import UnitStatus
from equipment.models import EquipmentType, EquipmentUnit
from testbed import readcache
from testbed.audit import audit_record
from testbed.choices import Channel
from testbed.errors import ServiceError

logger = logging.getLogger(__name__)


def _refuse(refusal: Refusal) -> ServiceError:
    status = 403 if refusal.code in {"qualification_required", "permission_denied"} else 400
    return ServiceError(refusal.message, code=refusal.code, field=refusal.field, status=status)


def _enqueue_allocation(booking: Booking) -> None:
    """After commit: wake the decider of the booking's shard (at most one task per shard is
    queued at a time; booking/services/wakeup.py). Broker down: the pending sweep finds it."""
    allocation_wake(shard_of(equipment_type_id=booking.equipment_type_id, pool_id=booking.pool_id))


def check_qualification(*, user, equipment_type: EquipmentType, on: dt.date) -> None:
    if not equipment_type.requires_qualification:
        return
    if Qualification.objects.filter(
        user=user, equipment_type=equipment_type, valid_until__gte=on
    ).exists():
        return
    lapsed = Qualification.objects.filter(user=user, equipment_type=equipment_type).first()
    hint = (
        f"your training expired on {lapsed.valid_until}"
        if lapsed
        else "you have no recorded training for it"
    )
    raise ServiceError(
        f"{equipment_type.code} requires a qualification and {hint}: book the training session with the "
        "centre, or ask a qualified colleague to book.",
        code="qualification_required",
        field="resource",
        status=403,
    )


def _pinned_unit(resource: Resource, unit_code: str, quantity: int) -> EquipmentUnit:
    if not isinstance(resource, EquipmentType):
        raise ServiceError(
            "`unit` applies to equipment types only: leave it out for pools.", field="unit"
        )
    pinned = EquipmentUnit.objects.filter(code=unit_code, equipment_type=resource).first()
    if pinned is None:
        raise ServiceError(
            f"{resource.code} has no unit {unit_code!r}: leave `unit` out to get any free one.",
            field="unit",
        )
    if pinned.status != UnitStatus.ACTIVE:
        raise ServiceError(
            f"Unit {unit_code} is {pinned.status}: leave `unit` out to get any free one.",
            code="unavailable",
            field="unit",
        )
    if quantity != 1:
        raise ServiceError(
            "A pinned unit is one unit: send quantity 1 with `unit`.", field="quantity"
        )
    return pinned


def _checked(**kwargs) -> tuple[Resource, EquipmentUnit | None]:
    """Every synchronous rule (see _check). A refusal reached through the read cache is checked
    again against the database: a cached row a moment old never refuses a valid request."""
    try:
        return _check(**kwargs)
    except ServiceError:
        if not readcache.used():
            raise
        with readcache.bypassed():
            return _check(**kwargs)


def _check(
    *,
    actor,
    organization: Organization,
    resource_code: str,
    quantity: int,
    start: dt.datetime,
    end: dt.datetime,
    unit_code: str | None,
    now: dt.datetime,
) -> tuple[Resource, EquipmentUnit | None]:
    """Every synchronous rule, in order; the resource and pinned unit when all pass."""
    if timezone.is_naive(start) or timezone.is_naive(end):
        raise ServiceError(
            "Give start and end with an offset, e.g. 2026-12-01T09:00:00+09:00.", field="start"
        )
    check_can_book_for(actor=actor, organization=organization)
    resource = resource_for_code(resource_code)
    policy = policy_for(resource)
    refusal = check_window(policy, start, end, now)
    if refusal and not (is_operator(actor) and refusal.code == "lead_time" and start >= now):
        raise _refuse(refusal)
    pinned = _pinned_unit(resource, unit_code, quantity) if unit_code else None
    capacity, node_sizes = capacity_of(resource)
    refusal = check_quantity(quantity, capacity=capacity, node_sizes=node_sizes)
    if refusal:
        raise _refuse(refusal)
    if isinstance(resource, EquipmentType) and not is_operator(actor):
        check_qualification(
            user=actor, equipment_type=resource, on=timezone.localtime(start).date()
        )
    refusal = check_maintenance(
        resource_maintenance(resource, start, end + buffer_of(resource)), start, end
    )
    if refusal:
        raise _refuse(refusal)
    return resource, pinned


def booking_check(
    *,
    actor,
    organization: Organization,
    resource_code: str,
    quantity: int,
    start: dt.datetime,
    end: dt.datetime,
    unit_code: str | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Refuse (ServiceError naming the field) what booking_request would refuse; write nothing.

    Whether units are free is not checked here: the allocation worker decides that under its
    locks, and answers a refusal with alternatives.
    """
    _checked(
        actor=actor,
        organization=organization,
        resource_code=resource_code,
        quantity=quantity,
        start=start,
        end=end,
        unit_code=unit_code,
        now=now or timezone.now(),
    )


def booking_request(
    *,
    actor,
    organization: Organization,
    resource_code: str,
    quantity: int,
    start: dt.datetime,
    end: dt.datetime,
    purpose: str = "",
    unit_code: str | None = None,
    channel: str = Channel.API,
    now: dt.datetime | None = None,
) -> Booking:
    """Check the request against policy at once (booking_check's rules), store it `pending`,
    queue its allocation on commit. Refusals raise ServiceError with a stable code and change
    nothing.
    """
    now = now or timezone.now()
    resource, pinned = _checked(
        actor=actor,
        organization=organization,
        resource_code=resource_code,
        quantity=quantity,
        start=start,
        end=end,
        unit_code=unit_code,
        now=now,
    )

    from booking.services.rounds import round_for_request

    with transaction.atomic():
        contested = (
            None
            if isinstance(resource, EquipmentType)
            else round_for_request(pool=resource, start=start, now=now)
        )
        booking = Booking.objects.create(
            round=contested,
            organization=organization,
            user=actor,
            equipment_type=resource if isinstance(resource, EquipmentType) else None,
            pool=None if isinstance(resource, EquipmentType) else resource,
            pinned_unit=pinned,
            quantity=quantity,
            start=start,
            end=end,
            purpose=purpose,
            channel=channel,
        )
        audit_record(
            actor=actor,
            channel=channel,
            action="booking.request",
            obj=booking,
            to_state=booking.status,
            data={"round": contested.pk} if contested else None,
        )
        if contested is None:
            transaction.on_commit(lambda: _enqueue_allocation(booking), robust=True)
        # A booking in a contested round waits for the round's cutoff (rounds_allocate_due).
    return booking


# --- what a request would cost ---------------------------------------------------------------


@dataclass(frozen=True)
class GrantUse:
    grant: QuotaGrant
    hours: Decimal  # unit-hours this request would charge to the grant
    remaining: Decimal  # the grant's balance now, before this request

    @property
    def remaining_after(self) -> Decimal:
        return self.remaining - self.hours

    @property
    def exceeds(self) -> bool:
        return self.hours > self.remaining


@dataclass(frozen=True)
class Estimate:
    price_krw: int  # list price × quantity × hours, after the organisation's discount
    discount: Decimal  # fraction off (0 to 1)
    unit_hours: Decimal
    grants: list[GrantUse]

    @property
    def discount_percent(self) -> int:
        return int((self.discount * 100).to_integral_value())

    @property
    def over_quota(self) -> bool:
        return any(use.exceeds for use in self.grants)


def booking_estimate(
    *,
    organization: Organization,
    resource: Resource,
    quantity: int,
    start: dt.datetime,
    end: dt.datetime,
) -> Estimate:
    """The price of [start, end) for this organisation, and the quota grants it would draw on
    (with their balances now), computed as settlement and allocation compute them."""
    draft = Booking(
        organization=organization,
        equipment_type=resource if isinstance(resource, EquipmentType) else None,
        pool=None if isinstance(resource, EquipmentType) else resource,
        quantity=quantity,
        start=start,
        end=end,
    )
    grants = list(
        grants_candidates(organization_id=organization.pk, resource=resource, start=start, end=end)
    )
    charges = split_by_grant(grants, resource, quantity, start, end)
    balances = grant_balances(g.pk for g, _h in charges) if charges else {}
    seconds = Decimal(int((end - start).total_seconds()))
    discount = discount_for(organization)
    return Estimate(
        price_krw=booking_price(draft, span=(start, end), discount=discount),
        discount=discount,
        unit_hours=(Decimal(quantity) * seconds / Decimal(3600)).quantize(Decimal("0.01")),
        grants=[
            GrantUse(grant=g, hours=hours, remaining=balances[g.pk].remaining)
            for g, hours in charges
        ],
    )


def booking_prices(bookings) -> dict[int, int | None]:
    """Won for each booking: its final price once settled, else the price of its booked window
    (what it costs if used in full; None for a rejected request, which costs nothing), with
    each organisation's discount looked up once."""
    discounts: dict[int, Decimal] = {}
    prices: dict[int, int | None] = {}
    for booking in bookings:
        if booking.status == BookingStatus.REJECTED:
            prices[booking.pk] = None
            continue
        if booking.final_price_krw is not None:
            prices[booking.pk] = booking.final_price_krw
            continue
        if booking.organization_id not in discounts:
            discounts[booking.organization_id] = discount_for(booking.organization)
        prices[booking.pk] = booking_price(
            booking,
            span=(booking.start, booking.end),
            discount=discounts[booking.organization_id],
        )
    return prices
