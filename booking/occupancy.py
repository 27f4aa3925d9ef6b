"""What `GET /api/v1/availability` answers: the free-count timeline and every window that fits.

Two paths to one answer (tests/booking/test_availability_window.py checks they agree):

- On PostgreSQL, **cells**: one query has the database turn the window's allocation rows into one
  bit string per unit or device — "busy at some moment of cell k" for the cells of
  booking.availability.Grid (gcd(slot, 24 h, buffer) minutes from local midnight) — by XOR-ing
  two toggle bits per row (`_CELLS_SQL`), and hands back as they are only the rows that do not
  start and end on cell bounds (early check-outs), which are swept exactly. Python never sees the
  other rows: fitting is a few dozen big-int operations per device (free over [k, k+d) for every
  k at once; at least N free devices of one node; whole nodes adding up to N), and the timeline
  is a count of the same bits per cell. Python's share grows with devices × cells, not bookings.
- Otherwise (SQLite for `make run`, a DST change inside the window, dates near the calendar's
  ends), **by the allocator**: read the busy intervals and try every bookable slot start with the
  allocator's own choose_units/choose_devices. Also the reference the tests and the benchmark
  compare the cells path with.

Both walk the whole asked window (the API bounds the window to 31 days, not the search).

Why this one (bench/availability.py: 16 × 8 devices, 100,000 allocations in 30 days, 2 cores):
fetching the rows into Python costs ~0.4 s before any work (200,000 timestamps), and the sweep and
the per-slot allocator calls 1.8 s more. In PostgreSQL, a GROUP BY time of ±1 events (the
timeline alone) took 60–90 ms, a per-device lag() window for free gaps 80–120 ms, per-(device,
64-cell word) `bit_or` with generate_series ~100 ms and more with grouping sets (sorts spilling
to disk); the toggle bit strings do timeline and fits in one scan and one hash aggregate of 128
groups, ~100 ms, of which the scan is ~15–35 ms: the floor for any aggregate computed at query
time. Going below it needs occupancy kept pre-aggregated as allocations are written.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.db import connection

from booking.allocator import add_clipped, choose_devices, choose_units
from booking.availability import (
    Grid,
    at_least,
    cell_timeline,
    grid_for,
    prefix_xor,
    slot_start_minutes,
    slot_starts,
    spread_earlier,
    timeline,
    whole_nodes_free,
    windows_free,
)
from booking.policy import check_maintenance
from booking.services.resources import (
    buffer_of,
    node_states,
    policy_for,
    resource_maintenance,
    unit_states,
)
from equipment.choices import DeviceStatus, NodeStatus, UnitStatus
from equipment.models import Device, EquipmentType, EquipmentUnit, MaintenanceWindow

Interval = tuple[dt.datetime, dt.datetime]

# One scan, one hash aggregate of one row per unit or device. Its active allocations never overlap
# (the exclusion constraint), so its busy cells are the prefix-XOR of toggles at each allocation's
# first cell and the cell after its last: PostgreSQL XORs those two bits of each row into one bit
# string per unit or device. Rows that do not start and end on cell bounds (an early check-out)
# are handed back as they are, to be swept exactly. x0/x1: start and end in cells from the grid's
# origin (float8 epoch seconds keep microseconds at these magnitudes, and a whole number of cells
# divides exactly); OFFSET 0 keeps PostgreSQL from computing them again for every use.
_CELLS_SQL = """
SELECT t, bit_xor(set_bit(set_bit(%(zeros)s::varbit, c0, 1), c1, 1)) FILTER (WHERE NOT odd),
       array_agg(s) FILTER (WHERE odd), array_agg(e) FILTER (WHERE odd)
FROM (
    SELECT t, s, e, greatest(x0, 0)::int AS c0, least(x1, %(n)s)::int AS c1,
           NOT ((x0 <= 0 OR x0 = floor(x0)) AND (x1 >= %(n)s OR x1 = floor(x1))) AS odd
    FROM (
        SELECT a.{col} AS t, a.start AS s, a."end" AS e,
               (date_part('epoch', a.start) - %(origin)s) / %(cell)s AS x0,
               (date_part('epoch', a."end") - %(origin)s) / %(cell)s AS x1
        FROM booking_allocation a
        WHERE a.{col} = ANY(%(targets)s) AND a.active
          AND a.start < %(hi)s AND a."end" > %(lo)s
        OFFSET 0
    ) r
) c
GROUP BY t
"""


def read_cells(
    column: str, targets: list[int], grid: Grid, lo: dt.datetime, hi: dt.datetime
) -> tuple[dict[int, int], dict[int, list[Interval]]]:
    """Per unit or device: the cells its on-bound allocations overlapping [lo, hi) hold, and its
    other allocations as (start, end). One query; PostgreSQL only."""
    assert column in ("unit_id", "device_id")
    bits: dict[int, int] = {}
    odd: dict[int, list[Interval]] = defaultdict(list)
    if not targets:
        return bits, odd
    params: dict[str, Any] = {
        "origin": grid.origin.timestamp(),
        "cell": grid.cell.total_seconds(),
        "n": grid.n,
        "zeros": "0" * (grid.n + 1),  # one more: the toggle after a run that ends at the last cell
        "targets": targets,
        "lo": lo,
        "hi": hi,
    }
    with connection.cursor() as cursor:
        cursor.execute(_CELLS_SQL.format(col=column), params)
        for target, toggles, starts, ends in cursor.fetchall():
            if toggles:  # '0101…', cell 0 first
                bits[target] = prefix_xor(int(toggles[::-1], 2), grid.n)
            if starts:
                odd[target].extend(zip(starts, ends, strict=True))
    return bits, odd


def availability(*, resource, start, end, quantity: int, duration) -> dict:
    """{"capacity", "timeline": [(start, end, free)], "fits": [(start, end)]} over [start, end)."""
    policy = policy_for(resource)
    buffer = buffer_of(resource)
    reach = add_clipped(end, buffer)
    grid = grid_for(policy, start, reach) if connection.vendor == "postgresql" else None
    if grid is None:
        return by_allocator(
            resource=resource, start=start, end=end, quantity=quantity, duration=duration
        )
    windows = resource_maintenance(resource, start, reach)
    if isinstance(resource, EquipmentType):
        column = "unit_id"
        ids = list(
            EquipmentUnit.objects.filter(equipment_type=resource, status=UnitStatus.ACTIVE)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        groups = {pk: [pk] for pk in ids}
        held = MaintenanceWindow.objects.filter(unit__in=ids, start__lt=reach, end__gt=start)
        held_rows = held.order_by().values_list("unit_id", "start", "end")
    else:
        column = "device_id"
        rows = Device.objects.filter(
            node__pool=resource, node__status=NodeStatus.ACTIVE, status=DeviceStatus.ACTIVE
        ).order_by("node_id", "pk")
        groups = defaultdict(list)
        for node_id, pk in rows.values_list("node_id", "pk"):
            groups[node_id].append(pk)
        ids = [pk for members in groups.values() for pk in members]
        held = MaintenanceWindow.objects.filter(node__pool=resource, start__lt=reach, end__gt=start)
        held_rows = held.order_by().values_list("node_id", "start", "end")
    bits, odd = read_cells(column, ids, grid, start, reach)
    for owner, w_start, w_end in held_rows:  # maintenance of a unit or a node: busy like a booking
        for pk in groups.get(owner, ()):
            if grid.on_bounds(w_start, w_end):
                bits[pk] = bits.get(pk, 0) | grid.cover(w_start, w_end)
            else:
                odd[pk].append((w_start, w_end))

    steps = cell_timeline(
        grid,
        len(ids),
        [bits.get(pk, 0) for pk in ids if pk not in odd],
        [(bits.get(pk, 0), intervals) for pk, intervals in odd.items()],
        [(w_start, w_end) for w_start, w_end, _reason in windows],
        start,
        end,
    )
    return {
        "capacity": len(ids),
        "timeline": steps,
        "fits": _fits(
            grid, policy, resource, groups, bits, odd, windows, start, end, quantity, duration
        ),
    }


def _fits(grid, policy, resource, groups, bits, odd, windows, start, end, quantity, duration):
    if duration % grid.cell:
        return []  # an aligned start plus this never ends on a slot boundary
    length = duration // grid.cell
    buffer = buffer_of(resource)
    spread = buffer // grid.cell
    free: dict[int, int] = {}
    for members in groups.values():
        for pk in members:
            busy = spread_earlier(bits.get(pk, 0), spread)
            for a, b in odd.get(pk, ()):
                busy |= grid.cover(a - buffer, b)
            free[pk] = windows_free(busy, grid.n, length)
    full = grid.full
    if isinstance(resource, EquipmentType):
        fitting = at_least(
            [free[pk] for members in groups.values() for pk in members], quantity, full
        )
    else:
        sizes = [len(members) for members in groups.values()]
        if not sizes or max(sizes) == 0:
            fitting = 0
        elif quantity <= max(sizes):
            fitting = 0
            for members in groups.values():
                fitting |= at_least([free[pk] for pk in members], quantity, full)
        else:
            node_free = []
            for members in groups.values():
                whole = full
                for pk in members:
                    whole &= free[pk]
                node_free.append((len(members), whole))
            fitting = whole_nodes_free(node_free, quantity, full)
    blocked = 0
    for w_start, w_end, _reason in windows:
        blocked |= grid.cover(w_start, w_end)
    fitting &= windows_free(blocked, grid.n, length)
    if not fitting:
        return []
    found = slot_start_minutes(policy, start, end, duration)
    assert found is not None  # grid_for checked the same fixed offset
    minutes, offset = found
    text = format(fitting, f"0{grid.n}b")[::-1]
    zone = start.tzinfo
    result = []
    for k in grid.indices_of_local_minutes(minutes):
        if 0 <= k < grid.n and text[k] == "1":
            s = grid.at(k).astimezone(zone)
            result.append((s, (grid.at(k) + duration).astimezone(zone)))
    return result


def by_allocator(*, resource, start, end, quantity: int, duration) -> dict:
    """The same answer from the busy intervals: every bookable slot start tried with the
    allocator itself. Any database; the reference for the cells path."""
    buffer = buffer_of(resource)
    reach = add_clipped(end, buffer)
    windows = resource_maintenance(resource, start, reach)
    if isinstance(resource, EquipmentType):
        units = unit_states(resource, start, reach)
        ids = [u.id for u in units]
        busy = {u.id: list(u.busy) for u in units}

        def fits(s, e):
            return choose_units(units, s, add_clipped(e, buffer), quantity) is not None
    else:
        nodes = node_states(resource, start, reach)
        ids = [d.id for n in nodes for d in n.devices]
        busy = {d.id: list(d.busy) for n in nodes for d in n.devices}

        def fits(s, e):
            return choose_devices(nodes, s, e, quantity) is not None

    for w_start, w_end, _reason in windows:  # maintenance of the whole resource: nothing is free
        for key in ids:
            busy.setdefault(key, []).append((w_start, w_end))
    policy = policy_for(resource)
    fit_windows = []
    for s in slot_starts(policy, start, end, duration):
        e = add_clipped(s, duration)
        if check_maintenance(windows, s, e) is None and fits(s, e):
            fit_windows.append((s, e))
    return {"capacity": len(ids), "timeline": timeline(ids, busy, start, end), "fits": fit_windows}
