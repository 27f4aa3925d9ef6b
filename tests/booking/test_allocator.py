"""The allocator, checked against brute force on small random pools (hypothesis).

Times live on an integer-hour grid starting Friday 2025-03-07 00:00 UTC (09:00 in Seoul),
so that weekends and Seoul opening hours come into play.
"""

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from booking.allocator import (
    DeviceState,
    NodeState,
    Placement,
    UnitState,
    candidate_starts,
    choose_devices,
    choose_units,
    find_alternatives,
    free_count,
    overlaps,
)
from booking.policy import Policy, align_up, is_open, next_boundary

BASE = datetime(2025, 3, 7, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
FAST = settings(max_examples=200, deadline=None)


def at(hours: float) -> datetime:
    return BASE + hours * HOUR


# --- strategies ---------------------------------------------------------------------------

intervals = st.lists(
    st.tuples(st.integers(0, 30), st.integers(1, 6)).map(lambda t: (at(t[0]), at(t[0] + t[1]))),
    max_size=4,
)
# Possibly overlapping, as buffered intervals can be; sorted by start as the interface says.
busy_lists = intervals.map(lambda ivs: sorted(ivs))
requests = st.tuples(st.integers(0, 28), st.integers(1, 6), st.integers(1, 9))


@st.composite
def pools(draw):
    """{node_id: {device_id: [busy...]}} with 1–4 nodes of 1–4 devices."""
    layout = {}
    device_id = 100
    node_ids = draw(st.lists(st.integers(1, 50), min_size=1, max_size=4, unique=True))
    for node_id in node_ids:
        devices = {}
        for _ in range(draw(st.integers(1, 4))):
            devices[device_id] = draw(busy_lists)
            device_id += 1
        layout[node_id] = devices
    return layout


def node_states(layout) -> list[NodeState]:
    return [
        NodeState(
            id=node_id,
            devices=tuple(
                DeviceState(id=dev, busy=tuple(sorted(busy))) for dev, busy in devices.items()
            ),
        )
        for node_id, devices in layout.items()
    ]


def free_on(busy, start, end) -> bool:
    return not any(overlaps(start, end, s, e) for s, e in busy)


# --- basics -------------------------------------------------------------------------------


def test_it_treats_intervals_as_half_open():
    assert not overlaps(at(1), at(2), at(2), at(3))
    assert overlaps(at(1), at(3), at(2), at(4))
    assert overlaps(at(1), at(4), at(2), at(3))


def test_it_prefers_the_unit_whose_free_gap_fits_tightest():
    units = [
        UnitState(1, ()),  # free forever
        UnitState(2, ((at(0), at(2)), (at(5), at(6)))),  # gap 2–5: a 3-hour hole
        UnitState(3, ((at(0), at(2)),)),  # free from 2 on
    ]
    assert choose_units(units, at(2), at(4), 1) == [2]
    assert choose_units(units, at(2), at(4), 2) == [2, 3]
    assert choose_units(units, at(2), at(4), 3) == [2, 3, 1]
    assert choose_units(units, at(1), at(3), 1) == [1]
    assert choose_units(units, at(1), at(3), 2) is None


def test_it_sees_a_long_interval_hidden_behind_a_later_short_one():
    # Sorted by start, the last interval starting before the window ends early, but the
    # first one still covers the window.
    unit = UnitState(7, ((at(0), at(10)), (at(1), at(2))))
    assert choose_units([unit], at(3), at(4), 1) is None
    assert free_count([unit], at(3), at(4)) == 0


def test_it_books_only_the_pinned_unit():
    units = [UnitState(1, ()), UnitState(2, ((at(0), at(3)),))]
    assert choose_units(units, at(3), at(4), 1, pinned=1) == [1]
    assert choose_units(units, at(1), at(2), 1, pinned=2) is None
    assert choose_units(units, at(1), at(2), 1, pinned=99) is None
    with pytest.raises(ValueError):
        choose_units(units, at(1), at(2), 2, pinned=1)


def test_it_refuses_bad_requests():
    with pytest.raises(ValueError):
        choose_units([UnitState(1, ())], at(2), at(1), 1)
    with pytest.raises(ValueError):
        choose_devices([], at(1), at(2), 0)
    with pytest.raises(ValueError):
        choose_units([UnitState(1, ())], datetime(2025, 3, 7), datetime(2025, 3, 8), 1)  # noqa: DTZ001


def test_it_picks_the_fullest_node_that_fits():
    nodes = [
        NodeState(1, tuple(DeviceState(i, ()) for i in (10, 11, 12, 13))),
        NodeState(
            2, (DeviceState(20, ((at(0), at(9)),)), DeviceState(21, ()), DeviceState(22, ()))
        ),
    ]
    assert choose_devices(nodes, at(1), at(2), 2) == Placement((2,), (21, 22))
    assert choose_devices(nodes, at(1), at(2), 3) == Placement((1,), (10, 11, 12))
    assert choose_devices(nodes, at(1), at(2), 5) is None  # 5 > size 4, not a multiple
    assert choose_devices(nodes, at(1), at(2), 8) is None  # node 2 is not a full-size node
    assert free_count(nodes, at(1), at(2)) == 6


def test_it_takes_whole_nodes_for_large_requests():
    nodes = [NodeState(n, tuple(DeviceState(n * 10 + i, ()) for i in range(2))) for n in (3, 1, 2)]
    assert choose_devices(nodes, at(1), at(2), 4) == Placement((1, 2), (10, 11, 20, 21))
    assert choose_devices([], at(1), at(2), 1) is None


# --- properties: units --------------------------------------------------------------------


def brute_score(busy, start, end):
    ends = [e for _, e in busy if e <= start]
    starts = [s for s, _ in busy if s >= end]
    far = timedelta(days=365 * 100)
    return (start - max(ends) if ends else far) + (min(starts) - end if starts else far)


@FAST
@given(
    busy=st.lists(busy_lists, min_size=1, max_size=5),
    reqs=st.lists(st.tuples(requests, st.booleans()), min_size=1, max_size=8),
)
def test_it_never_double_books_units_and_picks_the_best_fit(busy, reqs):
    unit_busy = {uid: list(ivs) for uid, ivs in enumerate(busy, start=1)}
    booked = {uid: [] for uid in unit_busy}
    for (first, length, quantity), pin in reqs:
        start, end = at(first), at(first + length)
        quantity = min(quantity, 3)
        pinned = 1 if pin else None
        if pinned is not None:
            quantity = 1
        units = [UnitState(uid, tuple(sorted(ivs))) for uid, ivs in unit_busy.items()]
        chosen = choose_units(units, start, end, quantity, pinned=pinned)

        free = [uid for uid, ivs in unit_busy.items() if free_on(ivs, start, end)]
        if pinned is not None:
            free = [uid for uid in free if uid == pinned]
        assert free_count(units, start, end) == len(
            [u for u in unit_busy if free_on(unit_busy[u], start, end)]
        )
        if len(free) < quantity:
            assert chosen is None
            continue
        assert chosen is not None
        assert len(chosen) == quantity == len(set(chosen))
        ranked = sorted((brute_score(unit_busy[u], start, end), u) for u in free)
        assert chosen == [u for _, u in ranked[:quantity]]
        for uid in chosen:
            assert free_on(unit_busy[uid], start, end)
            unit_busy[uid].append((start, end))
            booked[uid].append((start, end))

    for windows in booked.values():
        for i, a in enumerate(windows):
            for b in windows[i + 1 :]:
                assert not overlaps(*a, *b)


# --- properties: devices ------------------------------------------------------------------


@FAST
@given(layout=pools(), reqs=st.lists(requests, min_size=1, max_size=8))
def test_it_never_double_books_devices_and_places_best_fit(layout, reqs):
    device_busy = {dev: list(ivs) for devices in layout.values() for dev, ivs in devices.items()}
    booked = {dev: [] for dev in device_busy}
    size = max(len(devices) for devices in layout.values())
    for first, length, quantity in reqs:
        start, end = at(first), at(first + length)
        nodes = node_states({n: {d: device_busy[d] for d in devs} for n, devs in layout.items()})
        placement = choose_devices(nodes, start, end, quantity)

        free = {
            n: sorted(d for d in devs if free_on(device_busy[d], start, end))
            for n, devs in layout.items()
        }
        assert free_count(nodes, start, end) == sum(len(f) for f in free.values())
        if quantity <= size:
            feasible = {n: f for n, f in free.items() if len(f) >= quantity}
            if not feasible:
                assert placement is None
                continue
            assert placement is not None
            assert len(placement.node_ids) == 1
            node = placement.node_ids[0]
            assert node in feasible
            fewest = min(len(f) for f in feasible.values())
            assert len(free[node]) == fewest
            assert node == min(n for n, f in feasible.items() if len(f) == fewest)
            assert placement.device_ids == tuple(free[node][:quantity])
        else:
            # Whole free nodes of any sizes adding up to exactly `quantity`, as few as possible.
            whole = {
                n: len(devs) for n, devs in layout.items() if devs and len(free[n]) == len(devs)
            }
            fewest = {0: 0}  # devices → fewest whole nodes that have exactly that many
            for n_size in whole.values():
                for total, used in sorted(fewest.items(), reverse=True):
                    if total + n_size <= quantity:
                        fewest[total + n_size] = min(fewest.get(total + n_size, used + 1), used + 1)
            if quantity not in fewest:
                assert placement is None
                continue
            assert placement is not None
            assert set(placement.node_ids) <= set(whole)
            assert sum(whole[n] for n in placement.node_ids) == quantity
            assert len(placement.node_ids) == fewest[quantity]
            assert placement.device_ids == tuple(
                sorted(d for n in placement.node_ids for d in layout[n])
            )
        assert len(placement.device_ids) == quantity == len(set(placement.device_ids))
        assert list(placement.device_ids) == sorted(placement.device_ids)
        for dev in placement.device_ids:
            assert any(dev in layout[n] for n in placement.node_ids)
            assert free_on(device_busy[dev], start, end)
            device_busy[dev].append((start, end))
            booked[dev].append((start, end))

    for windows in booked.values():
        for i, a in enumerate(windows):
            for b in windows[i + 1 :]:
                assert not overlaps(*a, *b)


# --- alternatives -------------------------------------------------------------------------

policies = st.builds(
    lambda slot, hours, weekdays, buffer: Policy(
        slot_minutes=slot,
        min_minutes=slot,
        max_minutes=24 * 60,
        opens_at=hours[0],
        closes_at=hours[1],
        open_weekdays=frozenset(weekdays),
        buffer_minutes=buffer,
    ),
    slot=st.sampled_from([30, 60, 90, 1440]),
    hours=st.sampled_from(
        [(None, None), (time(9), time(18)), (time(8, 30), time(20)), (time(22), time(6))]
    ),
    weekdays=st.sets(st.integers(0, 6), min_size=1),
    buffer=st.sampled_from([0, 0, 30]),
)


@FAST
@given(
    policy=policies,
    busy=st.lists(busy_lists, min_size=1, max_size=3),
    start_minutes=st.integers(0, 30 * 6).map(lambda n: n * 10),
    length_slots=st.integers(1, 4),
    quantity=st.integers(1, 3),
    limit=st.integers(1, 5),
)
def test_it_suggests_the_earliest_feasible_alternatives(
    policy, busy, start_minutes, length_slots, quantity, limit
):
    if policy.slot_minutes == 1440:
        length_slots = 1
    duration = timedelta(minutes=policy.slot_minutes * length_slots)
    start = BASE + timedelta(minutes=start_minutes)
    until = BASE + timedelta(days=4)
    units = [UnitState(uid, tuple(ivs)) for uid, ivs in enumerate(busy, start=1)]
    buffer = policy.buffer

    def fits(s, e):  # like the service: the buffer widens the request against raw busy
        return choose_units(units, s - buffer, e + buffer, quantity) is not None

    busy_ends = [e for ivs in busy for _, e in ivs]
    found = find_alternatives(
        fits, policy, start=start, duration=duration, until=until, busy_ends=busy_ends, limit=limit
    )

    assert len(found) <= limit
    starts = [s for s, _ in found]
    assert starts == sorted(set(starts))
    for s, e in found:
        assert start <= s <= until
        assert e - s == duration
        assert is_open(policy, s, e)
        assert fits(s, e)

    # Brute force over every aligned slot: the first feasible start of each feasible run
    # must be suggested, none skipped, up to the limit.
    grid, moment = [], align_up(policy, start)
    while moment <= until:
        grid.append(moment)
        moment = next_boundary(policy, moment)
    feasible = [is_open(policy, s, s + duration) and fits(s, s + duration) for s in grid]
    run_starts = [s for i, s in enumerate(grid) if feasible[i] and (i == 0 or not feasible[i - 1])]
    assert set(starts) <= {s for s, ok in zip(grid, feasible, strict=True) if ok}
    if run_starts:
        assert starts[0] == run_starts[0]
    if len(found) < limit:
        assert set(run_starts) <= set(starts)
    else:
        assert {s for s in run_starts if s <= starts[-1]} <= set(starts)
    assert set(candidate_starts(policy, after=start, until=until, busy_ends=busy_ends)) >= set(
        run_starts
    )


def test_it_finds_the_next_opening_after_a_busy_afternoon():
    lab = Policy(
        slot_minutes=60,
        min_minutes=60,
        max_minutes=480,
        opens_at=time(9),
        closes_at=time(18),
        open_weekdays=frozenset(range(5)),
    )
    # Friday 09:00–17:00 KST (00:00–08:00 UTC) busy on the only unit.
    units = [UnitState(1, ((at(0), at(8)),))]

    def fits(s, e):
        return choose_units(units, s, e, 1) is not None

    found = find_alternatives(
        fits,
        lab,
        start=at(1),
        duration=2 * HOUR,
        until=at(24 * 5),
        busy_ends=[at(8)],
        limit=2,
    )
    # 17:00–19:00 would pass closing time and the weekend is closed: Monday 09:00 KST, then
    # the nearest next choice, Monday 10:00 (one slot later).
    monday = datetime(2025, 3, 10, 0, tzinfo=UTC)
    assert found == [(monday, monday + 2 * HOUR), (monday + HOUR, monday + 3 * HOUR)]
