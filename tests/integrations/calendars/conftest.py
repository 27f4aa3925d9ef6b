"""A small world for calendar feeds: a centre with a room, an equipment type, a GPU pool, and
bookings of acme (manager, member) and globex (outsider) around a fixed "now"."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
import time_machine

from booking.models import Allocation, Booking
from equipment.models import AcceleratorPool, Device, EquipmentType, EquipmentUnit
from tests.factories import (
    CenterFactory,
    EquipmentTypeFactory,
    EquipmentUnitFactory,
    aware,
    make_pool,
)

NOW = aware(2026, 6, 1, 9)


@pytest.fixture
def frozen():
    """Time stands still at NOW (Asia/Seoul) for the whole test."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@dataclass
class Catalogue:
    etype: EquipmentType
    unit: EquipmentUnit
    pool: AcceleratorPool


@pytest.fixture
def catalogue(db) -> Catalogue:
    centre = CenterFactory(
        code="gj-health", name="광주 헬스케어 실증센터", name_en="Gwangju Healthcare Centre"
    )
    etype = EquipmentTypeFactory(
        code="HC-PSG", name="수면다원검사기", name_en="Polysomnography system", center=centre
    )
    unit = EquipmentUnitFactory(equipment_type=etype, code="HC-PSG-01", location="3층 301호")
    compute = CenterFactory(
        code="nadc", name="국가AI데이터센터", name_en="National AI Data Centre", field="compute"
    )
    pool = make_pool(nodes=2, per_node=8, code="H100", center=compute, name="H100 GPU")
    pool.name_en = "H100 GPUs"
    pool.save(update_fields=["name_en"])
    return Catalogue(etype=etype, unit=unit, pool=pool)


def book(
    *,
    organization,
    user,
    resource,
    start: dt.datetime,
    hours: int = 2,
    status: str = "confirmed",
    quantity: int = 1,
    purpose: str = "",
    devices: list[Device] | None = None,
    unit: EquipmentUnit | None = None,
) -> Booking:
    """A booking as the allocation worker would leave it (allocation rows for holding states)."""
    is_pool = isinstance(resource, AcceleratorPool)
    booking = Booking.objects.create(
        organization=organization,
        user=user,
        equipment_type=None if is_pool else resource,
        pool=resource if is_pool else None,
        quantity=quantity,
        start=start,
        end=start + dt.timedelta(hours=hours),
        status=status,
        purpose=purpose,
    )
    if status in ("awaiting_approval", "confirmed", "active", "completed", "cancelled"):
        active = status != "cancelled"
        if is_pool:
            for device in devices or []:
                Allocation.objects.create(
                    booking=booking,
                    device=device,
                    node=device.node,
                    start=booking.start,
                    end=booking.end,
                    active=active,
                )
        elif unit is not None:
            Allocation.objects.create(
                booking=booking, unit=unit, start=booking.start, end=booking.end, active=active
            )
    return booking
