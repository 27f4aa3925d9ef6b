"""Reads of the inventory, shaped for the API and the pages."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from equipment.choices import DeviceStatus, NodeStatus, UnitStatus
from equipment.models import AcceleratorPool, EquipmentType, EquipmentUnit, Node


def equipment_type_list() -> QuerySet[EquipmentType]:
    return EquipmentType.objects.select_related("center").annotate(
        units_count=Count("units", filter=~Q(units__status=UnitStatus.RETIRED), distinct=True)
    )


def pool_list() -> QuerySet[AcceleratorPool]:
    live_nodes = ~Q(nodes__status=NodeStatus.RETIRED)
    live_devices = ~Q(nodes__status=NodeStatus.RETIRED) & ~Q(
        nodes__devices__status=DeviceStatus.RETIRED
    )
    qs = AcceleratorPool.objects.select_related("center").annotate(
        nodes_count=Count("nodes", filter=live_nodes, distinct=True),
        devices_count=Count("nodes__devices", filter=live_devices, distinct=True),
    )
    return qs


def resource_get(code: str) -> EquipmentType | AcceleratorPool | None:
    """The equipment type or pool with this code (codes are unique across both)."""
    found = EquipmentType.objects.select_related("center").filter(code=code).first()
    if found is not None:
        return found
    return AcceleratorPool.objects.select_related("center").filter(code=code).first()


def bookable_units(equipment_type: EquipmentType) -> QuerySet[EquipmentUnit]:
    return equipment_type.units.filter(status=UnitStatus.ACTIVE).order_by("pk")


def bookable_nodes(pool: AcceleratorPool) -> QuerySet[Node]:
    return pool.nodes.filter(status=NodeStatus.ACTIVE).order_by("pk")
