"""Availability searches the whole asked window and agrees with the allocator, exactly.

The cells paths (booking/occupancy.py: the stored occupancy, or bitmaps PostgreSQL computes from
the allocation rows when the resource's cells are not whole stored cells) are compared with the
allocator tried at every slot start (`by_allocator`) on random small pools and equipment types,
with maintenance, buffers, operating hours, closed weekdays and check-outs off the slot grid; the
pure cell helpers are compared with brute force; and the API finds a window on day 29 of 30 and
at the very end.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from booking.availability import slot_start_minutes, slot_starts
from booking.cells import (
    Grid,
    at_least,
    count_steps,
    grid_for,
    prefix_xor,
    spread_earlier,
    whole_nodes_free,
    windows_free,
)
from booking.models import Allocation, Booking
from booking.occupancy import availability, by_allocator, stored_grid
from booking.policy import (
    Policy,
    add_elapsed,
    align_up,
    is_open,
    next_boundary,
    whole_node_counts,
)
from booking.services.resources import policy_for
from equipment.models import Device, EquipmentUnit, MaintenanceWindow, Node
from tests.factories import (
    CenterFactory,
    EquipmentTypeFactory,
    OrganizationFactory,
    PoolFactory,
    UserFactory,
    make_pool,
)

SEOUL = zoneinfo.ZoneInfo("Asia/Seoul")
BASE = dt.datetime(2031, 5, 5, tzinfo=SEOUL)  # a Monday
MINUTE = dt.timedelta(minutes=1)
PURE = settings(max_examples=150, deadline=None)
WITH_DB = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- pure helpers against brute force ----------------------------------------------------------


def bit(bits: int, k: int) -> bool:
    return bool(bits >> k & 1)


bitmaps = st.lists(st.integers(0, (1 << 40) - 1), max_size=7)


@PURE
@given(bits=st.integers(0, (1 << 40) - 1), length=st.integers(0, 45), spread=st.integers(0, 9))
def test_window_and_spread_bits_match_cell_by_cell(bits, length, spread):
    free = windows_free(bits, 40, length)
    for k in range(40):
        expected = 1 <= length and k + length <= 40
        expected = expected and not any(bit(bits, j) for j in range(k, k + length))
        assert bit(free, k) == expected
    spreaded = spread_earlier(bits, spread)
    for k in range(40):
        assert bit(spreaded, k) == any(bit(bits, j) for j in range(k, k + spread + 1))


@PURE
@given(maps=bitmaps, quantity=st.integers(0, 8))
def test_counts_and_thresholds_match_cell_by_cell(maps, quantity):
    full = (1 << 40) - 1
    counts = [sum(bit(b, k) for b in maps) for k in range(40)]
    reached = at_least(maps, quantity, full)
    assert [bit(reached, k) for k in range(40)] == [c >= quantity for c in counts]
    steps = count_steps(maps, 40)
    expanded = []
    for i, (k, count) in enumerate(steps):
        stop = steps[i + 1][0] if i + 1 < len(steps) else 40
        expanded += [count] * (stop - k)
    assert expanded == counts
    assert all(a[1] != b[1] for a, b in zip(steps, steps[1:], strict=False))


@PURE
@given(runs=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 6)), max_size=6))
def test_prefix_xor_turns_toggles_into_back_to_back_runs(runs):
    toggles, busy, cursor = 0, 0, 0
    for gap, length in runs:  # disjoint runs, maybe touching (gap 0)
        start, stop = cursor + gap, cursor + gap + length
        toggles ^= (1 << start) ^ (1 << stop)
        busy |= ((1 << length) - 1) << start
        cursor = stop
    assert prefix_xor(toggles, 70) == busy


@PURE
@given(
    nodes=st.lists(st.tuples(st.sampled_from([2, 4, 8]), st.integers(0, 7)), max_size=6),
    quantity=st.integers(1, 40),
)
def test_whole_nodes_agree_with_the_allocators_rule(nodes, quantity):
    full = 7
    found = whole_nodes_free(nodes, quantity, full)
    for k in range(3):
        shapes: dict[int, int] = {}
        for size, bits in nodes:
            if bit(bits, k):
                shapes[size] = shapes.get(size, 0) + 1
        assert bit(found, k) == (whole_node_counts(shapes, quantity) is not None)


policies = st.builds(
    lambda slot, hours, weekdays, zone: Policy(
        slot_minutes=slot,
        min_minutes=slot,
        max_minutes=24 * 60,
        opens_at=hours[0],
        closes_at=hours[1],
        open_weekdays=frozenset(weekdays),
        tz=zoneinfo.ZoneInfo(zone),
    ),
    slot=st.sampled_from([15, 30, 60, 90, 420, 1440]),
    hours=st.sampled_from(
        [
            (None, None),
            (dt.time(9), dt.time(18)),
            (dt.time(8, 15), dt.time(20)),
            (dt.time(22), dt.time(6)),
        ]
    ),
    weekdays=st.sets(st.integers(0, 6), min_size=1),
    zone=st.sampled_from(["Asia/Seoul", "America/New_York", "Asia/Kolkata"]),
)


@PURE
@given(
    policy=policies,
    start_minutes=st.integers(0, 60 * 24 * 9),
    span_hours=st.integers(0, 24 * 5),
    length=st.integers(1, 5),
    odd=st.booleans(),
)
def test_slot_starts_walk_every_slot_of_the_window(policy, start_minutes, span_hours, length, odd):
    # Around New York's DST change (2031-03-09) and across Seoul's and Kolkata's fixed offsets.
    start = dt.datetime(2031, 3, 5, tzinfo=dt.UTC) + start_minutes * MINUTE
    end = start + dt.timedelta(hours=span_hours)
    duration = dt.timedelta(minutes=policy.slot_minutes * length + (7 if odd else 0))
    expected = []
    moment = align_up(policy, start)
    while add_elapsed(moment, duration) <= end:  # elapsed time, as bookings are measured
        if is_open(policy, moment, add_elapsed(moment, duration)):
            expected.append(moment)
        moment = next_boundary(policy, moment)
    assert slot_starts(policy, start, end, duration) == expected


def test_slot_starts_reach_the_last_day_of_a_month():
    policy = Policy(slot_minutes=15, min_minutes=15, max_minutes=600)
    found = slot_starts(policy, BASE, BASE + dt.timedelta(days=31), dt.timedelta(hours=1))
    assert len(found) == 31 * 96 - 3
    assert found[-1] == BASE + dt.timedelta(days=31, hours=-1)
    minutes, _offset = slot_start_minutes(policy, BASE, BASE + dt.timedelta(days=31), 15 * MINUTE)
    assert len(minutes) == 31 * 96


def test_the_grid_is_refused_across_a_dst_change():
    policy = Policy(
        slot_minutes=30, min_minutes=30, max_minutes=600, tz=zoneinfo.ZoneInfo("America/New_York")
    )
    march = dt.datetime(2031, 3, 1, tzinfo=policy.tz)
    assert grid_for(policy, march, march + dt.timedelta(days=20)) is None
    assert (
        grid_for(policy, march + dt.timedelta(days=20), march + dt.timedelta(days=40)) is not None
    )
    grid = grid_for(
        Policy(slot_minutes=90, min_minutes=90, max_minutes=600, buffer_minutes=20),
        BASE + 7 * MINUTE,
        BASE + dt.timedelta(days=1),
    )
    assert (
        isinstance(grid, Grid)
        and grid.cell == 10 * MINUTE
        and grid.origin == BASE.astimezone(dt.UTC)
    )


# --- the cells path against the allocator at every slot start (PostgreSQL) ----------------------


def _hold(resource, target_field: str, target, start: dt.datetime, end: dt.datetime, booking):
    extra = {"node": target.node} if target_field == "device" else {}
    Allocation.objects.create(
        booking=booking, start=start, end=end, **{target_field: target}, **extra
    )


intervals = st.lists(
    st.tuples(
        st.integers(0, 3),  # target
        st.integers(0, 60 * 24 * 4),  # start, minutes after the base
        st.integers(1, 60 * 10),  # length in minutes
        st.sampled_from([0, 0, 0, 37]),  # seconds: an early check-out is off the grid
    ),
    max_size=14,
)


@pytest.mark.postgres
@pytest.mark.django_db
@WITH_DB
@given(
    kind=st.sampled_from(["pool", "equipment"]),
    slot=st.sampled_from([15, 30, 60, 90]),
    hours=st.sampled_from([(None, None), (dt.time(9), dt.time(18)), (dt.time(8, 15), dt.time(20))]),
    weekdays=st.sampled_from([frozenset(range(7)), frozenset(range(5)), frozenset({0, 2, 3})]),
    buffer=st.sampled_from([0, 10, 30, 7]),  # 7: cells of 1 minute, not the stored 5
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    held=intervals,
    maintenance=st.lists(
        st.tuples(
            st.booleans(), st.integers(0, 3), st.integers(0, 60 * 24 * 4), st.integers(1, 600)
        ),
        max_size=3,
    ),
    window=st.tuples(st.integers(0, 60 * 24 * 3), st.sampled_from([30, 72, 12, 96, 5, 1])),
    quantity=st.sampled_from([1, 1, 2, 2, 3, 4, 6]),
    slots=st.integers(1, 4),
    odd_duration=st.sampled_from([False, False, False, True]),
)
def test_the_cells_path_equals_the_allocator_at_every_slot(
    kind,
    slot,
    hours,
    weekdays,
    buffer,
    sizes,
    held,
    maintenance,
    window,
    quantity,
    slots,
    odd_duration,
):
    assert connection.vendor == "postgresql"
    with transaction.atomic():
        org, user = OrganizationFactory(), UserFactory()
        center = CenterFactory(field="compute")
        common = dict(
            center=center,
            slot_minutes=slot,
            min_minutes=slot,
            max_minutes=24 * 60,
            opens_at=hours[0],
            closes_at=hours[1],
            open_weekdays="".join(str(d) for d in sorted(weekdays)),
        )
        if kind == "pool":
            resource = PoolFactory(**common)
            nodes = [
                Node.objects.create(pool=resource, hostname=f"{resource.code}-{i}")
                for i in range(len(sizes))
            ]
            targets = [
                Device.objects.create(node=n, index=i)
                for n, size in zip(nodes, sizes, strict=True)
                for i in range(size)
            ]
            field, owners = "device", nodes
            booking = Booking.objects.create(
                organization=org,
                user=user,
                pool=resource,
                start=BASE,
                end=BASE + MINUTE,
                status="confirmed",
            )
        else:
            resource = EquipmentTypeFactory(buffer_minutes=buffer, **common)
            targets = [
                EquipmentUnit.objects.create(equipment_type=resource, code=f"{resource.code}-{i}")
                for i in range(sum(sizes))
            ]
            field, owners = "unit", targets
            booking = Booking.objects.create(
                organization=org,
                user=user,
                equipment_type=resource,
                start=BASE,
                end=BASE + MINUTE,
                status="confirmed",
            )
        taken: dict[int, list[tuple[dt.datetime, dt.datetime]]] = {}
        for which, offset, length, seconds in held:
            target = targets[which % len(targets)]
            start = BASE + offset * MINUTE
            end = start + length * MINUTE + dt.timedelta(seconds=seconds)
            if any(s < end and start < e for s, e in taken.get(target.pk, [])):
                continue  # one unit or device is never held twice at once
            taken.setdefault(target.pk, []).append((start, end))
            _hold(resource, field, target, start, end, booking)
        for whole, which, offset, length in maintenance:
            start = BASE + offset * MINUTE
            target = (
                {"pool" if kind == "pool" else "equipment_type": resource}
                if whole
                else {"node" if kind == "pool" else "unit": owners[which % len(owners)]}
            )
            MaintenanceWindow.objects.create(
                start=start, end=start + length * MINUTE, reason="점검", **target
            )
        start = BASE + window[0] * MINUTE
        end = start + dt.timedelta(hours=window[1])
        duration = slot * slots * MINUTE + (5 * MINUTE if odd_duration else dt.timedelta(0))
        args = dict(resource=resource, start=start, end=end, quantity=quantity, duration=duration)
        grid = grid_for(policy_for(resource), start, end)
        assert grid is not None  # a cells path ran
        event("stored cells" if stored_grid(grid) is not None else "cells computed from the rows")
        answer = availability(**args)
        assert answer == by_allocator(**args)
        event(f"windows that fit: {'some' if answer['fits'] else 'none'}")
        event(f"steps in the timeline: {'several' if len(answer['timeline']) > 2 else 'few'}")
        transaction.set_rollback(True)


def _busy_all_month(pool, start: dt.datetime, days: int, *, except_for=()):
    """Every device of the pool held in day-long bookings, but for `except_for` (device, from, to)."""
    org, user = OrganizationFactory(), UserFactory()
    booking = Booking.objects.create(
        organization=org, user=user, pool=pool, start=start, end=start + MINUTE, status="confirmed"
    )
    holes = {}
    for device, hole_start, hole_end in except_for:
        holes[device.pk] = (hole_start, hole_end)
    rows = []
    for device in Device.objects.filter(node__pool=pool).select_related("node"):
        for day in range(days):
            s, e = start + dt.timedelta(days=day), start + dt.timedelta(days=day + 1)
            hole = holes.get(device.pk)
            pieces = (
                [(s, e)]
                if hole is None or not (hole[0] < e and s < hole[1])
                else [p for p in ((s, hole[0]), (hole[1], e)) if p[0] < p[1]]
            )
            rows += [
                Allocation(booking=booking, device=device, node=device.node, start=a, end=b)
                for a, b in pieces
            ]
    Allocation.objects.bulk_create(rows)


def _ask(api, member, pool, start, end, quantity, minutes):
    response = api(member).get(
        "/api/v1/availability",
        {
            "resource": pool.code,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "quantity": quantity,
            "duration_minutes": minutes,
        },
    )
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
def test_a_window_on_day_29_of_30_is_found(api, member):
    pool = make_pool(nodes=2, per_node=4, slot_minutes=15, min_minutes=15)
    devices = list(Device.objects.filter(node__pool=pool).order_by("node_id", "index"))
    hole_start = BASE + dt.timedelta(days=28, hours=13)
    hole_end = hole_start + dt.timedelta(hours=3)
    _busy_all_month(pool, BASE, 30, except_for=[(d, hole_start, hole_end) for d in devices[5:7]])
    data = _ask(api, member, pool, BASE, BASE + dt.timedelta(days=30), 2, 120)
    starts = [dt.datetime.fromisoformat(f["start"]) for f in data["fits"]]
    assert starts == [hole_start + k * 15 * MINUTE for k in range(5)]  # 13:00 … 14:00 on day 29
    assert (
        data["fits_total"] == 5
        and data["fits_truncated"] is False
        and data["fits_next_start"] is None
    )
    assert {"start": hole_start.isoformat(), "end": hole_end.isoformat(), "free": 2} in data[
        "timeline"
    ]
    # Three of one node are never free together; two on different nodes do not count.
    assert _ask(api, member, pool, BASE, BASE + dt.timedelta(days=30), 3, 120)["fits"] == []


@pytest.mark.django_db
def test_a_busy_pool_fits_only_in_its_last_hour(api, member):
    pool = make_pool(nodes=2, per_node=8, slot_minutes=15, min_minutes=15)
    end = BASE + dt.timedelta(days=31)
    _busy_all_month(pool, BASE - dt.timedelta(hours=1), 31)  # every device busy until end - 1 h
    data = _ask(api, member, pool, BASE, end, 16, 60)
    assert data["fits"] == [
        {"start": (end - dt.timedelta(hours=1)).isoformat(), "end": end.isoformat()}
    ]
    assert data["timeline"][-1] == {
        "start": (end - dt.timedelta(hours=1)).isoformat(),
        "end": end.isoformat(),
        "free": 16,
    }


@pytest.mark.django_db
def test_a_long_answer_is_cut_with_where_to_go_on(api, member):
    pool = make_pool(nodes=1, per_node=2, slot_minutes=15, min_minutes=15)
    end = BASE + dt.timedelta(days=31)
    data = _ask(api, member, pool, BASE, end, 1, 15)
    assert data["fits_total"] == 31 * 96 and data["fits_truncated"] is True
    assert len(data["fits"]) == 1000
    assert data["fits_next_start"] == (BASE + 1000 * 15 * MINUTE).isoformat()
    rest = _ask(api, member, pool, dt.datetime.fromisoformat(data["fits_next_start"]), end, 1, 15)
    assert (
        rest["fits"][0]["start"] == data["fits_next_start"] and rest["fits_total"] == 31 * 96 - 1000
    )


@pytest.mark.django_db
def test_what_availability_says_fits_the_allocator_places(api, member):
    from booking.allocator import choose_devices
    from booking.services.resources import node_states

    pool = make_pool(nodes=2, per_node=4, slot_minutes=15, min_minutes=15)
    devices = list(Device.objects.filter(node__pool=pool).order_by("node_id", "index"))
    hole_start = BASE + dt.timedelta(days=20, hours=2)
    _busy_all_month(
        pool,
        BASE,
        30,
        except_for=[(d, hole_start, hole_start + dt.timedelta(hours=2)) for d in devices[:3]],
    )
    data = _ask(api, member, pool, BASE, BASE + dt.timedelta(days=30), 3, 60)
    fits = {dt.datetime.fromisoformat(f["start"]) for f in data["fits"]}
    nodes = node_states(pool, BASE, BASE + dt.timedelta(days=30))
    moment = BASE
    while moment < BASE + dt.timedelta(days=30) - dt.timedelta(hours=1):
        placed = choose_devices(nodes, moment, moment + dt.timedelta(hours=1), 3)
        assert (placed is not None) == (moment in fits), moment
        moment += 15 * MINUTE
    assert len(fits) == 5


def test_the_alternatives_search_is_not_cut_short_either():
    """find_alternatives (a rejection's nearest windows) tries every candidate start up to its
    horizon: a window that frees up only on day 13 of 14, among 1,300 busy ends, is found."""
    from booking.allocator import find_alternatives

    policy = Policy(slot_minutes=15, min_minutes=15, max_minutes=600)
    target = BASE + dt.timedelta(days=13, hours=5)
    ends = [BASE + k * 15 * MINUTE for k in range(14 * 96)]
    found = find_alternatives(
        lambda s, e: s >= target,
        policy,
        start=BASE,
        duration=dt.timedelta(hours=1),
        until=BASE + dt.timedelta(days=14),
        busy_ends=ends,
        limit=2,
    )
    assert found == [
        (target, target + dt.timedelta(hours=1)),
        (target + 15 * MINUTE, target + dt.timedelta(hours=1, minutes=15)),
    ]
