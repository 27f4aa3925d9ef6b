"""Reads for the catalogue pages: search, each card's free-soon summary, a resource's week.

Built from the pieces booking.selectors.availability uses (bookable units and devices, active
allocations, maintenance, and the pure timeline sweep of booking.availability), but fetched
for many resources at once: the home page costs a fixed handful of queries whatever the number
of cards, and a week of the 880-device pool skips the per-slot "fits" search that the page
does not show (availability() walks every slot start with the allocator for it).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import npgettext, pgettext

from booking.availability import timeline
from booking.models import Allocation, Membership
from booking.policy import Policy, is_open, open_span, within_hours
from booking.services.fees import discount_for
from booking.services.resources import node_states, policy_for, unit_states
from equipment.choices import DeviceStatus, NodeStatus, UnitStatus
from equipment.models import (
    AcceleratorPool,
    Center,
    Device,
    EquipmentType,
    EquipmentUnit,
    MaintenanceWindow,
)
from equipment.selectors import bookable_units, equipment_type_list, pool_list, pool_node_shapes

Resource = EquipmentType | AcceleratorPool
Interval = tuple[dt.datetime, dt.datetime]
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
# Weeks the timeline accepts (?week=): far enough for any booking, never near datetime's limits.
FIRST_WEEK = dt.date(2000, 1, 3)
LAST_WEEK = dt.date(2100, 12, 27)


# --- search ------------------------------------------------------------------------------------


def catalogue_choices() -> dict[str, list]:
    """What the home page's filters offer: centres (code, names) and accelerator models."""
    centers = list(Center.objects.order_by("code").values_list("code", "name", "name_en"))
    accelerators = sorted(
        set(AcceleratorPool.objects.order_by().values_list("accelerator", flat=True))
    )
    return {"centers": centers, "accelerators": [(a, a) for a in accelerators]}


@dataclass
class CatalogueResult:
    types: list[EquipmentType]
    pools: list[AcceleratorPool]
    days: list[dt.date]


def catalogue_search(
    *,
    q: str = "",
    center: str = "",
    field: str = "",
    phase: int | None = None,
    accelerator: str = "",
    days: list[dt.date] | None = None,
) -> CatalogueResult:
    """Equipment types and pools matching every filter given, each with `.free_soon`: one
    DayFree per day of `days` (default: tomorrow and the day after, facility time)."""
    types = equipment_type_list()
    pools = pool_list()
    if q:
        names = Q(name__icontains=q) | Q(name_en__icontains=q) | Q(code__icontains=q)
        types = types.filter(names | Q(category__icontains=q))
        pools = pools.filter(names | Q(accelerator__icontains=q) | Q(vendor__icontains=q))
    if center:
        types = types.filter(center__code=center)
        pools = pools.filter(center__code=center)
    if field:
        types = types.filter(field=field)
        pools = pools.filter(center__field=field)
    if phase is not None:
        types = types.filter(phase=phase)
        pools = pools.none()  # pools are not built in phases
    if accelerator:
        types = types.none()  # equipment carries no accelerator model
        pools = pools.filter(accelerator=accelerator)
    found_types = list(types.order_by("center__code", "code"))
    found_pools = list(pools.order_by("code"))
    if days is None:
        today = timezone.localdate()
        days = [today + DAY, today + 2 * DAY]
    _attach_free_soon(found_types, found_pools, days)
    return CatalogueResult(types=found_types, pools=found_pools, days=days)


@dataclass(frozen=True)
class DayFree:
    """How many units or devices are free on one day, within its open hours."""

    day: dt.date
    is_open: bool
    least: int  # free through the whole open span (the fewest at any moment)
    most: int  # free at the best moment
    capacity: int


def _day_span(policy: Policy, day: dt.date) -> Interval | None:
    if day.weekday() not in policy.open_weekdays:
        return None
    if policy.around_the_clock:
        start = dt.datetime.combine(day, dt.time(0), tzinfo=policy.tz)
        return start, dt.datetime.combine(day + DAY, dt.time(0), tzinfo=policy.tz)
    return open_span(policy, day)


def _summaries(policy: Policy, ids: list[int], busy, days: list[dt.date]) -> list[DayFree]:
    out = []
    for day in days:
        span = _day_span(policy, day)
        if span is None or not ids:
            out.append(DayFree(day, span is not None, 0, 0, len(ids)))
            continue
        steps = timeline(ids, busy, span[0], span[1])
        counts = [free for _s, _e, free in steps] or [len(ids)]
        out.append(DayFree(day, True, min(counts), max(counts), len(ids)))
    return out


def _attach_free_soon(
    types: list[EquipmentType], pools: list[AcceleratorPool], days: list[dt.date]
) -> None:
    """Five queries for any number of cards: units, devices, their allocations, maintenance."""
    if not days or not (types or pools):
        return
    lo = dt.datetime.combine(min(days) - DAY, dt.time(0), tzinfo=dt.UTC)
    hi = dt.datetime.combine(max(days) + 2 * DAY, dt.time(0), tzinfo=dt.UTC)
    type_ids = [t.pk for t in types]
    pool_ids = [p.pk for p in pools]

    members: dict[tuple[str, int], list[int]] = defaultdict(list)  # ("t"/"p", id) → unit/device ids
    node_members: dict[int, list[int]] = defaultdict(list)
    busy: dict[tuple[str, int], list[Interval]] = defaultdict(list)  # ("u"/"d", id) → intervals
    if type_ids:
        for type_id, unit_id in (
            EquipmentUnit.objects.filter(equipment_type_id__in=type_ids, status=UnitStatus.ACTIVE)
            .order_by("pk")
            .values_list("equipment_type_id", "pk")
        ):
            members[("t", type_id)].append(unit_id)
        for unit_id, start, end in (
            Allocation.objects.filter(
                unit__equipment_type_id__in=type_ids, active=True, start__lt=hi, end__gt=lo
            )
            .order_by()
            .values_list("unit_id", "start", "end")
        ):
            busy[("u", unit_id)].append((start, end))
    if pool_ids:
        for pool_id, node_id, device_id in (
            Device.objects.filter(
                node__pool_id__in=pool_ids,
                node__status=NodeStatus.ACTIVE,
                status=DeviceStatus.ACTIVE,
            )
            .order_by("node_id", "pk")
            .values_list("node__pool_id", "node_id", "pk")
        ):
            members[("p", pool_id)].append(device_id)
            node_members[node_id].append(device_id)
        for device_id, start, end in (
            Allocation.objects.filter(
                device__node__pool_id__in=pool_ids, active=True, start__lt=hi, end__gt=lo
            )
            .order_by()
            .values_list("device_id", "start", "end")
        ):
            busy[("d", device_id)].append((start, end))
    windows = MaintenanceWindow.objects.filter(start__lt=hi, end__gt=lo).filter(
        Q(equipment_type_id__in=type_ids)
        | Q(unit__equipment_type_id__in=type_ids)
        | Q(pool_id__in=pool_ids)
        | Q(node__pool_id__in=pool_ids)
    )
    for type_id, unit_id, pool_id, node_id, start, end in windows.order_by().values_list(
        "equipment_type_id", "unit_id", "pool_id", "node_id", "start", "end"
    ):
        if type_id:
            targets = [("u", u) for u in members.get(("t", type_id), [])]
        elif unit_id:
            targets = [("u", unit_id)]
        elif pool_id:
            targets = [("d", d) for d in members.get(("p", pool_id), [])]
        else:
            targets = [("d", d) for d in node_members.get(node_id, [])]
        for target in targets:
            busy[target].append((start, end))

    for equipment_type in types:
        ids = members.get(("t", equipment_type.pk), [])
        unit_busy = {u: busy.get(("u", u), ()) for u in ids}
        equipment_type.free_soon = _summaries(policy_for(equipment_type), ids, unit_busy, days)  # type: ignore[attr-defined]
    for pool in pools:
        ids = members.get(("p", pool.pk), [])
        device_busy = {d: busy[("d", d)] for d in ids if ("d", d) in busy}
        pool.free_soon = _summaries(policy_for(pool), ids, device_busy, days)  # type: ignore[attr-defined]


# --- one resource: specs, rules, price -----------------------------------------------------------


def resource_details(resource: Resource) -> dict:
    """What the resource page shows besides rules and timeline: kind, node shapes or units."""
    if isinstance(resource, AcceleratorPool):
        shapes = pool_node_shapes([resource.pk]).get(resource.pk, [])
        return {
            "is_pool": True,
            "node_shapes": shapes,
            "devices": sum(s["devices"] * s["nodes"] for s in shapes),
            "nodes": sum(s["nodes"] for s in shapes),
        }
    return {"is_pool": False, "units": list(bookable_units(resource))}


def _duration_text(minutes: int) -> str:
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = []
    if days:
        parts.append(npgettext("catalogue", "%(n)s일", "%(n)s일", days) % {"n": days})
    if hours:
        parts.append(npgettext("catalogue", "%(n)s시간", "%(n)s시간", hours) % {"n": hours})
    if mins or not parts:
        parts.append(pgettext("catalogue", "%(n)s분") % {"n": mins})
    return " ".join(parts)


def _weekdays_text(days: frozenset[int]) -> str:
    names = pgettext("catalogue", "월,화,수,목,금,토,일").split(",")
    ordered = sorted(days)
    if len(ordered) == 7:
        return pgettext("catalogue", "매일")
    if ordered and ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{names[ordered[0]]}–{names[ordered[-1]]}"
    return ", ".join(names[d] for d in ordered)


def rules_in_words(resource: Resource) -> list[tuple[str, str]]:
    """The booking rules as (what, rule) sentences for people, from the same Policy the
    services check."""
    policy = policy_for(resource)
    rules = []
    if policy.slot_minutes >= 1440:
        slot = pgettext("catalogue", "하루 단위로 예약합니다 (자정에 시작하고 끝남).")
    else:
        slot = pgettext("catalogue", "%(slot)s 단위로 시작하고 끝납니다.") % {
            "slot": _duration_text(policy.slot_minutes)
        }
    rules.append((pgettext("catalogue", "예약 단위"), slot))
    rules.append(
        (
            pgettext("catalogue", "이용 시간"),
            pgettext("catalogue", "한 번에 최소 %(min)s, 최대 %(max)s.")
            % {
                "min": _duration_text(policy.min_minutes),
                "max": _duration_text(policy.max_minutes),
            },
        )
    )
    if policy.min_lead_minutes:
        lead = pgettext("catalogue", "시작 %(lead)s 전까지 예약해야 합니다.") % {
            "lead": _duration_text(policy.min_lead_minutes)
        }
    else:
        lead = pgettext("catalogue", "바로 시작하는 예약도 됩니다.")
    lead += " " + pgettext("catalogue", "%(days)s일 앞까지 예약할 수 있습니다.") % {
        "days": policy.max_lead_days
    }
    rules.append((pgettext("catalogue", "예약 시점"), lead))
    if not policy.open_weekdays:
        hours = pgettext("catalogue", "지금은 운영하지 않습니다.")
    elif policy.around_the_clock:
        hours = pgettext("catalogue", "%(days)s 24시간 운영합니다.") % {
            "days": _weekdays_text(policy.open_weekdays)
        }
    else:
        hours = pgettext("catalogue", "%(days)s %(opens)s–%(closes)s에 운영합니다.") % {
            "days": _weekdays_text(policy.open_weekdays),
            "opens": policy.opens_at.strftime("%H:%M") if policy.opens_at else "",
            "closes": policy.closes_at.strftime("%H:%M") if policy.closes_at else "",
        }
    rules.append((pgettext("catalogue", "운영 시간"), hours))
    if resource.requires_approval:
        approval = pgettext("catalogue", "운영자가 승인해야 확정됩니다.")
    else:
        approval = pgettext("catalogue", "승인 없이 바로 배정됩니다.")
    rules.append((pgettext("catalogue", "승인"), approval))
    if resource.requires_qualification:
        qualification = pgettext(
            "catalogue", "사용 자격(교육 이수)이 있는 사람만 예약할 수 있습니다."
        )
    else:
        qualification = pgettext("catalogue", "따로 필요한 자격은 없습니다.")
    rules.append((pgettext("catalogue", "자격"), qualification))
    if policy.buffer_minutes:
        rules.append(
            (
                pgettext("catalogue", "준비 시간"),
                pgettext("catalogue", "예약 앞뒤로 %(buffer)s은 비워 둡니다 (준비·정리).")
                % {"buffer": _duration_text(policy.buffer_minutes)},
            )
        )
    rules.append(
        (
            pgettext("catalogue", "취소"),
            pgettext(
                "catalogue",
                "시작 %(free)s 전까지는 무료로 취소됩니다. 그보다 늦으면 예약한 만큼 청구됩니다.",
            )
            % {"free": _duration_text(resource.cancel_free_minutes)},
        )
    )
    return rules


@dataclass(frozen=True)
class HourlyPrice:
    organization: object | None  # None: the list price (signed out, or no organisation)
    list_price: int
    discount_percent: Decimal
    price: int


def hourly_prices(*, resource: Resource, user) -> list[HourlyPrice]:
    """The price per unit-hour (device-hour for pools) for each active organisation the person
    belongs to, after its discount (booking.services.fees.discount_for); else the list price."""
    rate = int(resource.hourly_rate)
    list_only = [HourlyPrice(None, rate, Decimal(0), rate)]
    if not (user and user.is_authenticated):
        return list_only
    memberships = (
        Membership.objects.filter(user=user, organization__is_active=True)
        .select_related("organization")
        .order_by("organization__name")[:20]
    )
    prices = []
    for membership in memberships:
        discount = discount_for(membership.organization)
        net = (Decimal(rate) * (Decimal(1) - discount)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        prices.append(
            HourlyPrice(membership.organization, rate, (discount * 100).normalize(), int(net))
        )
    return prices or list_only


# --- one resource: the week timeline ---------------------------------------------------------------


def week_of(day: dt.date) -> dt.date:
    """The Monday of `day`'s week."""
    return day - dt.timedelta(days=day.weekday())


@dataclass
class Cell:
    start: dt.datetime
    end: dt.datetime
    state: str  # free, partial, full (pools); free, busy (units); maintenance, closed, past
    free: int | None = None
    book_url: str | None = None


@dataclass
class Column:
    start: dt.timedelta  # offset from local midnight
    end: dt.timedelta
    label: str


@dataclass
class DayRow:
    day: dt.date
    cells: list[Cell] = field(default_factory=list)
    units: list[tuple[str, list[Cell]]] = field(default_factory=list)  # equipment: per unit


@dataclass
class Maintenance:
    start: dt.datetime
    end: dt.datetime
    reason: str
    target: str  # "" for the whole resource, else the unit's code or node's host name


@dataclass
class WeekTimeline:
    monday: dt.date
    previous: dt.date
    next: dt.date
    columns: list[Column]
    rows: list[DayRow]
    capacity: int
    maintenance: list[Maintenance]
    is_pool: bool


def _columns(policy: Policy) -> list[Column]:
    """Hour columns across the open hours (all day around the clock); one per day for daily slots."""
    if policy.slot_minutes >= 1440:
        return [Column(dt.timedelta(0), DAY, pgettext("catalogue", "종일"))]
    first, last = 0, 24
    if not policy.around_the_clock and policy.opens_at and policy.closes_at:
        if policy.closes_at > policy.opens_at:
            first = policy.opens_at.hour
            last = policy.closes_at.hour + (1 if policy.closes_at.minute else 0)
    return [Column(h * HOUR, (h + 1) * HOUR, f"{h:02d}") for h in range(first, last)]


def _overlaps(intervals, start: dt.datetime, end: dt.datetime) -> bool:
    return any(s < end and e > start for s, e in intervals)


def _book_url(resource: Resource, start: dt.datetime, end: dt.datetime, quantity: int = 1) -> str:
    query = urlencode(
        {
            "resource": resource.code,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "quantity": quantity,
        }
    )
    return f"{reverse('portal:book')}?{query}"


def week_timeline(
    *, resource: Resource, week: dt.date, now: dt.datetime | None = None
) -> WeekTimeline:
    """Monday to Sunday of `week`'s week: free device counts per hour for a pool, free/busy per
    unit for equipment; maintenance marked; each bookable free cell links to the booking form.

    Four or five queries whatever the pool's size (states of units or devices, their
    allocations, maintenance with reasons).
    """
    policy = policy_for(resource)
    now = now or timezone.now()
    monday = week_of(week)
    start = dt.datetime.combine(monday, dt.time(0), tzinfo=policy.tz)
    end = dt.datetime.combine(monday + 7 * DAY, dt.time(0), tzinfo=policy.tz)
    columns = _columns(policy)
    earliest = now + dt.timedelta(minutes=policy.min_lead_minutes)
    latest = now + dt.timedelta(days=policy.max_lead_days)
    is_pool = isinstance(resource, AcceleratorPool)

    windows = MaintenanceWindow.objects.filter(start__lt=end, end__gt=start)
    if is_pool:
        windows = windows.filter(Q(pool=resource) | Q(node__pool=resource))
    else:
        windows = windows.filter(Q(equipment_type=resource) | Q(unit__equipment_type=resource))
    maintenance = []
    whole: list[Interval] = []
    per_unit: dict[int, list[Interval]] = defaultdict(list)
    for w_start, w_end, reason, unit_id, unit_code, hostname in windows.order_by(
        "start"
    ).values_list("start", "end", "reason", "unit_id", "unit__code", "node__hostname"):
        maintenance.append(Maintenance(w_start, w_end, reason, unit_code or hostname or ""))
        if unit_id:
            per_unit[unit_id].append((w_start, w_end))
        elif not hostname:
            whole.append((w_start, w_end))

    def bookable(cell_start: dt.datetime, cell_end: dt.datetime) -> str | None:
        book_end = cell_start + max(cell_end - cell_start, dt.timedelta(minutes=policy.min_minutes))
        if (
            cell_start < earliest
            or cell_start > latest
            or not is_open(policy, cell_start, book_end)
        ):
            return None
        return _book_url(resource, cell_start, book_end)

    def base_state(cell_start: dt.datetime, cell_end: dt.datetime) -> str | None:
        if cell_end <= now:
            return "past"
        if not within_hours(policy, cell_start, cell_end):
            return "closed"
        if _overlaps(whole, cell_start, cell_end):
            return "maintenance"
        return None

    rows = [DayRow(day=monday + i * DAY) for i in range(7)]
    if isinstance(resource, AcceleratorPool):
        nodes = node_states(resource, start, end)
        ids = [d.id for n in nodes for d in n.devices]
        busy = {d.id: list(d.busy) + whole for n in nodes for d in n.devices}
        steps = timeline(ids, busy, start, end)
        step_starts = [s for s, _e, _n in steps]
        for row in rows:
            for column in columns:
                cell_start, cell_end = _cell_bounds(policy, row.day, column)
                i = max(bisect.bisect_right(step_starts, cell_start) - 1, 0)
                free = len(ids)
                while i < len(steps) and steps[i][0] < cell_end:
                    free = min(free, steps[i][2])
                    i += 1
                state = base_state(cell_start, cell_end) or (
                    "full" if free == 0 else "free" if free == len(ids) else "partial"
                )
                url = bookable(cell_start, cell_end) if state in ("free", "partial") else None
                row.cells.append(Cell(cell_start, cell_end, state, free, url))
        capacity = len(ids)
    else:
        units = unit_states(resource, start, end)
        codes = dict(bookable_units(resource).values_list("pk", "code"))
        for row in rows:
            for unit in units:
                cells = []
                for column in columns:
                    cell_start, cell_end = _cell_bounds(policy, row.day, column)
                    state = base_state(cell_start, cell_end) or ""
                    if not state:
                        if _overlaps(per_unit.get(unit.id, ()), cell_start, cell_end):
                            state = "maintenance"
                        elif _overlaps(unit.busy, cell_start, cell_end):
                            state = "busy"
                        else:
                            state = "free"
                    url = bookable(cell_start, cell_end) if state == "free" else None
                    cells.append(Cell(cell_start, cell_end, state, None, url))
                row.units.append((codes.get(unit.id, str(unit.id)), cells))
        capacity = len(units)
    return WeekTimeline(
        monday=monday,
        previous=monday - 7 * DAY,
        next=monday + 7 * DAY,
        columns=columns,
        rows=rows,
        capacity=capacity,
        maintenance=maintenance,
        is_pool=is_pool,
    )


def _cell_bounds(policy: Policy, day: dt.date, column: Column) -> Interval:
    midnight = dt.datetime.combine(day, dt.time(0))
    return (
        (midnight + column.start).replace(tzinfo=policy.tz),
        (midnight + column.end).replace(tzinfo=policy.tz),
    )


def first_bookable(timeline: WeekTimeline) -> Cell | None:
    """The earliest cell of the week that links to the booking form."""
    cells = [c for row in timeline.rows for c in row.cells] + [
        c for row in timeline.rows for _code, unit_cells in row.units for c in unit_cells
    ]
    return min((c for c in cells if c.book_url), key=lambda c: c.start, default=None)


def resource_page(*, resource: Resource, week: dt.date, user, timeline_only: bool = False) -> dict:
    """Everything the resource page shows: the week's timeline (with its first bookable cell),
    and unless `timeline_only`, the specs, the rules in words and the person's hourly prices."""
    timeline = week_timeline(resource=resource, week=week)
    page: dict[str, Any] = {
        "resource": resource,
        "is_pool": isinstance(resource, AcceleratorPool),
        "timeline": timeline,
        "first_bookable": first_bookable(timeline),
    }
    if not timeline_only:
        page["details"] = resource_details(resource)
        page["rules"] = rules_in_words(resource)
        page["prices"] = hourly_prices(resource=resource, user=user)
    return page


def booking_form_url(
    *, resource: Resource, start: dt.datetime, end: dt.datetime, quantity: int
) -> str:
    """The booking form's address, prefilled (/book/?resource=&start=&end=&quantity=)."""
    return _book_url(resource, start, end, quantity)


__all__ = [
    "FIRST_WEEK",
    "LAST_WEEK",
    "catalogue_choices",
    "catalogue_search",
    "booking_form_url",
    "first_bookable",
    "hourly_prices",
    "resource_details",
    "resource_page",
    "rules_in_words",
    "week_of",
    "week_timeline",
]
