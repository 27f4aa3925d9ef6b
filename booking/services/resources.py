"""Bridges from inventory models to the pure policy, allocator and availability modules."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from booking.allocator import DeviceState, NodeState, UnitState, idle_device, idle_node, idle_unit
from booking.models import Allocation
from booking.policy import Policy
from equipment.choices import DeviceStatus, NodeStatus, UnitStatus
from equipment.models import (
    AcceleratorPool,
    Device,
    EquipmentType,
    EquipmentUnit,
    MaintenanceWindow,
)
from equipment.selectors import resource_get
from testbed import readcache
from testbed.errors import ServiceError

Resource = EquipmentType | AcceleratorPool


def resource_for_code(code: str) -> Resource:
    resource = resource_get(code)
    if resource is None:
        raise ServiceError(
            f"No equipment type or pool has the code {code!r}: see GET /api/v1/equipment-types and /api/v1/pools.",
            code="invalid",
            field="resource",
        )
    return resource


def policy_for(resource: Resource) -> Policy:
    return Policy(
        slot_minutes=resource.slot_minutes,
        min_minutes=resource.min_minutes,
        max_minutes=resource.max_minutes,
        min_lead_minutes=resource.min_lead_minutes,
        max_lead_days=resource.max_lead_days,
        opens_at=resource.opens_at,
        closes_at=resource.closes_at,
        open_weekdays=resource.open_days(),
        buffer_minutes=resource.buffer_minutes if isinstance(resource, EquipmentType) else 0,
        tz=zoneinfo.ZoneInfo(resource.center.timezone or settings.TIME_ZONE),
    )


def buffer_of(resource: Resource) -> dt.timedelta:
    return dt.timedelta(
        minutes=resource.buffer_minutes if isinstance(resource, EquipmentType) else 0
    )


def resource_maintenance(resource: Resource, start: dt.datetime, end: dt.datetime) -> list[tuple]:
    """Maintenance windows on the whole type or pool overlapping [start, end).

    With the read cache on (web requests; testbed/readcache.py), the resource's windows that had
    not ended a day before the read are kept, and a span starting before that day is read."""
    q = Q(equipment_type=resource) if isinstance(resource, EquipmentType) else Q(pool=resource)
    if readcache.used():
        kind = "type" if isinstance(resource, EquipmentType) else "pool"
        since, windows = readcache.get(
            ("maintenance", kind, resource.pk), lambda: _upcoming_windows(q)
        )
        if start >= since:
            return [w for w in windows if w[0] < end and w[1] > start]
    return list(
        MaintenanceWindow.objects.filter(q, start__lt=end, end__gt=start)
        .order_by()
        .values_list("start", "end", "reason")
    )


def _upcoming_windows(q: Q) -> tuple[dt.datetime, list[tuple]]:
    since = timezone.now() - dt.timedelta(days=1)
    rows = MaintenanceWindow.objects.filter(q, end__gt=since).order_by("start")
    return since, list(rows.values_list("start", "end", "reason"))


def unit_states(
    equipment_type: EquipmentType,
    start: dt.datetime,
    end: dt.datetime,
    *,
    exclude_booking: int | None = None,
) -> list[UnitState]:
    """Every bookable unit with what holds it in [start, end): allocations (but those of
    `exclude_booking`) and the units' own maintenance; read as the decider reads a batch."""
    spans = {equipment_type.pk: (start, end)}
    return batch_states(spans, {}, exclude_booking=exclude_booking).units[equipment_type.pk]


def node_states(
    pool: AcceleratorPool,
    start: dt.datetime,
    end: dt.datetime,
    *,
    exclude_booking: int | None = None,
) -> list[NodeState]:
    """Every bookable node with its devices and what holds each in [start, end); read as the
    decider reads a batch."""
    return batch_states({}, {pool.pk: (start, end)}, exclude_booking=exclude_booking).nodes[pool.pk]


def capacity_of(resource: Resource) -> tuple[int, list[int]]:
    """(how many units or devices can be booked, the device count of each node); from the read
    cache when it is on (testbed/readcache.py)."""
    kind = "type" if isinstance(resource, EquipmentType) else "pool"
    return readcache.get(("capacity", kind, resource.pk), lambda: _capacity_read(resource))


def _capacity_read(resource: Resource) -> tuple[int, list[int]]:
    if isinstance(resource, EquipmentType):
        return EquipmentUnit.objects.filter(
            equipment_type=resource, status=UnitStatus.ACTIVE
        ).count(), []
    sizes: dict[int, int] = defaultdict(int)
    for node_id in Device.objects.filter(
        node__pool=resource, node__status=NodeStatus.ACTIVE, status=DeviceStatus.ACTIVE
    ).values_list("node_id", flat=True):
        sizes[node_id] += 1
    return sum(sizes.values()), list(sizes.values())


Span = tuple[dt.datetime, dt.datetime]


@dataclass
class BatchStates:
    """What holds each resource of a batch over its span, read in four statements for the whole
    batch (units and devices, allocations, maintenance), however many resources it touches."""

    units: dict[int, list[UnitState]]  # equipment type id → its bookable units
    nodes: dict[int, list[NodeState]]  # pool id → its bookable nodes and devices
    windows: dict[tuple[str, int], list[tuple]]  # ("type"|"pool", id) → whole-resource windows


def _holds(
    units: dict[int, list[int]],
    devices: dict[int, list[int]],
    types: dict[int, Span],
    pools: dict[int, Span],
    exclude_booking: int | None = None,
) -> list:
    """Active allocations (but those of `exclude_booking`) over each resource's span of its units (by equipment type) and devices
    (by pool), in one statement whose text does not depend on the batch: the resources and their
    spans go as arrays and PostgreSQL finds the units and devices itself, so the parameters are
    a few values per resource whatever its size (880 devices are not sent, and their
    timestamps not adapted, for every decision). It is prepared and planned once per connection
    and probes the exclusion constraints' GiST indexes (target, time range), so its cost follows
    the rows it finds, not every allocation a target ever had. Rows of units or devices that are
    not bookable (retired, faulty) come too; batch_states builds states for bookable ones only.

    Each target's rows come from a LATERAL subquery (OFFSET 0 keeps it one): so PostgreSQL probes
    the GiST index with the target *and* the span. As a plain join it probed with the target
    alone and filtered the range afterwards, reading every active allocation the target ever
    had (15 ms for 880 devices with 9 each, growing with every booking; 3 ms this way)."""
    if not any(units.values()) and not any(devices.values()):
        return []
    if connection.vendor != "postgresql":
        held = Q(pk__in=[])
        for key, targets, spans in (("unit_id", units, types), ("device_id", devices, pools)):
            for resource, ids in targets.items():
                start, end = spans[resource]
                held |= Q(**{f"{key}__in": ids}, start__lt=end, end__gt=start)
        rows = Allocation.objects.filter(held, active=True).order_by()
        if exclude_booking:
            rows = rows.exclude(booking_id=exclude_booking)
        return list(rows.values_list("unit_id", "device_id", "start", "end"))
    params: list = []
    for of in (types, pools):
        # An empty or inverted span (a search clipped at the end of the calendar) holds nothing;
        # tstzrange() would refuse the inverted one.
        spans = {resource: (s, e) for resource, (s, e) in of.items() if s < e}
        params += [list(spans), [s for s, _e in spans.values()], [e for _s, e in spans.values()]]
        params.append(exclude_booking or 0)  # no booking has id 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.unit_id, a.device_id, a.start, a."end"
            FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS t(id, s, e)
            JOIN equipment_equipmentunit u ON u.equipment_type_id = t.id
            CROSS JOIN LATERAL (
              SELECT * FROM booking_allocation a
              WHERE a.unit_id = u.id AND a.active
                AND tstzrange(a.start, a."end") && tstzrange(t.s, t.e) AND a.booking_id <> %s
              OFFSET 0
            ) a
            UNION ALL
            SELECT a.unit_id, a.device_id, a.start, a."end"
            FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS p(id, s, e)
            JOIN equipment_node n ON n.pool_id = p.id
            JOIN equipment_device d ON d.node_id = n.id
            CROSS JOIN LATERAL (
              SELECT * FROM booking_allocation a
              WHERE a.device_id = d.id AND a.active
                AND tstzrange(a.start, a."end") && tstzrange(p.s, p.e) AND a.booking_id <> %s
              OFFSET 0
            ) a
            """,
            params,
        )
        return cursor.fetchall()


def _node_state(node_id: int, device_ids: list[int], busy: dict[int, list[tuple]]) -> NodeState:
    """A node's state over a batch's span; a node with nothing on it is the shared idle one."""
    if not any(pk in busy for pk in device_ids):
        return idle_node(node_id, tuple(device_ids))
    return NodeState(
        id=node_id,
        devices=tuple(
            DeviceState(id=pk, busy=tuple(busy[pk])) if pk in busy else idle_device(pk)
            for pk in device_ids
        ),
    )


def batch_states(
    types: dict[int, Span], pools: dict[int, Span], *, exclude_booking: int | None = None
) -> BatchStates:
    """The same states as unit_states / node_states / resource_maintenance give one resource at
    a time, for every equipment type and pool of a batch (each over its own span) at once."""
    unit_ids: dict[int, list[int]] = defaultdict(list)
    if types:
        for type_id, pk in (
            EquipmentUnit.objects.filter(equipment_type_id__in=types, status=UnitStatus.ACTIVE)
            .order_by("pk")
            .values_list("equipment_type_id", "pk")
        ):
            unit_ids[type_id].append(pk)
    devices_of_node: dict[int, list[int]] = defaultdict(list)
    nodes_of_pool: dict[int, list[int]] = defaultdict(list)
    if pools:
        for pool_id, node_id, pk in (
            Device.objects.filter(
                node__pool_id__in=pools, node__status=NodeStatus.ACTIVE, status=DeviceStatus.ACTIVE
            )
            .order_by("node_id", "pk")
            .values_list("node__pool_id", "node_id", "pk")
        ):
            if not devices_of_node[node_id]:
                nodes_of_pool[pool_id].append(node_id)
            devices_of_node[node_id].append(pk)

    # Allocations: each unit's or device's rows over its resource's span, in one statement.
    device_ids = {
        p: [d for n in ids for d in devices_of_node[n]] for p, ids in nodes_of_pool.items()
    }
    unit_busy: dict[int, list[tuple]] = defaultdict(list)
    device_busy: dict[int, list[tuple]] = defaultdict(list)
    for unit_id, device_id, start, end in _holds(
        unit_ids, device_ids, types, pools, exclude_booking
    ):
        if unit_id is not None:
            unit_busy[unit_id].append((start, end))
        else:
            device_busy[device_id].append((start, end))

    # Maintenance over the whole batch's span, sorted out per resource below.
    spans = list(types.values()) + list(pools.values())
    windows: dict[tuple[str, int], list[tuple]] = {
        **{("type", t): [] for t in types},
        **{("pool", p): [] for p in pools},
    }
    if spans:
        first, last = min(s for s, _e in spans), max(e for _s, e in spans)
        all_units = [u for ids in unit_ids.values() for u in ids]
        all_nodes = list(devices_of_node)
        rows = MaintenanceWindow.objects.filter(
            Q(equipment_type_id__in=list(types))
            | Q(pool_id__in=list(pools))
            | Q(unit_id__in=all_units)
            | Q(node_id__in=all_nodes),
            start__lt=last,
            end__gt=first,
        ).values_list(
            "equipment_type_id", "pool_id", "unit_id", "node_id", "start", "end", "reason"
        )
        type_of_unit = {u: t for t, ids in unit_ids.items() for u in ids}
        pool_of_node = {n: p for p, ids in nodes_of_pool.items() for n in ids}
        for type_id, pool_id, unit_id, node_id, start, end, reason in rows:
            if type_id is not None or pool_id is not None:
                key = ("type", type_id) if type_id is not None else ("pool", pool_id)
                span_start, span_end = types[type_id] if type_id is not None else pools[pool_id]
                if start < span_end and end > span_start:
                    windows[key].append((start, end, reason))
            elif unit_id is not None:
                span_start, span_end = types[type_of_unit[unit_id]]
                if start < span_end and end > span_start:
                    unit_busy[unit_id].append((start, end))
            elif node_id is not None:
                span_start, span_end = pools[pool_of_node[node_id]]
                if start < span_end and end > span_start:
                    for device_id in devices_of_node[node_id]:
                        device_busy[device_id].append((start, end))
    for intervals in (*unit_busy.values(), *device_busy.values()):
        intervals.sort()
    return BatchStates(
        units={
            t: [
                UnitState(id=pk, busy=tuple(unit_busy[pk])) if pk in unit_busy else idle_unit(pk)
                for pk in unit_ids.get(t, [])
            ]
            for t in types
        },
        nodes={
            p: [_node_state(n, devices_of_node[n], device_busy) for n in nodes_of_pool.get(p, [])]
            for p in pools
        },
        windows=windows,
    )
