"""Quota grants and the append-only ledger.

Signs: hours > 0 use a grant, hours < 0 give back. hold (+) at confirmation, release (−) at
cancellation or when a hold is settled, consume (+ actual use) at completion, adjust (±) by an
operator with a reason. remaining = limit − Σ hours, from one aggregate query; nothing is cached.
Lock order (ARCHITECTURE.md): the resource row first, then the grants, sorted by primary key.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce

from booking.choices import Enforcement, LedgerKind
from booking.models import Booking, QuotaGrant, QuotaLedgerEntry
from testbed.audit import audit_record
from testbed.errors import Conflict, ServiceError

FOUR = Decimal("0.0001")
ZERO = Decimal("0")
TZ = zoneinfo.ZoneInfo(settings.TIME_ZONE)


def hours_of(quantity: int, start: dt.datetime, end: dt.datetime) -> Decimal:
    seconds = Decimal(int((end - start).total_seconds()))
    return (Decimal(quantity) * seconds / Decimal(3600)).quantize(FOUR, rounding=ROUND_HALF_UP)


def _period_bounds(grant: QuotaGrant) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(grant.period_start, dt.time.min, tzinfo=TZ)
    if grant.period_end >= dt.date.max:
        # An open-ended period: the day after 9999-12-31 does not exist; its last instant does.
        return start, dt.datetime.combine(dt.date.max, dt.time.max, tzinfo=TZ)
    end = dt.datetime.combine(grant.period_end + dt.timedelta(days=1), dt.time.min, tzinfo=TZ)
    return start, end


def _local_date(moment: dt.datetime) -> dt.date:
    """The facility-local date of a moment; the calendar's last day where that would overflow."""
    try:
        return moment.astimezone(TZ).date()
    except OverflowError:  # within hours of datetime.max in UTC: later than any grant period
        return dt.date.max


def _specificity(grant: QuotaGrant, resource) -> int:
    if grant.scope == resource.code:
        return 0
    if grant.scope == resource.center.code:
        return 1
    return 2


def grants_candidates(*, organization_id: int, resource, start: dt.datetime, end: dt.datetime):
    """Grants of this organisation whose scope covers the resource and whose period meets [start, end)."""
    return QuotaGrant.objects.filter(
        organization_id=organization_id,
        scope__in=[resource.code, resource.center.code, "*"],
        period_start__lte=_local_date(end),
        period_end__gte=_local_date(start),
    )


def split_by_grant(
    grants: list[QuotaGrant], resource, quantity: int, start: dt.datetime, end: dt.datetime
) -> list[tuple[QuotaGrant, Decimal]]:
    """Charge each part of [start, end) to the most specific grant whose period covers it.

    A booking that straddles two periods charges each for its part; parts no grant covers are
    not charged (an organisation without a grant is not limited).
    """
    if not grants:
        return []
    bounds = {g.pk: _period_bounds(g) for g in grants}
    cuts = {start, end}
    for g_start, g_end in bounds.values():
        for moment in (g_start, g_end):
            if start < moment < end:
                cuts.add(moment)
    points = sorted(cuts)
    charged: dict[int, Decimal] = defaultdict(lambda: ZERO)
    by_pk = {g.pk: g for g in grants}
    for piece_start, piece_end in zip(points, points[1:], strict=False):
        covering = [
            g for g in grants if bounds[g.pk][0] <= piece_start and piece_end <= bounds[g.pk][1]
        ]
        if not covering:
            continue
        chosen = min(covering, key=lambda g: (_specificity(g, resource), g.pk))
        charged[chosen.pk] += hours_of(quantity, piece_start, piece_end)
    return [(by_pk[pk], hours) for pk, hours in sorted(charged.items())]


@dataclass(frozen=True)
class Balance:
    limit: Decimal
    held: Decimal
    consumed: Decimal

    @property
    def remaining(self) -> Decimal:
        return self.limit - self.held - self.consumed


def grant_balances(grant_ids) -> dict[int, Balance]:
    """Balances of these grants, from one aggregate query over the ledger."""
    dec = DecimalField(max_digits=20, decimal_places=4)
    held_kinds = [LedgerKind.HOLD, LedgerKind.RELEASE]
    rows = (
        QuotaGrant.objects.filter(pk__in=list(grant_ids))
        .annotate(
            held=Coalesce(
                Sum("ledger__hours", filter=Q(ledger__kind__in=held_kinds)),
                Value(ZERO),
                output_field=dec,
            ),
            consumed=Coalesce(
                Sum("ledger__hours", filter=~Q(ledger__kind__in=held_kinds)),
                Value(ZERO),
                output_field=dec,
            ),
        )
        .values_list("pk", "limit_hours", "held", "consumed")
    )
    return {
        pk: Balance(limit=limit, held=held, consumed=consumed) for pk, limit, held, consumed in rows
    }


@dataclass
class QuotaBook:
    """A batch's quota grants, locked and read once (all of the batch's organisations' grants,
    by primary key, then their balances in one aggregate); each booking's hold is checked
    against the running balances in memory and the holds are written in one insert (`flush`),
    so a batch costs the same few statements however many bookings it decides. The grants are
    locked after the resource rows (the locking rule), all at once, so two batches never wait on
    each other's grants."""

    grants: dict[int, list[QuotaGrant]]  # organisation id → its grants, by pk
    remaining: dict[int, Decimal]  # grant id → what is left, as the batch goes
    entries: list[QuotaLedgerEntry]

    @classmethod
    def open(cls, *, organization_ids: set[int]) -> QuotaBook:
        grants: dict[int, list[QuotaGrant]] = defaultdict(list)
        if organization_ids:
            rows = (
                QuotaGrant.objects.filter(organization_id__in=organization_ids)
                .select_for_update()
                .order_by("pk")
            )
            for grant in rows:
                grants[grant.organization_id].append(grant)
        ids = [g.pk for gs in grants.values() for g in gs]
        balances = grant_balances(ids) if ids else {}
        return cls(
            grants=dict(grants),
            remaining={pk: b.remaining for pk, b in balances.items()},
            entries=[],
        )

    def has_grants(self, organization_id: int) -> bool:
        return organization_id in self.grants

    def reserve(
        self,
        *,
        booking: Booking,
        resource,
        now: dt.datetime,
        credit: dict[int, Decimal] | None = None,
    ) -> bool:
        """Hold the booking's unit-hours; whether a soft grant went over. Raises QuotaExceeded
        (nothing held) when a hard grant would go below zero."""
        first, last = _local_date(booking.start), _local_date(booking.end)
        scopes = {resource.code, resource.center.code, "*"}
        candidates = [
            g
            for g in self.grants.get(booking.organization_id, [])
            if g.scope in scopes and g.period_start <= last and g.period_end >= first
        ]
        charges = split_by_grant(candidates, resource, booking.quantity, booking.start, booking.end)
        over = False
        for grant, hours in charges:
            remaining = self.remaining[grant.pk] + (credit or {}).get(grant.pk, ZERO)
            if hours > remaining:
                if grant.enforcement == Enforcement.HARD:
                    raise QuotaExceeded(grant=grant, needed=hours, remaining=remaining)
                over = True
        for grant, hours in charges:
            self.remaining[grant.pk] -= hours
            self.entries.append(
                QuotaLedgerEntry(
                    grant=grant, booking=booking, kind=LedgerKind.HOLD, hours=hours, at=now
                )
            )
        return over

    def credit(self, released: dict[int, Decimal]) -> None:
        """Holds released in this transaction (a moved booking's): free for later bookings."""
        for grant_id, hours in released.items():
            if grant_id in self.remaining:
                self.remaining[grant_id] += hours

    def flush(self) -> None:
        if self.entries:
            QuotaLedgerEntry.objects.bulk_create(self.entries)
            self.entries.clear()


class QuotaExceeded(Exception):
    def __init__(self, *, grant: QuotaGrant, needed: Decimal, remaining: Decimal) -> None:
        self.grant = grant
        self.needed = needed
        self.remaining = remaining
        super().__init__(self.message)

    @property
    def message(self) -> str:
        left = max(self.remaining, ZERO)
        return (
            f"This booking needs {self.needed.normalize():f} unit-hours of quota grant #{self.grant.pk} "
            f"({self.grant.scope}, {self.grant.period_start}–{self.grant.period_end}) but only "
            f"{left.normalize():f} remain: book fewer devices or a shorter window, or ask an operator for more."
        )


def _held_by_grant(booking: Booking) -> dict[int, Decimal]:
    held: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for grant_id, hours in booking.ledger.filter(
        kind__in=[LedgerKind.HOLD, LedgerKind.RELEASE]
    ).values_list("grant_id", "hours"):
        held[grant_id] += hours
    return {k: v for k, v in held.items() if v != ZERO}


def holds_by_booking(booking_ids) -> dict[int, dict[int, Decimal]]:
    """What each of these bookings still holds, by grant (booking id → grant id → hours), in one
    query: the credit a move's replacement gets (QuotaBook.reserve) before the old hold is released."""
    held: dict[int, dict[int, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for booking_id, grant_id, hours in QuotaLedgerEntry.objects.filter(
        booking_id__in=list(booking_ids), kind__in=[LedgerKind.HOLD, LedgerKind.RELEASE]
    ).values_list("booking_id", "grant_id", "hours"):
        held[booking_id][grant_id] += hours
    return {b: {g: h for g, h in grants.items() if h != ZERO} for b, grants in held.items()}


def quota_release(
    *, booking: Booking, now: dt.datetime, reason: str, hours_factor: Decimal | None = None
) -> None:
    """Give back what the booking still holds (all of it, or a fraction for a partial release)."""
    held = _held_by_grant(booking)
    entries = []
    for grant_id, hours in held.items():
        amount = hours if hours_factor is None else (hours * hours_factor).quantize(FOUR)
        if amount:
            entries.append(
                QuotaLedgerEntry(
                    grant_id=grant_id,
                    booking=booking,
                    kind=LedgerKind.RELEASE,
                    hours=-amount,
                    reason=reason,
                    at=now,
                )
            )
    QuotaLedgerEntry.objects.bulk_create(entries)


def quota_settle(
    *,
    booking: Booking,
    used_start: dt.datetime | None,
    used_end: dt.datetime | None,
    now: dt.datetime,
    reason: str,
) -> None:
    """At settlement: release the hold and consume the charged span (booking/lifecycle.py: the
    used part of the slot, or the booked time for a no-show or a late cancellation)."""
    quota_release(booking=booking, now=now, reason=reason)
    if used_start is None or used_end is None:
        return
    # Never consume outside the slot: time checked in early belongs to the booking before.
    used_start, used_end = max(used_start, booking.start), min(used_end, booking.end)
    if used_end <= used_start:
        return
    resource = booking.resource
    grants = list(
        grants_candidates(
            organization_id=booking.organization_id,
            resource=resource,
            start=used_start,
            end=used_end,
        ).order_by("pk")
    )
    QuotaLedgerEntry.objects.bulk_create(
        [
            QuotaLedgerEntry(
                grant=grant,
                booking=booking,
                kind=LedgerKind.CONSUME,
                hours=hours,
                reason=reason,
                at=now,
            )
            for grant, hours in split_by_grant(
                grants, resource, booking.quantity, used_start, used_end
            )
        ]
    )


def quota_grant_adjust(
    *, actor, grant: QuotaGrant, hours: Decimal, reason: str, channel: str
) -> QuotaLedgerEntry:
    """An operator's correction: positive hours charge the grant, negative give back."""
    if not reason.strip():
        raise ServiceError(
            "Say why the grant is adjusted: the reason is kept in the ledger.", field="reason"
        )
    if hours == ZERO:
        raise ServiceError(
            "An adjustment of zero hours changes nothing: give a positive or negative number.",
            field="hours",
        )
    with transaction.atomic():
        QuotaGrant.objects.select_for_update().filter(pk=grant.pk).first()
        entry = QuotaLedgerEntry.objects.create(
            grant=grant,
            kind=LedgerKind.ADJUST,
            hours=hours,
            reason=reason,
            actor=actor if getattr(actor, "pk", None) else None,
        )
        audit_record(
            actor=actor,
            channel=channel,
            action="quota.adjust",
            obj=grant,
            data={"hours": str(hours), "reason": reason},
        )
    return entry


def annotate_balances(queryset):
    """Add held_hours, consumed_hours to a QuotaGrant queryset in the same query."""
    dec = DecimalField(max_digits=20, decimal_places=4)
    held_kinds = [LedgerKind.HOLD, LedgerKind.RELEASE]
    return queryset.annotate(
        held_hours=Coalesce(
            Sum("ledger__hours", filter=Q(ledger__kind__in=held_kinds)),
            Value(ZERO),
            output_field=dec,
        ),
        consumed_hours=Coalesce(
            Sum("ledger__hours", filter=~Q(ledger__kind__in=held_kinds)),
            Value(ZERO),
            output_field=dec,
        ),
    )


def _check_scope(scope: str) -> None:
    from equipment.models import AcceleratorPool, Center, EquipmentType

    if scope == "*":
        return
    if not (
        EquipmentType.objects.filter(code=scope).exists()
        or AcceleratorPool.objects.filter(code=scope).exists()
        or Center.objects.filter(code=scope).exists()
    ):
        raise ServiceError(
            f"Scope {scope!r} is neither a resource code, a centre code nor '*'.", field="scope"
        )


def check_grant_fields(*, period_start: dt.date, period_end: dt.date, limit_hours) -> None:
    """A grant's period and limit as the database and the ledger arithmetic need them."""
    from testbed.api.fields import MAX_GRANT_PERIOD_DAYS, outside_horizon

    for name, day in (("period_start", period_start), ("period_end", period_end)):
        if outside_horizon(day):
            raise ServiceError(
                f"Give {name} within a few years of today (YYYY-MM-DD), not {day.isoformat()}.",
                field=name,
            )
    if period_end < period_start:
        raise ServiceError("The period must end on or after its start.", field="period_end")
    if (period_end - period_start).days >= MAX_GRANT_PERIOD_DAYS:
        raise ServiceError(
            f"A grant covers at most {MAX_GRANT_PERIOD_DAYS} days: split it into several periods.",
            field="period_end",
        )
    if limit_hours is None or limit_hours < 0:
        raise ServiceError(
            "The limit cannot be negative: give unit-hours of 0 or more (adjust to give hours back).",
            field="limit_hours",
        )


def _check_no_overlap(*, organization, scope: str, period_start, period_end, exclude=None) -> None:
    """One grant per organisation, scope and day: otherwise which one a booking charges is a guess."""
    clash = (
        QuotaGrant.objects.filter(
            organization=organization,
            scope=scope,
            period_start__lte=period_end,
            period_end__gte=period_start,
        )
        .exclude(pk=exclude)
        .order_by("period_start")
        .first()
    )
    if clash is not None:
        raise Conflict(
            f"{organization.slug} already has a {scope!r} grant for {clash.period_start} to "
            f"{clash.period_end} (#{clash.pk}): change that grant's limit, or choose a period "
            "that does not overlap it.",
            code="conflict",
            field="period_start",
        )


def quota_grant_create(*, actor, channel: str, **fields) -> QuotaGrant:
    _check_scope(fields["scope"])
    check_grant_fields(
        period_start=fields["period_start"],
        period_end=fields["period_end"],
        limit_hours=fields["limit_hours"],
    )
    _check_no_overlap(
        organization=fields["organization"],
        scope=fields["scope"],
        period_start=fields["period_start"],
        period_end=fields["period_end"],
    )
    with transaction.atomic():
        grant = QuotaGrant.objects.create(**fields)
        audit_record(
            actor=actor,
            channel=channel,
            action="quota.grant",
            obj=grant,
            data={"limit_hours": str(grant.limit_hours), "scope": grant.scope},
        )
    return grant


def quota_grant_update(*, actor, grant: QuotaGrant, channel: str, **fields) -> QuotaGrant:
    if "scope" in fields:
        _check_scope(fields["scope"])
    with transaction.atomic():
        grant = QuotaGrant.objects.select_for_update().get(pk=grant.pk)
        changed = [k for k, v in fields.items() if getattr(grant, k) != v]
        for fixed in ("organization", "scope"):
            if fixed in changed:
                raise ServiceError(
                    f"A grant's {fixed} is fixed once it is made (its ledger belongs to it): "
                    "create a new grant instead, and lower this one's limit if needed.",
                    field=fixed,
                )
        for key in changed:
            setattr(grant, key, fields[key])
        check_grant_fields(
            period_start=grant.period_start,
            period_end=grant.period_end,
            limit_hours=grant.limit_hours,
        )
        _check_no_overlap(
            organization=grant.organization,
            scope=grant.scope,
            period_start=grant.period_start,
            period_end=grant.period_end,
            exclude=grant.pk,
        )
        if changed:
            grant.save(update_fields=changed)
            audit_record(
                actor=actor,
                channel=channel,
                action="quota.update",
                obj=grant,
                data={k: str(fields[k]) for k in changed},
            )
    return grant
