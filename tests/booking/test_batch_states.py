"""A batch's resources read in four statements give exactly what a plain ORM read of each gives
(the reference below: what unit_states / node_states were before they became batch reads)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from booking.allocator import DeviceState, NodeState, UnitState
from booking.models import Allocation
from booking.services.resources import (
    batch_states,
    node_states,
    resource_maintenance,
    unit_states,
)
from equipment.choices import DeviceStatus
from equipment.models import Device, EquipmentUnit, MaintenanceWindow, Node
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware, make_pool

pytestmark = pytest.mark.django_db


def _reference_busy(allocs, windows, members: dict) -> dict[int, list[tuple]]:
    busy: dict[int, list[tuple]] = defaultdict(list)
    for target, start, end in allocs:
        busy[target].append((start, end))
    for owner, start, end in windows:
        for member in members.get(owner, [owner]):
            busy[member].append((start, end))
    return {k: sorted(v) for k, v in busy.items()}


def reference_unit_states(equipment_type, start, end, exclude_booking=None) -> list[UnitState]:
    units = list(
        EquipmentUnit.objects.filter(equipment_type=equipment_type, status="active")
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    allocs = Allocation.objects.filter(unit__in=units, active=True, start__lt=end, end__gt=start)
    if exclude_booking:
        allocs = allocs.exclude(booking_id=exclude_booking)
    windows = MaintenanceWindow.objects.filter(unit__in=units, start__lt=end, end__gt=start)
    busy = _reference_busy(
        allocs.values_list("unit_id", "start", "end"),
        windows.values_list("unit_id", "start", "end"),
        {},
    )
    return [UnitState(id=pk, busy=tuple(busy.get(pk, ()))) for pk in units]


def reference_node_states(pool, start, end, exclude_booking=None) -> list[NodeState]:
    rows = Device.objects.filter(node__pool=pool, node__status="active", status="active")
    devices_of_node: dict[int, list[int]] = defaultdict(list)
    for node_id, pk in rows.order_by("node_id", "pk").values_list("node_id", "pk"):
        devices_of_node[node_id].append(pk)
    ids = [pk for pks in devices_of_node.values() for pk in pks]
    allocs = Allocation.objects.filter(device__in=ids, active=True, start__lt=end, end__gt=start)
    if exclude_booking:
        allocs = allocs.exclude(booking_id=exclude_booking)
    windows = MaintenanceWindow.objects.filter(node__pool=pool, start__lt=end, end__gt=start)
    busy = _reference_busy(
        allocs.values_list("device_id", "start", "end"),
        windows.values_list("node_id", "start", "end"),
        devices_of_node,
    )
    return [
        NodeState(
            id=node_id,
            devices=tuple(DeviceState(id=pk, busy=tuple(busy.get(pk, ()))) for pk in pks),
        )
        for node_id, pks in devices_of_node.items()
    ]


def test_batch_states_equal_the_one_resource_reads(org, member):
    from booking.models import Booking

    types = [EquipmentTypeFactory(code=f"BS-{i}") for i in range(3)]
    units = [
        EquipmentUnitFactory(equipment_type=t, code=f"{t.code}-{u}")
        for t in types
        for u in range(3)
    ]
    retired = EquipmentUnitFactory(equipment_type=types[0], code="BS-0-retired", status="retired")
    pools = [make_pool(nodes=3, per_node=4, code=f"BS-P{i}") for i in range(2)]
    base = aware(2027, 3, 1, 0)
    booking = Booking.objects.create(
        organization=org,
        user=member,
        equipment_type=types[0],
        start=base,
        end=base + dt.timedelta(hours=1),
        quantity=1,
    )

    def hold(**target):
        for k in range(6):
            start = base + dt.timedelta(hours=5 * k + len(target))
            Allocation.objects.create(
                booking=booking, start=start, end=start + dt.timedelta(hours=3), **target
            )

    for unit in units[::2]:
        hold(unit=unit)
    for node in Node.objects.filter(pool__in=pools):
        for device in Device.objects.filter(node=node)[:2]:
            hold(device=device, node=node)
    # What retired units and devices still hold is no one's business (they are not bookable).
    hold(unit=retired)
    gone = Device.objects.filter(node__pool=pools[0]).order_by("pk").last()
    hold(device=gone, node=gone.node)
    Device.objects.filter(pk=gone.pk).update(status=DeviceStatus.RETIRED)
    MaintenanceWindow.objects.create(
        equipment_type=types[1], start=base, end=base + dt.timedelta(hours=2), reason="t"
    )
    MaintenanceWindow.objects.create(
        unit=units[4],
        start=base + dt.timedelta(hours=1),
        end=base + dt.timedelta(hours=9),
        reason="u",
    )
    MaintenanceWindow.objects.create(
        pool=pools[0],
        start=base + dt.timedelta(hours=20),
        end=base + dt.timedelta(hours=22),
        reason="p",
    )
    node = Node.objects.filter(pool=pools[1]).first()
    MaintenanceWindow.objects.create(
        node=node, start=base + dt.timedelta(hours=3), end=base + dt.timedelta(hours=4), reason="n"
    )
    MaintenanceWindow.objects.create(  # outside every span
        pool=pools[1],
        start=base + dt.timedelta(days=9),
        end=base + dt.timedelta(days=10),
        reason="x",
    )
    spans = {
        t.pk: (base + dt.timedelta(hours=i), base + dt.timedelta(hours=12 + 3 * i))
        for i, t in enumerate(types)
    }
    pool_spans = {
        p.pk: (base + dt.timedelta(hours=2 * i), base + dt.timedelta(hours=24))
        for i, p in enumerate(pools)
    }
    with CaptureQueriesContext(connection) as captured:
        states = batch_states(spans, pool_spans)
    assert len(captured.captured_queries) == 4
    for t in types:
        assert states.units[t.pk] == reference_unit_states(t, *spans[t.pk])
        assert unit_states(t, *spans[t.pk]) == states.units[t.pk]
        assert states.windows[("type", t.pk)] == resource_maintenance(t, *spans[t.pk])
    for p in pools:
        assert states.nodes[p.pk] == reference_node_states(p, *pool_spans[p.pk])
        assert node_states(p, *pool_spans[p.pk]) == states.nodes[p.pk]
        assert states.windows[("pool", p.pk)] == resource_maintenance(p, *pool_spans[p.pk])
    # Leaving one booking's allocations out (a move's alternatives search does).
    for t in types:
        assert unit_states(t, *spans[t.pk], exclude_booking=booking.pk) == reference_unit_states(
            t, *spans[t.pk], exclude_booking=booking.pk
        )
    assert all(
        not u.busy for u in unit_states(types[2], *spans[types[2].pk], exclude_booking=booking.pk)
    )
    for p in pools:
        assert node_states(p, *pool_spans[p.pk], exclude_booking=booking.pk) == (
            reference_node_states(p, *pool_spans[p.pk], exclude_booking=booking.pk)
        )
    assert any(u.busy for u in states.units[types[1].pk])  # the unit window counted
    assert states.windows[("type", types[1].pk)]
