"""Usage and utilisation reports: reads only, with the caller's organisation scope applied.

Definitions (the rollups in booking/services/usage.py store exactly these figures):

- Attribution: a booking belongs to the facility-local (Asia/Seoul) day, and so month, in which
  it *starts*. A booking that crosses midnight or a month end counts whole on its start day.
  The quota ledger instead charges each grant for the part inside its period
  (quotas.split_by_grant), so one grant's ledger can differ from one month's report, but summed
  over the same bookings the two are equal.
- bookings: bookings that held capacity: awaiting approval, confirmed, active, completed or
  no-show (BOOKED_STATUSES).
- booked_hours: quantity × (end − start) of those bookings, in unit-hours (units or devices ×
  hours). Cancelled, rejected and pending bookings add no booked hours.
- used_hours: quantity × (min(actual_end, end) − max(actual_start, start)) of completed bookings
  (booking/lifecycle.py used_span, as for the ledger and the price: checking in early is allowed
  but the time before the slot is not use, and nothing counts past the end); a missing check-in
  counts from the start; 0 for no-shows and for bookings still running.
- unit_hours: what the quota ledger consumed for the booking: the sum of its `consume` and
  `adjust` entries (a grant's "consumed"; holds and releases are not consumption). That is the
  actual use a grant covered for a completed booking, the booked time for a no-show or a late
  cancellation (lifecycle.cancellation_charge), and 0 for a booking no grant covers.
- cancelled: cancelled bookings (they add 0 booked hours). Rejected bookings count nowhere.
- no_shows: bookings marked no-show (their booked hours are in booked_hours).
- charge_krw: the sum of final_price_krw (0 while unset), late-cancellation fees included.

Whole past days are read from DailyUsage (organisation × resource × day, kept by the
`booking.rollup_usage` beat task), which is what makes a monthly report over a million
allocation rows a grouped scan of a few ten thousand rows. Today, later days and partial days
at either end of the window are computed from bookings and the ledger with the same grouped
queries the rollup uses, so the two paths give the same figures.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import reduce
from operator import or_

from django.conf import settings
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    IntegerField,
    Q,
    Sum,
)
from django.db.models.functions import Coalesce, Greatest, Least, TruncDate, TruncMonth
from django.utils import timezone

from booking.choices import BookingStatus, LedgerKind
from booking.models import Booking, DailyUsage, Organization, QuotaLedgerEntry
from booking.selectors import _org_scope
from equipment.models import (
    AcceleratorPool,
    EquipmentType,
)
from testbed.errors import ServiceError

TZ = zoneinfo.ZoneInfo(settings.TIME_ZONE)
FOUR = Decimal("0.0001")
ZERO = Decimal("0")
MICROSECOND = dt.timedelta(microseconds=1)
MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)
MAX_REPORT_DAYS = 366

BOOKED_STATUSES = (
    BookingStatus.AWAITING_APPROVAL,
    BookingStatus.CONFIRMED,
    BookingStatus.ACTIVE,
    BookingStatus.COMPLETED,
    BookingStatus.NO_SHOW,
)
COUNTED_STATUSES = (*BOOKED_STATUSES, BookingStatus.CANCELLED)
CONSUMED_KINDS = (LedgerKind.CONSUME, LedgerKind.ADJUST)

GROUPS = ("organization", "resource", "center", "day", "month")
GROUP_ALIASES = {"centre": "center", "org": "organization", "organisation": "organization"}
DEFAULT_GROUP_BY = ("organization", "resource")
METRICS = (
    "bookings",
    "booked_hours",
    "used_hours",
    "unit_hours",
    "cancelled",
    "no_shows",
    "charge_krw",
)


# --- figures ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """One group's sums. Hours are Decimal unit-hours, quantized to 4 places like the ledger."""

    bookings: int = 0
    booked_hours: Decimal = ZERO
    used_hours: Decimal = ZERO
    unit_hours: Decimal = ZERO
    cancelled: int = 0
    no_shows: int = 0
    charge_krw: int = 0

    def add(self, other: Figures) -> None:
        self.bookings += other.bookings
        self.booked_hours += other.booked_hours
        self.used_hours += other.used_hours
        self.unit_hours += other.unit_hours
        self.cancelled += other.cancelled
        self.no_shows += other.no_shows
        self.charge_krw += other.charge_krw

    def as_row(self) -> dict:
        """JSON-ready values: hours as numbers rounded to 4 places, counts and won as integers."""
        return {
            "bookings": int(self.bookings),
            "booked_hours": float(self.booked_hours.quantize(FOUR)),
            "used_hours": float(self.used_hours.quantize(FOUR)),
            "unit_hours": float(self.unit_hours.quantize(FOUR)),
            "cancelled": int(self.cancelled),
            "no_shows": int(self.no_shows),
            "charge_krw": int(self.charge_krw),
        }


def hours_of_duration(value: dt.timedelta | None) -> Decimal:
    """A duration (or a sum of unit-durations) as Decimal hours, exact to the microsecond."""
    if not value:
        return ZERO
    return Decimal(value // MICROSECOND) / MICROSECONDS_PER_HOUR


def _unit_duration(end, start) -> ExpressionWrapper:
    # quantity as a plain integer: SQLite refuses to multiply a duration by a "positive integer" field.
    quantity = ExpressionWrapper(F("quantity"), output_field=IntegerField())
    return ExpressionWrapper(quantity * (end - start), output_field=DurationField())


BOOKED_UNIT_TIME = _unit_duration(F("end"), F("start"))
# Use counts from max(check-in, start) to min(check-out, end): lifecycle.used_span in SQL.
USED_FROM = Greatest(Coalesce(F("actual_start"), F("start")), F("start"))
USED_TO = Least(F("actual_end"), F("end"))
USED_UNIT_TIME = _unit_duration(USED_TO, USED_FROM)
HELD_CAPACITY = Q(status__in=BOOKED_STATUSES)
# actual_end after the start: a booking checked in and out before its slot used nothing.
USED = Q(status=BookingStatus.COMPLETED, actual_end__isnull=False, actual_end__gt=F("start"))


def _prefixed(q: Q, prefix: str) -> Q:
    """The same filter, seen from a model that reaches the original one through `prefix`."""
    clone = Q()
    clone.connector, clone.negated = q.connector, q.negated
    clone.children = [
        _prefixed(child, prefix) if isinstance(child, Q) else (prefix + child[0], child[1])  # type: ignore[index]
        for child in q.children
    ]
    return clone


def local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=TZ)


def _window_q(ranges: Iterable[tuple[dt.datetime, dt.datetime]]) -> Q | None:
    parts = [Q(start__gte=a, start__lt=b) for a, b in ranges if a < b]
    return reduce(or_, parts) if parts else None


# (organization_id, equipment_type_id, pool_id, local start day)
DayKey = tuple[int, int | None, int | None, dt.date]


def usage_by_booking_day(
    *,
    ranges: Iterable[tuple[dt.datetime, dt.datetime]],
    scope_q: Q | None = None,
    organization_id: int | None = None,
) -> dict[DayKey, Figures]:
    """Figures of the bookings starting in any of `ranges`, per organisation × resource × day.

    Two grouped queries (bookings; ledger entries joined to their booking), whatever the number
    of bookings. Hours are quantized per group, as DailyUsage stores them.
    """
    window = _window_q(ranges)
    if window is None:
        return {}
    bookings = Booking.objects.filter(window, status__in=COUNTED_STATUSES)
    ledger = QuotaLedgerEntry.objects.filter(
        _prefixed(window, "booking__"), kind__in=CONSUMED_KINDS, booking__isnull=False
    )
    if scope_q is not None:
        bookings = bookings.filter(scope_q)
        ledger = ledger.filter(_prefixed(scope_q, "booking__"))
    if organization_id is not None:
        bookings = bookings.filter(organization_id=organization_id)
        ledger = ledger.filter(booking__organization_id=organization_id)

    out: dict[DayKey, Figures] = {}
    rows = (
        bookings.annotate(day=TruncDate("start", tzinfo=TZ))
        .values("organization_id", "equipment_type_id", "pool_id", "day")
        .annotate(
            n_booked=Count("pk", filter=HELD_CAPACITY),
            booked=Sum(BOOKED_UNIT_TIME, filter=HELD_CAPACITY),
            used=Sum(USED_UNIT_TIME, filter=USED),
            n_cancelled=Count("pk", filter=Q(status=BookingStatus.CANCELLED)),
            n_no_shows=Count("pk", filter=Q(status=BookingStatus.NO_SHOW)),
            charge=Sum("final_price_krw"),
        )
        .order_by()
        .values_list(
            "organization_id",
            "equipment_type_id",
            "pool_id",
            "day",
            "n_booked",
            "booked",
            "used",
            "n_cancelled",
            "n_no_shows",
            "charge",
        )
    )
    for (
        org_id,
        type_id,
        pool_id,
        day,
        n_booked,
        booked,
        used,
        n_cancelled,
        n_no_shows,
        charge,
    ) in rows:
        out[(org_id, type_id, pool_id, day)] = Figures(
            bookings=n_booked,
            booked_hours=hours_of_duration(booked).quantize(FOUR),
            used_hours=hours_of_duration(used).quantize(FOUR),
            cancelled=n_cancelled,
            no_shows=n_no_shows,
            charge_krw=int(charge or 0),
        )
    consumed = (
        ledger.annotate(day=TruncDate("booking__start", tzinfo=TZ))
        .values("booking__organization_id", "booking__equipment_type_id", "booking__pool_id", "day")
        .annotate(hours=Sum("hours"))
        .order_by()
        .values_list(
            "booking__organization_id",
            "booking__equipment_type_id",
            "booking__pool_id",
            "day",
            "hours",
        )
    )
    for org_id, type_id, pool_id, day, hours in consumed:
        key = (org_id, type_id, pool_id, day)
        if key not in out:
            out[key] = Figures()
        out[key].unit_hours = (hours or ZERO).quantize(FOUR)
    return out


@dataclass(frozen=True)
class ResourceInfo:
    code: str
    kind: str  # equipment | pool
    center_code: str


def resource_index() -> dict[tuple[str, int], ResourceInfo]:
    """("equipment" | "pool", id) → code and centre, for every type and pool (a few hundred rows)."""
    index = {
        ("equipment", pk): ResourceInfo(code, "equipment", center)
        for pk, code, center in EquipmentType.objects.values_list("pk", "code", "center__code")
    }
    index.update(
        {
            ("pool", pk): ResourceInfo(code, "pool", center)
            for pk, code, center in AcceleratorPool.objects.values_list(
                "pk", "code", "center__code"
            )
        }
    )
    return index


def resource_of(key: DayKey, index: dict[tuple[str, int], ResourceInfo]) -> ResourceInfo:
    _org, type_id, pool_id, _day = key
    return index[("equipment", type_id)] if type_id is not None else index[("pool", pool_id)]  # type: ignore[index]


# --- the usage report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    columns: list[str]
    rows: list[dict]
    totals: dict


def report_scope(*, user, auth) -> Q | None:
    """What this caller may see: None for operators, else a filter on `organization`."""
    return _org_scope(user, auth)


def check_group_by(group_by: Iterable[str] | str | None) -> list[str]:
    """The asked groupings, in order, aliases resolved; ServiceError naming `group_by` otherwise."""
    if group_by is None:
        return list(DEFAULT_GROUP_BY)
    items = group_by.split(",") if isinstance(group_by, str) else list(group_by)
    names = [
        GROUP_ALIASES.get(item.strip().lower(), item.strip().lower())
        for item in items
        if item.strip()
    ]
    if not names:
        return list(DEFAULT_GROUP_BY)
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise ServiceError(
            f"Cannot group by {', '.join(unknown)}: use a comma-separated list of {', '.join(GROUPS)}.",
            field="group_by",
        )
    if "day" in names and "month" in names:
        raise ServiceError("Group by day or by month, not both.", field="group_by")
    return list(dict.fromkeys(names))


def check_window(start: dt.datetime, end: dt.datetime) -> None:
    if timezone.is_naive(start) or timezone.is_naive(end):
        raise ServiceError(
            "Give start and end with an offset, e.g. 2026-12-01T00:00:00+09:00.", field="start"
        )
    if end <= start:
        raise ServiceError("The end must be after the start.", field="end")
    if end - start > dt.timedelta(days=MAX_REPORT_DAYS):
        raise ServiceError(f"Ask for at most {MAX_REPORT_DAYS} days at a time.", field="end")


def _ceil_day(moment: dt.datetime) -> dt.date:
    local = moment.astimezone(TZ)
    return (
        local.date()
        if local == local_midnight(local.date())
        else local.date() + dt.timedelta(days=1)
    )


def split_window(start: dt.datetime, end: dt.datetime, today: dt.date):
    """([first, last) whole days read from DailyUsage, or None; the ranges computed live).

    DailyUsage answers for whole local days before `today`; today, later days and the partial
    days at either end are computed from the bookings.
    """
    first, last = _ceil_day(start), end.astimezone(TZ).date()
    if first >= last:
        return None, [(start, end)]
    cut = min(max(today, first), last)
    live = [
        (a, b) for a, b in ((start, local_midnight(first)), (local_midnight(cut), end)) if a < b
    ]
    return ((first, cut) if first < cut else None), live


_DAILY_KEYS = {
    "organization": "organization_id",
    "resource": "resource_code",
    "center": "center_code",
    "day": "day",
    "month": "month",
}


def _group_key(groups: list[str], *, org_id, resource, center, day: dt.date) -> tuple:
    values = {
        "organization": org_id,
        "resource": resource,
        "center": center,
        "day": day,
        "month": day.replace(day=1),
    }
    return tuple(values[g] for g in groups)


def usage_report(
    *,
    scope_q: Q | None,
    start: dt.datetime,
    end: dt.datetime,
    group_by: Iterable[str] | str | None = None,
    organization_id: int | None = None,
    today: dt.date | None = None,
) -> Report:
    """Usage over [start, end), grouped by `group_by` ⊆ organization, resource, center, day, month.

    scope_q: None (operator: everything) or a filter on `organization` (report_scope()).
    today: the first local day computed live rather than read from DailyUsage (default: today).
    """
    groups = check_group_by(group_by)
    check_window(start, end)
    today = today or timezone.localdate(timezone=TZ)
    daily, live = split_window(start, end, today)
    sums: dict[tuple, Figures] = defaultdict(Figures)

    if daily is not None:
        qs = DailyUsage.objects.filter(day__gte=daily[0], day__lt=daily[1])
        if scope_q is not None:
            qs = qs.filter(scope_q)
        if organization_id is not None:
            qs = qs.filter(organization_id=organization_id)
        if "month" in groups:
            qs = qs.annotate(month=TruncMonth("day"))
        keys = [_DAILY_KEYS[g] for g in groups]
        metrics = [
            "s_bookings",
            "s_booked",
            "s_used",
            "s_unit",
            "s_cancelled",
            "s_no_shows",
            "s_charge",
        ]
        rows = (
            qs.values(*keys)
            .annotate(
                s_bookings=Sum("bookings"),
                s_booked=Sum("booked_hours"),
                s_used=Sum("used_hours"),
                s_unit=Sum("unit_hours"),
                s_cancelled=Sum("cancelled"),
                s_no_shows=Sum("no_shows"),
                s_charge=Sum("charge_krw"),
            )
            .order_by()
            .values_list(*keys, *metrics)
        )
        width = len(keys)
        for row in rows:
            # One row per group: the database did the grouping, nothing to add to yet.
            sums[row[:width]] = Figures(*row[width:])

    if live:
        index = resource_index()
        for key, figures in usage_by_booking_day(
            ranges=live, scope_q=scope_q, organization_id=organization_id
        ).items():
            info = resource_of(key, index)
            sums[
                _group_key(
                    groups, org_id=key[0], resource=info.code, center=info.center_code, day=key[3]
                )
            ].add(figures)

    return _render_usage(groups, sums)


def _render_usage(groups: list[str], sums: dict[tuple, Figures]) -> Report:
    orgs: dict[int, tuple[str, str]] = {}
    if "organization" in groups:
        position = groups.index("organization")
        ids = {key[position] for key in sums}
        orgs = {
            pk: (slug, name)
            for pk, slug, name in Organization.objects.filter(pk__in=ids).values_list(
                "pk", "slug", "name"
            )
        }
    columns: list[str] = []
    for g in groups:
        columns.extend(["organization", "organization_name"] if g == "organization" else [g])
    columns.extend(METRICS)

    def shown(group: str, value) -> tuple:
        if group == "organization":
            return orgs[value]
        if group == "day":
            return (value.isoformat(),)
        if group == "month":
            return (f"{value:%Y-%m}",)
        return (value,)

    rows = []
    totals = Figures()
    for key, figures in sums.items():
        labels: list = []
        for group, value in zip(groups, key, strict=True):
            labels.extend(shown(group, value))
        rows.append(dict(zip(columns, [*labels, *figures.as_row().values()], strict=True)))
        totals.add(figures)
    rows.sort(key=lambda r: tuple(r[c] for c in columns[: len(columns) - len(METRICS)]))
    return Report(columns=columns, rows=rows, totals=totals.as_row())
