"""Reads of the inventory, shaped for the API and the pages."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from django.db.models import Count, Q, QuerySet

from equipment.choices import DeviceStatus, NodeStatus, UnitStatus
from equipment.models import AcceleratorPool, EquipmentType, EquipmentUnit, Node
from testbed import readcache


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


def pool_node_shapes(pool_ids: Iterable[int]) -> dict[int, list[dict[str, int]]]:
    """Pool id → its node shapes, largest first: [{"devices": 8, "nodes": 99}, {"devices": 4,
    "nodes": 1}], counting what pool_list counts (nodes and devices not retired). One query for
    any number of pools, so a page of pools costs one more query, not one per pool."""
    per_node = (
        Node.objects.filter(pool_id__in=list(pool_ids))
        .exclude(status=NodeStatus.RETIRED)
        .annotate(live=Count("devices", filter=~Q(devices__status=DeviceStatus.RETIRED)))
        .order_by()
        .values_list("pool_id", "live")
    )
    counts: dict[int, Counter[int]] = defaultdict(Counter)
    for pool_id, live in per_node:
        counts[pool_id][live] += 1
    return {
        pool_id: [
            {"devices": devices, "nodes": nodes}
            for devices, nodes in sorted(shapes.items(), reverse=True)
        ]
        for pool_id, shapes in counts.items()
    }


def devices_per_node(shapes: list[dict[str, int]]) -> int:
    """The largest node's device count: the most one single-node booking can take (0: no nodes)."""
    return max((shape["devices"] for shape in shapes), default=0)


def resource_get(code: str) -> EquipmentType | AcceleratorPool | None:
    """The equipment type or pool with this code (codes are unique across both); from the read
    cache when it is on (testbed/readcache.py)."""
    return readcache.get(("resource", code), lambda: _resource_read(code))


def _resource_read(code: str) -> EquipmentType | AcceleratorPool | None:
    found = EquipmentType.objects.select_related("center").filter(code=code).first()
    if found is not None:
        return found
    return AcceleratorPool.objects.select_related("center").filter(code=code).first()


def bookable_units(equipment_type: EquipmentType) -> QuerySet[EquipmentUnit]:
    return equipment_type.units.filter(status=UnitStatus.ACTIVE).order_by("pk")


def bookable_nodes(pool: AcceleratorPool) -> QuerySet[Node]:
    return pool.nodes.filter(status=NodeStatus.ACTIVE).order_by("pk")
