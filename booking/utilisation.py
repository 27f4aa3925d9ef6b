"""The operator utilisation report: per equipment type and pool, capacity and the booked, used,
idle and no-show shares over a window (split from booking/reports.py, whose figures it reuses)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import (
    F,
    Q,
    Sum,
    Value,
)
from django.db.models.functions import Greatest, Least

from booking.choices import BookingStatus
from booking.models import Booking
from booking.reports import (
    BOOKED_STATUSES,
    FOUR,
    USED,
    USED_FROM,
    USED_TO,
    Report,
    _unit_duration,
    check_window,
    hours_of_duration,
)
from equipment.choices import DeviceStatus, NodeStatus, UnitStatus
from equipment.models import (
    AcceleratorPool,
    Device,
    EquipmentType,
    EquipmentUnit,
    MaintenanceWindow,
)

# --- the operator utilisation report -----------------------------------------------------------


Interval = tuple[dt.datetime, dt.datetime]


def _union(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _overlap_seconds(left: list[Interval], right: list[Interval]) -> float:
    """Total length of the intersection of two sorted lists of disjoint intervals."""
    total, i, j = 0.0, 0, 0
    while i < len(left) and j < len(right):
        a, b = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if a < b:
            total += (b - a).total_seconds()
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return total


def open_intervals(resource, start: dt.datetime, end: dt.datetime) -> list[Interval]:
    """When the resource takes bookings within [start, end): its opening hours on open weekdays."""
    tz = zoneinfo.ZoneInfo(resource.center.timezone or settings.TIME_ZONE)
    days = resource.open_days()
    if resource.opens_at is None and len(days) == 7:
        return [(start, end)]
    out: list[Interval] = []
    day = start.astimezone(tz).date()
    while dt.datetime.combine(day, dt.time.min, tzinfo=tz) < end:
        if day.weekday() in days:
            opens = dt.datetime.combine(day, resource.opens_at or dt.time.min, tzinfo=tz)
            closes = (
                dt.datetime.combine(day, resource.closes_at, tzinfo=tz)
                if resource.closes_at
                else dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
            )
            a, b = max(opens, start), min(closes, end)
            if a < b:
                out.append((a, b))
        day += dt.timedelta(days=1)
    return out


def _capacity_seconds(
    open_: list[Interval],
    shared: list[Interval],
    own: dict[int, list[Interval]],
    members: dict[int, int],
) -> float:
    """Σ over targets (units or nodes × their devices) of open time outside maintenance."""
    opened = sum((b - a).total_seconds() for a, b in open_)
    base = opened - _overlap_seconds(open_, _union(shared))
    total = 0.0
    for target, count in members.items():
        if own.get(target):
            total += count * (opened - _overlap_seconds(open_, _union([*shared, *own[target]])))
        else:
            total += count * base
    return total


UTILISATION_COLUMNS = [
    "resource",
    "resource_kind",
    "center",
    "capacity_units",
    "capacity_hours",
    "booked_hours",
    "used_hours",
    "idle_hours",
    "no_show_hours",
    "booked_pct",
    "used_pct",
    "idle_pct",
    "no_show_pct",
]


def _pct(part: Decimal, whole: Decimal) -> float | None:
    return float((part * 100 / whole).quantize(Decimal("0.01"))) if whole else None


def utilisation_report(*, start: dt.datetime, end: dt.datetime) -> Report:
    """Per resource over [start, end): capacity, and how much of it was booked, used, idle, no-show.

    capacity_hours: bookable units (active units; devices on active nodes) × opening hours in the
    window, less maintenance on the type, pool, unit or node. Units are counted as they are now.
    booked_hours: unit-hours of bookings that held capacity, clipped to the window (not by start
    day, unlike the usage report). used_hours: completed bookings' used time (lifecycle.used_span), clipped.
    idle_hours: booked − used (no-shows included). no_show_hours: booked hours of no-shows.
    booked_pct, used_pct, idle_pct: of capacity; no_show_pct: of booked hours.
    """
    check_window(start, end)
    w_start, w_end = Value(start), Value(end)
    clipped = _unit_duration(Least(F("end"), w_end), Greatest(F("start"), w_start))
    clipped_used = _unit_duration(Least(USED_TO, w_end), Greatest(USED_FROM, w_start))
    used_q = (
        USED & Q(actual_end__gt=start) & (Q(actual_start__lt=end) | Q(actual_start__isnull=True))
    )
    figures: dict[tuple[int | None, int | None], dict[str, Any]] = {
        (row["equipment_type_id"], row["pool_id"]): dict(row)
        for row in Booking.objects.filter(start__lt=end, end__gt=start, status__in=BOOKED_STATUSES)
        .values("equipment_type_id", "pool_id")
        .annotate(
            booked=Sum(clipped),
            used=Sum(clipped_used, filter=used_q),
            no_show=Sum(clipped, filter=Q(status=BookingStatus.NO_SHOW)),
        )
        .order_by()
    }

    maintenance = list(
        MaintenanceWindow.objects.filter(start__lt=end, end__gt=start).values_list(
            "equipment_type_id", "unit_id", "pool_id", "node_id", "start", "end"
        )
    )
    by: dict[str, dict[int, list[Interval]]] = {
        name: defaultdict(list) for name in ("type", "unit", "pool", "node")
    }
    for type_id, unit_id, pool_id, node_id, m_start, m_end in maintenance:
        window = (max(m_start, start), min(m_end, end))
        for name, target in (
            ("type", type_id),
            ("unit", unit_id),
            ("pool", pool_id),
            ("node", node_id),
        ):
            if target is not None:
                by[name][target].append(window)

    units: dict[int, dict[int, int]] = defaultdict(dict)
    for type_id, unit_id in EquipmentUnit.objects.filter(status=UnitStatus.ACTIVE).values_list(
        "equipment_type_id", "pk"
    ):
        units[type_id][unit_id] = 1
    devices: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for pool_id, node_id in Device.objects.filter(
        status=DeviceStatus.ACTIVE, node__status=NodeStatus.ACTIVE
    ).values_list("node__pool_id", "node_id"):
        devices[pool_id][node_id] += 1

    rows: list[dict[str, Any]] = []
    resources: list[tuple[str, EquipmentType | AcceleratorPool]] = [
        ("equipment", r) for r in EquipmentType.objects.select_related("center")
    ] + [("pool", r) for r in AcceleratorPool.objects.select_related("center")]
    for kind, resource in resources:
        key: tuple[int | None, int | None] = (
            (resource.pk, None) if kind == "equipment" else (None, resource.pk)
        )
        members = units[resource.pk] if kind == "equipment" else devices[resource.pk]
        if not members and key not in figures:
            continue
        shared = by["type" if kind == "equipment" else "pool"][resource.pk]
        own = by["unit" if kind == "equipment" else "node"]
        capacity = (
            Decimal(_capacity_seconds(open_intervals(resource, start, end), shared, own, members))
            / 3600
        )
        row: dict[str, Any] = figures.get(key, {})
        booked = hours_of_duration(row.get("booked"))
        used = hours_of_duration(row.get("used"))
        no_show = hours_of_duration(row.get("no_show"))
        idle = booked - used
        rows.append(
            {
                "resource": resource.code,
                "resource_kind": kind,
                "center": resource.center.code,
                "capacity_units": sum(members.values()),
                "capacity_hours": float(capacity.quantize(FOUR)),
                "booked_hours": float(booked.quantize(FOUR)),
                "used_hours": float(used.quantize(FOUR)),
                "idle_hours": float(idle.quantize(FOUR)),
                "no_show_hours": float(no_show.quantize(FOUR)),
                "booked_pct": _pct(booked, capacity),
                "used_pct": _pct(used, capacity),
                "idle_pct": _pct(idle, capacity),
                "no_show_pct": _pct(no_show, booked),
            }
        )
    rows.sort(key=lambda r: (r["center"], r["resource"]))
    totals = {
        name: round(sum(r[name] for r in rows), 4)
        for name in (
            "capacity_units",
            "capacity_hours",
            "booked_hours",
            "used_hours",
            "idle_hours",
            "no_show_hours",
        )
    }
    return Report(columns=UTILISATION_COLUMNS, rows=rows, totals=totals)
