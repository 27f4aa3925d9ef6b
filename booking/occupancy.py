"""What `GET /api/v1/availability` answers: the free-count timeline and every window that fits.

Three paths to one answer (tests/booking/test_availability_window.py checks they agree):

- On PostgreSQL, **stored cells** (`read_stored`): booking_occupancy (booking/models/occupancy.py)
  holds, per unit or device and UTC day, the 5-minute cells its active allocations hold, kept by
  triggers on booking_allocation in the writing transaction (migration 0009_device_occupancy).
  One query reads the asked days' rows of the resource's units or devices, aggregated by
  PostgreSQL into one byte string per unit or device (128 devices × 31 days: ~4,000 rows of 36
  bytes, no allocation row read). Used when the resource's slot and buffer are multiples of 5
  minutes and the zone keeps one offset over the window, so every slot start, window end and
  buffer shift falls on a stored cell bound: fits and timeline are then exact on 5-minute cells.
  Pieces of allocations off the cell bounds (early check-outs) are kept exactly beside the cells.
- On PostgreSQL otherwise, **cells computed at request time** (`read_cells`): one query has the
  database turn the window's allocation rows into one bit string per unit or device — "busy at
  some moment of cell k" for the cells of booking.cells.Grid (gcd(slot, 24 h, buffer)
  minutes from local midnight) — by XOR-ing two toggle bits per row (`_CELLS_SQL`), and hands
  back as they are only the rows that do not start and end on cell bounds, swept exactly.
- Otherwise (SQLite for `make run`, a DST change inside the window, dates near the calendar's
  ends), **by the allocator**: read the busy intervals and try every bookable slot start with the
  allocator's own choose_units/choose_devices. Also the reference the tests and the benchmark
  compare the cells paths with.

With cells, fitting is a few dozen big-int operations per device (free over [k, k+d) for every k
at once; at least N free devices of one node; whole nodes adding up to N), and the timeline is a
count of the same bits per cell: Python's share grows with devices × cells, not bookings. All
three walk the whole asked window (the API bounds the window to 31 days, not the search).

Why stored (bench/availability.py: 16 × 8 devices, 100,000 allocations in 30 days, 2 shared
cores): any aggregate computed at request time must visit the window's 100,000 allocation rows.
Fetching them into Python cost ~0.4 s; in PostgreSQL a GROUP BY time of ±1 events took 60–90 ms,
a per-device lag() window 80–120 ms, the toggle bit strings of `_CELLS_SQL` 100–240 ms (the scan
alone 15–35 ms). The stored day rows are read in 2.5–4 ms of PostgreSQL (~4,000 rows of 36
bytes, one hash aggregate); the selector then spends ~10 ms of Python (decoding the bytes ~1,
per-cell counts and the ~2,700-step timeline 3–4, fits 2–3, maintenance and the device list 2),
and the view ~10 ms more (datetimes to ISO text ~5, JSON of ~290 kB ~3, DRF and middleware):
HTTP p50 ~24–40 ms depending on the machine's load, against 133–322 ms before. What is left
grows with the answer's size, not with the bookings. The triggers cost a writer ~20–35 µs of
server time per allocation row (statement-level; FOR EACH ROW cost ~430 µs).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.db import connection

from booking.allocator import add_clipped, choose_devices, choose_units
from booking.availability import slot_start_minutes, slot_starts, timeline
from booking.cells import (
    Grid,
    at_least,
    cell_timeline,
    grid_for,
    prefix_xor,
    spread_earlier,
    whole_nodes_free,
    windows_free,
)
from booking.models.occupancy import CELL_MINUTES, CELLS_PER_DAY, Occupancy
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
STORED_CELL = dt.timedelta(minutes=CELL_MINUTES)
_DAY = dt.timedelta(days=1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DAY_BYTES = CELLS_PER_DAY // 8
# varbit_send writes cell 0 as the first byte's highest bit; reversed within each byte, the bytes
# read little-endian give an int whose bit k is cell k.
_REVERSE_BITS = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))

# The asked days' rows of some units or devices, aggregated per unit or device: its days (from the
# first asked), their cells (36 bytes a day, after varbit_send's 4-byte length) in the same order,
# and the exact pieces off the cell bounds. The primary key (kind, target, day) finds them.
_STORED_SQL = """
SELECT target, array_agg(day - %(d0)s), string_agg(substr(varbit_send(bits), 5), ''::bytea),
       array_agg(odd) FILTER (WHERE odd IS NOT NULL)
FROM booking_occupancy
WHERE kind = %(kind)s AND target = ANY(%(targets)s) AND day BETWEEN %(d0)s AND %(d1)s
GROUP BY target
"""

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


def stored_grid(grid: Grid | None) -> Grid | None:
    """`grid` cut into the stored 5-minute cells, when every one of its cells is a whole number of
    them on their bounds (its cell a multiple of 5 minutes, the zone's offset too); else None."""
    if grid is None or grid.cell % STORED_CELL or grid.offset % STORED_CELL:
        return None
    per = grid.cell // STORED_CELL
    return Grid(origin=grid.origin, cell=STORED_CELL, n=grid.n * per, offset=grid.offset)


def read_stored(
    kind: int, targets: list[int], grid: Grid
) -> tuple[dict[int, int], dict[int, list[Interval]]]:
    """`read_cells` from booking_occupancy, for a `stored_grid`: the cells the units' or devices'
    on-bound allocations hold, and the exact pieces of the others. One query; PostgreSQL only."""
    bits: dict[int, int] = {}
    odd: dict[int, list[Interval]] = defaultdict(list)
    if not targets:
        return bits, odd
    first = (grid.origin - _EPOCH) // _DAY
    last = (grid.at(grid.n) - STORED_CELL - _EPOCH) // _DAY
    days = last - first + 1
    d0 = (_EPOCH + first * _DAY).date()
    skip = (grid.origin - _EPOCH - first * _DAY) // STORED_CELL  # cells of day d0 before origin
    mask = grid.full
    in_order = list(range(days))
    params: dict[str, Any] = {
        "kind": kind,
        "targets": targets,
        "d0": d0,
        "d1": (_EPOCH + last * _DAY).date(),
    }
    with connection.cursor() as cursor:
        cursor.execute(_STORED_SQL, params)
        for target, offsets, blob, pieces in cursor.fetchall():
            if offsets != in_order:  # days missing (nothing held) or out of order
                whole = bytearray(days * _DAY_BYTES)
                for i, k in enumerate(offsets):
                    whole[k * _DAY_BYTES : (k + 1) * _DAY_BYTES] = blob[
                        i * _DAY_BYTES : (i + 1) * _DAY_BYTES
                    ]
                blob = whole
            cells = int.from_bytes(bytes(blob).translate(_REVERSE_BITS), "little") >> skip & mask
            if cells:
                bits[target] = cells
            for multirange in pieces or ():
                odd[target].extend((r.lower, r.upper) for r in multirange)
    return bits, odd


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
    stored = stored_grid(grid)
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
    if stored is not None:
        grid = stored
        kind = Occupancy.Kind.UNIT if column == "unit_id" else Occupancy.Kind.DEVICE
        bits, odd = read_stored(kind, ids, grid)
    else:
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
    n = grid.n
    chosen = [k for k in grid.indices_of_local_minutes(minutes) if 0 <= k < n and text[k] == "1"]
    if not chosen:
        return []
    # One UTC offset over the grid (grid_for): wall-clock steps from the first moment are exact;
    # a start zone other than the policy's that changes offset inside is converted one by one.
    zone = start.tzinfo
    cell = grid.cell
    first = grid.at(chosen[0]).astimezone(zone)
    last = grid.at(chosen[-1]).astimezone(zone)
    if first.utcoffset() != last.utcoffset() or (last + duration).utcoffset() != last.utcoffset():
        return [
            (grid.at(k).astimezone(zone), (grid.at(k) + duration).astimezone(zone)) for k in chosen
        ]
    base = chosen[0]
    return [(s, s + duration) for s in (first + (k - base) * cell for k in chosen)]


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
