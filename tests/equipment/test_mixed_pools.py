"""Pools whose nodes differ in size (issue 8, section 6): described truthfully, booked by whole nodes.

The national A100 pool has 99 nodes of 8 cards and one of 4 (796 cards): the API must not say
7 per node, and 12 devices (8 + 4, two whole nodes) must be bookable.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from booking.allocator import DeviceState, NodeState, choose_devices
from booking.models import Allocation
from booking.policy import check_quantity, whole_node_counts
from booking.services.allocation import booking_allocate
from booking.services.bookings import booking_request
from equipment.models import Device, Node
from testbed.errors import ServiceError
from tests.factories import aware, make_pool

NOW = aware(2026, 12, 1, 8, 0)
A100_SIZES = [8] * 99 + [4]


@pytest.fixture
def a100(db):
    pool = make_pool(nodes=99, per_node=8, code="NAIDC-A100")
    small = Node.objects.create(pool=pool, hostname="naidc-a100-n100")
    Device.objects.bulk_create([Device(node=small, index=i) for i in range(4)])
    return pool


def test_the_api_describes_a_mixed_pool_truthfully(api, member, a100):
    body = api(member).get(f"/api/v1/pools/{a100.code}").json()
    assert body["nodes_count"] == 100 and body["devices_count"] == 796
    assert body["devices_per_node"] == 8  # the largest node: what one single-node booking can take
    assert body["node_shapes"] == [{"devices": 8, "nodes": 99}, {"devices": 4, "nodes": 1}]
    listed = {p["code"]: p for p in api(member).get("/api/v1/pools").json()["results"]}
    assert listed[a100.code]["node_shapes"] == body["node_shapes"]
    assert listed[a100.code]["devices_per_node"] == 8


def test_a_uniform_pool_has_one_shape(api, member, db):
    pool = make_pool(nodes=2, per_node=8)
    body = api(member).get(f"/api/v1/pools/{pool.code}").json()
    assert body["devices_per_node"] == 8
    assert body["node_shapes"] == [{"devices": 8, "nodes": 2}]


def test_the_policy_accepts_one_node_or_whole_nodes_of_any_size():
    for quantity in (1, 4, 8, 12, 16, 20, 792, 796):
        assert check_quantity(quantity, capacity=796, node_sizes=A100_SIZES) is None, quantity
    refusal = check_quantity(10, capacity=796, node_sizes=A100_SIZES)
    assert refusal is not None and refusal.code == "node_shape" and refusal.field == "quantity"
    assert "8" in refusal.message and "12" in refusal.message
    assert "99 × 8" in refusal.message and "1 × 4" in refusal.message
    refusal = check_quantity(795, capacity=796, node_sizes=A100_SIZES)
    assert refusal is not None and "792" in refusal.message and "796" in refusal.message
    # Uniform pools keep their rule: multiples of the node size beyond one node.
    assert check_quantity(12, capacity=24, node_sizes=[8, 8, 8]) is not None
    assert check_quantity(16, capacity=24, node_sizes=[8, 8, 8]) is None


def test_whole_node_counts_prefer_the_fewest_nodes():
    assert whole_node_counts({8: 99, 4: 1}, 12) == {8: 1, 4: 1}
    assert whole_node_counts({8: 99, 4: 3}, 16) == {8: 2}
    assert whole_node_counts({8: 1, 4: 3}, 16) == {8: 1, 4: 2}
    assert whole_node_counts({8: 99, 4: 1}, 10) is None
    assert whole_node_counts({}, 8) is None


def _node(node_id: int, size: int, first_device: int, busy=()) -> NodeState:
    return NodeState(
        id=node_id,
        devices=tuple(DeviceState(id=first_device + i, busy=tuple(busy)) for i in range(size)),
    )


def test_the_allocator_places_mixed_whole_nodes():
    s, e = aware(2026, 12, 2, 0), aware(2026, 12, 2, 4)
    nodes = [_node(1, 8, 100), _node(2, 8, 200), _node(3, 4, 300)]
    placed = choose_devices(nodes, s, e, 12)
    assert placed is not None and set(placed.node_ids) == {1, 3}
    assert len(placed.device_ids) == 12
    placed = choose_devices(nodes, s, e, 16)
    assert placed is not None and set(placed.node_ids) == {1, 2}
    assert choose_devices(nodes, s, e, 20) is not None
    assert choose_devices(nodes, s, e, 10) is None
    busy_small = [_node(1, 8, 100), _node(2, 8, 200), _node(3, 4, 300, busy=[(s, e)])]
    assert choose_devices(busy_small, s, e, 12) is None
    # A request that fits on one node still goes on one node (best fit: the 4-device node).
    placed = choose_devices(nodes, s, e, 4)
    assert placed is not None and placed.node_ids == (3,)


def test_it_books_twelve_devices_on_the_a100_pool_as_eight_plus_four(a100, org, member):
    with time_machine.travel(NOW, tick=False):
        start, end = aware(2026, 12, 2, 0), aware(2026, 12, 2, 4)
        booking = booking_request(
            actor=member,
            organization=org,
            resource_code=a100.code,
            quantity=12,
            start=start,
            end=end,
        )
        assert booking_allocate(booking_id=booking.pk) == "confirmed"
        sizes = sorted(
            Device.objects.filter(node_id=node_id).count()
            for node_id in set(
                Allocation.objects.filter(booking=booking).values_list("node_id", flat=True)
            )
        )
        assert sizes == [4, 8]
        assert Allocation.objects.filter(booking=booking).count() == 12
        with pytest.raises(ServiceError) as exc:
            booking_request(
                actor=member,
                organization=org,
                resource_code=a100.code,
                quantity=10,
                start=start,
                end=end + dt.timedelta(hours=1),
            )
        assert exc.value.code == "node_shape" and exc.value.field == "quantity"
        assert "12" in exc.value.message
