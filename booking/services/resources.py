"""Bridges from inventory models to the pure policy, allocator and availability modules."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict

from django.conf import settings
from django.db.models import Q

from booking.allocator import DeviceState, NodeState, UnitState
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
    """Maintenance windows on the whole type or pool overlapping [start, end)."""
    q = Q(equipment_type=resource) if isinstance(resource, EquipmentType) else Q(pool=resource)
    return list(
        MaintenanceWindow.objects.filter(q, start__lt=end, end__gt=start)
        .order_by()
        .values_list("start", "end", "reason")
    )


def _busy_map(allocations, key: str, windows, extra: dict) -> dict[int, list[tuple]]:
    busy: dict[int, list[tuple]] = defaultdict(list)
    for target_id, start, end in allocations:
        busy[target_id].append((start, end))
    for target_id, start, end in windows:
        for member in extra.get(target_id, [target_id]):
            busy[member].append((start, end))
    for intervals in busy.values():
        intervals.sort()
    return busy


def unit_states(
    equipment_type: EquipmentType,
    start: dt.datetime,
    end: dt.datetime,
    *,
    exclude_booking: int | None = None,
) -> list[UnitState]:
    """Every bookable unit with what holds it in [start, end): allocations and maintenance."""
    units = list(
        EquipmentUnit.objects.filter(equipment_type=equipment_type, status=UnitStatus.ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    allocs = Allocation.objects.filter(
        unit__in=units, active=True, start__lt=end, end__gt=start
    ).order_by()
    if exclude_booking:
        allocs = allocs.exclude(booking_id=exclude_booking)
    windows = (
        MaintenanceWindow.objects.filter(unit__in=units, start__lt=end, end__gt=start)
        .order_by()
        .values_list("unit_id", "start", "end")
    )
    busy = _busy_map(allocs.values_list("unit_id", "start", "end"), "unit", windows, {})
    return [UnitState(id=pk, busy=tuple(busy.get(pk, ()))) for pk in units]


def node_states(
    pool: AcceleratorPool,
    start: dt.datetime,
    end: dt.datetime,
    *,
    exclude_booking: int | None = None,
) -> list[NodeState]:
    """Every bookable node with its devices and what holds each in [start, end)."""
    rows = list(
        Device.objects.filter(
            node__pool=pool, node__status=NodeStatus.ACTIVE, status=DeviceStatus.ACTIVE
        )
        .order_by("node_id", "pk")
        .values_list("node_id", "pk")
    )
    device_ids = [pk for _node, pk in rows]
    devices_of_node: dict[int, list[int]] = defaultdict(list)
    for node_id, pk in rows:
        devices_of_node[node_id].append(pk)
    allocs = Allocation.objects.filter(
        device__in=device_ids, active=True, start__lt=end, end__gt=start
    ).order_by()
    if exclude_booking:
        allocs = allocs.exclude(booking_id=exclude_booking)
    windows = (
        MaintenanceWindow.objects.filter(node__pool=pool, start__lt=end, end__gt=start)
        .order_by()
        .values_list("node_id", "start", "end")
    )
    busy = _busy_map(
        allocs.values_list("device_id", "start", "end"), "device", windows, devices_of_node
    )
    return [
        NodeState(
            id=node_id,
            devices=tuple(DeviceState(id=pk, busy=tuple(busy.get(pk, ()))) for pk in pks),
        )
        for node_id, pks in devices_of_node.items()
    ]


def capacity_of(resource: Resource) -> tuple[int, list[int]]:
    """(how many units or devices can be booked, the device count of each node)."""
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
