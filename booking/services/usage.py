"""Usage rollups: per booking (BookingUsage) and per organisation × resource × day (DailyUsage).

The figures and their definitions are those of booking/reports.py (read its docstring): a
booking counts whole on the facility-local day it starts; booked, used and consumed
(ledger) unit-hours; cancellations; no-shows; charge. Both rollups are recomputed from the
bookings and the quota ledger every time, never incremented, so running them again changes
nothing and the reports always add up to the ledger.

Written by the `booking.rollup_usage` beat task (usage_rollup_recent): the last few days, and
every day on which a booking that changed recently starts (a week-long pool booking that
completes today changes the day it started on).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from django.db import transaction
from django.db.models import Avg, Count, Max, Min, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from booking.choices import BookingStatus
from booking.lifecycle import used_span
from booking.models import Booking, BookingUsage, DailyUsage, TelemetrySample
from booking.reports import (
    BOOKED_STATUSES,
    COUNTED_STATUSES,
    FOUR,
    TZ,
    ZERO,
    local_midnight,
    resource_index,
    resource_of,
    usage_by_booking_day,
)
from booking.services.quotas import hours_of

logger = logging.getLogger(__name__)

BATCH = 2000
RECENT_DAYS = 3
DAILY_FIELDS = [
    "resource_kind",
    "center_code",
    "bookings",
    "booked_hours",
    "used_hours",
    "unit_hours",
    "cancelled",
    "no_shows",
    "charge_krw",
    "computed_at",
]
BOOKING_FIELDS = [
    "booked_unit_hours",
    "used_unit_hours",
    "mean_utilization_pct",
    "energy_kwh",
    "charge_krw",
    "samples",
    "computed_at",
]


# --- per organisation × resource × day ------------------------------------------------------------


def _day_runs(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days as runs of consecutive days: [(first, last), ...], both inclusive."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if runs and day == runs[-1][1] + dt.timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def usage_rollup_day_list(*, days: Iterable[dt.date]) -> int:
    """Recompute DailyUsage for these local days, in one transaction; returns the rows written.

    Two grouped queries for all the days together, then delete and upsert: the upsert (not a
    plain insert) keeps two overlapping runs from failing on the unique key; both write the
    same figures.
    """
    runs = _day_runs(days)
    if not runs:
        return 0
    ranges = [(local_midnight(a), local_midnight(b + dt.timedelta(days=1))) for a, b in runs]
    figures = usage_by_booking_day(ranges=ranges)
    index = resource_index()
    now = timezone.now()
    rows = []
    for key, f in figures.items():
        info = resource_of(key, index)
        rows.append(
            DailyUsage(
                organization_id=key[0],
                resource_code=info.code,
                resource_kind=info.kind,
                center_code=info.center_code,
                day=key[3],
                bookings=f.bookings,
                booked_hours=f.booked_hours,
                used_hours=f.used_hours,
                unit_hours=f.unit_hours,
                cancelled=f.cancelled,
                no_shows=f.no_shows,
                charge_krw=f.charge_krw,
                computed_at=now,
            )
        )
    stale = Q()
    for a, b in runs:
        stale |= Q(day__gte=a, day__lte=b)
    with transaction.atomic():
        DailyUsage.objects.filter(stale).delete()
        DailyUsage.objects.bulk_create(
            rows,
            batch_size=5000,
            update_conflicts=True,
            unique_fields=["organization", "resource_code", "day"],
            update_fields=DAILY_FIELDS,
        )
    return len(rows)


def usage_rollup_days(*, start_day: dt.date, end_day: dt.date) -> int:
    """Recompute DailyUsage for the local days start_day … end_day (inclusive), idempotently."""
    if end_day < start_day:
        raise ValueError("end_day is before start_day")
    return usage_rollup_day_list(
        days=(start_day + dt.timedelta(days=i) for i in range((end_day - start_day).days + 1))
    )


# --- per booking ----------------------------------------------------------------------------------


def _telemetry(booking_ids: list[int]) -> dict[int, tuple[float | None, Decimal | None, int]]:
    """booking id → (mean utilisation %, energy kWh, samples), from one grouped query.

    Energy per device: the rise of its cumulative energy counter (max − min) when it reports
    one, else mean power × the time between its first and last sample; summed over devices.
    """
    per_device = (
        TelemetrySample.objects.filter(booking_id__in=booking_ids)
        .values("booking_id", "device_id")
        .annotate(
            n=Count("pk"),
            util=Sum("utilization_pct"),
            e_n=Count("energy_j"),
            e_min=Min("energy_j"),
            e_max=Max("energy_j"),
            p_n=Count("power_w"),
            p_avg=Avg("power_w"),
            t_min=Min("at"),
            t_max=Max("at"),
        )
        .order_by()
    )
    acc: dict[int, list] = defaultdict(
        lambda: [0, 0.0, 0.0, False]
    )  # samples, Σ util, joules, any energy
    for row in per_device:
        entry = acc[row["booking_id"]]
        entry[0] += row["n"]
        entry[1] += row["util"] or 0.0
        if row["e_n"] >= 2:
            entry[2] += max(0.0, row["e_max"] - row["e_min"])
            entry[3] = True
        elif row["p_n"] and row["t_max"] > row["t_min"]:
            entry[2] += row["p_avg"] * (row["t_max"] - row["t_min"]).total_seconds()
            entry[3] = True
    return {
        booking_id: (
            util / n if n else None,
            (Decimal(joules) / Decimal(3_600_000)).quantize(FOUR) if has_energy else None,
            n,
        )
        for booking_id, (n, util, joules, has_energy) in acc.items()
    }


def _booking_usage(row: dict, telemetry: dict) -> BookingUsage:
    booked = used = ZERO
    if row["status"] in BOOKED_STATUSES:
        booked = hours_of(row["quantity"], row["start"], row["end"])
    if row["status"] == BookingStatus.COMPLETED and row["actual_end"] is not None:
        span = used_span(
            start=row["start"],
            end=row["end"],
            actual_start=row["actual_start"],
            actual_end=row["actual_end"],
        )
        if span is not None:
            used = hours_of(row["quantity"], *span)
    mean, energy, samples = telemetry.get(row["pk"], (None, None, 0))
    return BookingUsage(
        booking_id=row["pk"],
        booked_unit_hours=booked,
        used_unit_hours=max(used, ZERO),
        mean_utilization_pct=mean,
        energy_kwh=energy,
        charge_krw=row["final_price_krw"] or 0,
        samples=samples,
        computed_at=timezone.now(),
    )


def usage_rollup_bookings(
    *,
    since: dt.datetime | None = None,
    now: dt.datetime | None = None,
    booking_ids: Iterable[int] | None = None,
) -> int:
    """Recompute BookingUsage; returns how many bookings were rolled up.

    since=None: every booking that held capacity or was cancelled. With since: those changed
    since then, and those running at any time since then (their telemetry keeps arriving).
    Works in batches of BATCH bookings: one query for the bookings, one grouped telemetry query
    and one upsert per batch.
    """
    now = now or timezone.now()
    qs = Booking.objects.filter(status__in=COUNTED_STATUSES)
    if since is not None:
        qs = qs.filter(Q(updated_at__gte=since) | Q(start__lt=now, end__gt=since))
    if booking_ids is not None:
        qs = qs.filter(pk__in=list(booking_ids))
    columns = (
        "pk",
        "status",
        "quantity",
        "start",
        "end",
        "actual_start",
        "actual_end",
        "final_price_krw",
    )
    done, last = 0, 0
    while True:
        batch = list(qs.filter(pk__gt=last).order_by("pk").values(*columns)[:BATCH])
        if not batch:
            return done
        last = batch[-1]["pk"]
        telemetry = _telemetry([row["pk"] for row in batch])
        BookingUsage.objects.bulk_create(
            [_booking_usage(row, telemetry) for row in batch],
            update_conflicts=True,
            unique_fields=["booking"],
            update_fields=BOOKING_FIELDS,
        )
        done += len(batch)


# --- the beat task's unit of work --------------------------------------------------------------------


def usage_rollup_recent(
    *,
    now: dt.datetime | None = None,
    lookback: dt.timedelta = dt.timedelta(hours=6),
    recent_days: int = RECENT_DAYS,
) -> dict:
    """Today and the last `recent_days` days, plus the start days of bookings changed within
    `lookback` (several beat intervals, so a missed run is caught up), and their BookingUsage."""
    now = now or timezone.now()
    since = now - lookback
    today = timezone.localtime(now, TZ).date()
    changed_days = set(
        Booking.objects.filter(updated_at__gte=since)
        .annotate(day=TruncDate("start", tzinfo=TZ))
        .values_list("day", flat=True)
        .distinct()
        .order_by()
    )
    days = changed_days | {today - dt.timedelta(days=i) for i in range(recent_days + 1)}
    daily_rows = usage_rollup_day_list(days=days)
    bookings = usage_rollup_bookings(since=since, now=now)
    logger.info(
        "usage rollup: %s days, %s daily rows, %s bookings", len(days), daily_rows, bookings
    )
    return {"days": len(days), "daily_rows": daily_rows, "bookings": bookings}
