"""A batch's resources read in four statements give exactly what reading each alone gives."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from booking.models import Allocation
from booking.services.resources import (
    batch_states,
    node_states,
    resource_maintenance,
    unit_states,
)
from equipment.choices import DeviceStatus
from equipment.models import Device, MaintenanceWindow, Node
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware, make_pool

pytestmark = pytest.mark.django_db


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
        assert states.units[t.pk] == unit_states(t, *spans[t.pk])
        assert states.windows[("type", t.pk)] == resource_maintenance(t, *spans[t.pk])
    for p in pools:
        assert states.nodes[p.pk] == node_states(p, *pool_spans[p.pk])
        assert states.windows[("pool", p.pk)] == resource_maintenance(p, *pool_spans[p.pk])
    assert any(u.busy for u in states.units[types[1].pk])  # the unit window counted
    assert states.windows[("type", types[1].pk)]
