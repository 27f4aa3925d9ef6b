"""Availability on cells: a window cut into equal cells, one bitmap (a Python int) per unit or device.

A `Grid` cuts a window into cells of g = gcd(slot, 24 h, buffer) minutes counted from local
midnight (or the stored 5-minute cells, when g is a multiple of them), so every slot boundary and
every buffer shift falls on a cell boundary. A unit or device is free over an aligned window
exactly when none of the cells it covers holds a busy moment, so "busy anywhere in cell k" loses
nothing for fitting: the windows that fit are a few dozen big-int operations per device
(`windows_free`, `at_least`, `whole_nodes_free`), whatever the number of allocations, and the
free-count timeline is a per-cell count of the same bits (`count_steps`, `cell_timeline`), exact
because only intervals on cell bounds are counted from cells (the rest are swept exactly).

Pure: standard library only, no Django. booking/occupancy.py fills the bitmaps.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from booking.allocator import END_OF_TIME
from booking.availability import MINUTE, Interval, fixed_offset, local_minutes, merged_clipped
from booking.policy import Policy, require_aware, whole_node_counts


@dataclass(frozen=True)
class Grid:
    """Equal cells [origin + k·cell, origin + (k+1)·cell) for k < n, in one fixed UTC offset."""

    origin: datetime  # UTC, on a cell boundary of local midnight's grid
    cell: timedelta
    n: int
    offset: timedelta

    @property
    def full(self) -> int:
        return (1 << self.n) - 1

    def at(self, k: int) -> datetime:
        return self.origin + k * self.cell

    def cells_of(self, start: datetime, end: datetime) -> tuple[int, int]:
        """[k0, k1): the cells that hold some moment of [start, end), clipped to the grid."""
        k0 = (start.astimezone(UTC) - self.origin) // self.cell
        k1 = -((self.origin - end.astimezone(UTC)) // self.cell)
        return max(k0, 0), min(k1, self.n)

    def on_bounds(self, start: datetime, end: datetime) -> bool:
        """Both ends on cell bounds (or outside the grid): then cells hold the interval exactly."""
        a, b = start.astimezone(UTC) - self.origin, end.astimezone(UTC) - self.origin
        return (a <= timedelta(0) or not a % self.cell) and (
            b >= self.n * self.cell or not b % self.cell
        )

    def cover(self, start: datetime, end: datetime) -> int:
        k0, k1 = self.cells_of(start, end)
        return ((1 << (k1 - k0)) - 1) << k0 if k1 > k0 else 0

    def indices_of_local_minutes(self, minutes: Iterable[int]) -> list[int]:
        """The cells that start at these local wall minutes (slot starts always do)."""
        first = local_minutes(self.origin, self.offset)
        per_cell = self.cell // MINUTE
        return [(m - first) // per_cell for m in minutes]


def grid_for(policy: Policy, start: datetime, end: datetime) -> Grid | None:
    """Cells of gcd(slot, 1440, buffer) minutes covering [start, end), or None without a fixed
    UTC offset there (a DST change) or near the calendar's ends."""
    require_aware(start, "start")
    require_aware(end, "end")
    offset = fixed_offset(policy, start, end)
    if offset is None or end <= start:
        return None
    cell = timedelta(minutes=math.gcd(policy.slot_minutes, 1440, policy.buffer_minutes))
    local = start.astimezone(policy.tz)
    midnight = datetime.combine(local.date(), time(0), tzinfo=policy.tz)
    origin = (midnight + ((local - midnight) // cell) * cell).astimezone(UTC)
    n = -((origin - end.astimezone(UTC)) // cell)
    return Grid(origin=origin, cell=cell, n=n, offset=offset)


def prefix_xor(toggles: int, n: int) -> int:
    """Bit k = XOR of toggle bits 0..k: from the first and after-last cells of disjoint runs, the
    runs themselves (back-to-back runs share a toggle that cancels, and stay one run)."""
    bits, shift = toggles, 1
    while shift < n:
        bits ^= bits << shift
        shift *= 2
    return bits & ((1 << n) - 1)


def spread_earlier(bits: int, cells: int) -> int:
    """Bit k set when any of bits k..k+cells is: busy [a, b) becomes busy [a - cells, b)."""
    span = 1
    while span <= cells:
        step = min(span, cells + 1 - span)
        bits |= bits >> step
        span += step
    return bits


def windows_free(busy: int, n: int, length: int) -> int:
    """Bit k set when cells k..k+length-1 are all free and inside the n cells."""
    if length < 1 or length > n:
        return 0
    acc = ~busy & ((1 << n) - 1)
    span = 1
    while span < length:
        step = min(span, length - span)
        acc &= acc >> step
        span += step
    return acc


def at_least(bitmaps: Sequence[int], quantity: int, full: int) -> int:
    """Bit k set when at least `quantity` of the bitmaps have bit k."""
    if quantity <= 0:
        return full
    if quantity > len(bitmaps):
        return 0
    reached = [full] + [0] * quantity  # reached[j]: at least j so far
    for count, bits in enumerate(bitmaps, start=1):
        for j in range(min(quantity, count), 0, -1):
            reached[j] |= reached[j - 1] & bits
    return reached[quantity]


def whole_nodes_free(node_free: Sequence[tuple[int, int]], quantity: int, full: int) -> int:
    """Bit k set when free whole nodes add up to exactly `quantity` devices (the allocator's rule
    beyond one node, policy.whole_node_counts). `node_free`: (node size, bits where it is free)."""
    by_size: dict[int, list[int]] = {}
    for size, bits in node_free:
        if size > 0:
            by_size.setdefault(size, []).append(bits)
    sizes = sorted(by_size, reverse=True)
    result = 0
    # Every count vector that whole_node_counts could answer with; some fits iff one is free.
    for counts in _combinations(sizes, [len(by_size[s]) for s in sizes], quantity):
        if whole_node_counts({s: c for s, c in zip(sizes, counts, strict=True)}, quantity) is None:
            continue
        bits = full
        for size, count in zip(sizes, counts, strict=True):
            if count:
                bits &= at_least(by_size[size], count, full)
        result |= bits
    return result


def _combinations(sizes: list[int], limits: list[int], quantity: int) -> Iterable[tuple[int, ...]]:
    if not sizes:
        if quantity == 0:
            yield ()
        return
    size, rest = sizes[0], sizes[1:]
    for count in range(min(limits[0], quantity // size), -1, -1):
        for tail in _combinations(rest, limits[1:], quantity - count * size):
            yield (count, *tail)


def _merged_ints(spans: Iterable[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted((max(s, lo), min(e, hi)) for s, e in spans if s < hi and e > lo):
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def bit_runs(bits: int, n: int) -> list[tuple[int, int]]:
    """The runs [k0, k1) of set bits among the first n."""
    text = format(bits & ((1 << n) - 1), f"0{n}b")[::-1] if n else ""
    return [(m.start(), m.end()) for m in re.finditer("1+", text)]


_BIT_TO_BYTE = bytes.maketrans(b"01", b"\x00\x01")


def cell_counts(bitmaps: Sequence[int], n: int) -> bytes:
    """Byte k: how many of the bitmaps have bit k (at most 255 bitmaps per call).

    Each bitmap is spread to one byte per cell and the spread numbers are added, so the count
    of every cell is one big-int addition per bitmap.
    """
    total = 0
    for bits in bitmaps:
        text = format(bits & ((1 << n) - 1), f"0{n}b").encode("ascii").translate(_BIT_TO_BYTE)
        total += int.from_bytes(text, "big")
    return total.to_bytes(n, "big")[::-1]


def bit_planes(bitmaps: Iterable[int]) -> list[int]:
    """Per-cell counts of the bitmaps in binary, one int per binary digit: cell k's count is
    Σ ((planes[i] >> k) & 1) << i. Adding a bitmap is a ripple-carry of a few big-int ops."""
    planes: list[int] = []
    for bits in bitmaps:
        carry = bits
        for i, plane in enumerate(planes):
            planes[i] = plane ^ carry
            carry &= plane
            if not carry:
                break
        if carry:
            planes.append(carry)
    return planes


_NONZERO = bytes([0]) + bytes([1]) * 255


def count_steps(bitmaps: Sequence[int], n: int) -> list[tuple[int, int]]:
    """How many bitmaps have bit k, as (first cell, count) wherever the count changes."""
    if n <= 0:
        return []
    if len(bitmaps) > 255:  # more than a byte per cell: the slower sum of partial counts
        counts = [0] * n
        for i in range(0, len(bitmaps), 255):
            part = cell_counts(bitmaps[i : i + 255], n)
            counts = [a + b for a, b in zip(counts, part, strict=True)] if i else list(part)
        steps = [(0, counts[0])]
        previous = counts[0]
        for k, count in enumerate(counts):
            if count != previous:
                steps.append((k, count))
                previous = count
        return steps
    mask = (1 << n) - 1
    total = 0  # byte k (from the end) = cell k's count
    for i, plane in enumerate(bit_planes(bitmaps)):
        text = format(plane & mask, f"0{n}b").encode("ascii").translate(_BIT_TO_BYTE)
        total += int.from_bytes(text, "big") << i
    # Byte j of `changed` is nonzero where cell j + 1's count differs from cell j's.
    changed = (total ^ (total >> 8)) & ((1 << 8 * (n - 1)) - 1)
    flags = changed.to_bytes(n - 1, "little").translate(_NONZERO) if n > 1 else b""
    per_cell = total.to_bytes(n, "little")
    steps = [(0, per_cell[0])]
    k = flags.find(1)
    while k >= 0:
        steps.append((k + 1, per_cell[k + 1]))
        k = flags.find(1, k + 1)
    return steps


def cell_timeline(
    grid: Grid,
    capacity: int,
    regular: Sequence[int],
    exact: Sequence[tuple[int, Sequence[Interval]]],
    everything_busy: Sequence[Interval],
    start: datetime,
    end: datetime,
) -> list[tuple[datetime, datetime, int]]:
    """Free count as merged (seg_start, seg_end, free) steps over [start, end), in start's zone.

    `regular`: the cell bitmaps of units or devices whose busy intervals all lie on cell bounds;
    `exact`: (cell bitmap, other busy intervals) of the rest (any bounds, overlaps allowed),
    swept exactly;
    `everything_busy`: windows when nothing is free (maintenance of the whole resource).
    Moments are handled as integer microseconds from the grid's origin.
    """
    require_aware(start, "start")
    require_aware(end, "end")
    zone = start.tzinfo
    lo_dt, hi_dt = start.astimezone(UTC), min(end, END_OF_TIME).astimezone(UTC)
    if hi_dt <= lo_dt:
        return []
    us = timedelta(microseconds=1)
    origin = grid.origin
    lo, hi = (lo_dt - origin) // us, (hi_dt - origin) // us
    cell = grid.cell // us
    if not exact and not merged_clipped(everything_busy, lo_dt, hi_dt):
        return _count_timeline(grid, capacity, regular, lo, hi, zone)
    deltas: dict[int, int] = {}
    previous = 0
    for k, busy in count_steps(regular, grid.n):
        deltas[k * cell] = busy - previous
        previous = busy
    for bits, intervals in exact:
        spans = [(k0 * cell, k1 * cell) for k0, k1 in bit_runs(bits, grid.n)]
        spans += [((a - origin) // us, (b - origin) // us) for a, b in intervals]
        for s_us, e_us in _merged_ints(spans, 0, grid.n * cell):
            deltas[s_us] = deltas.get(s_us, 0) + 1
            deltas[e_us] = deltas.get(e_us, 0) - 1
    zeros = [
        ((s - origin) // us, (e - origin) // us)
        for s, e in merged_clipped(everything_busy, lo_dt, hi_dt)
    ]
    for s_us, e_us in zeros:
        deltas.setdefault(s_us, 0)
        deltas.setdefault(e_us, 0)
    moments = sorted(deltas)
    busy = 0
    i = 0
    while i < len(moments) and moments[i] <= lo:
        busy += deltas[moments[i]]
        i += 1
    segments: list[list[int]] = []
    zero_index = 0
    cursor = lo
    while cursor < hi:
        step_end = moments[i] if i < len(moments) and moments[i] < hi else hi
        while zero_index < len(zeros) and zeros[zero_index][1] <= cursor:
            zero_index += 1
        free = 0 if zero_index < len(zeros) and zeros[zero_index][0] <= cursor else capacity - busy
        if segments and segments[-1][2] == free:
            segments[-1][1] = step_end
        else:
            segments.append([cursor, step_end, free])
        cursor = step_end
        if i < len(moments) and moments[i] == step_end:
            busy += deltas[step_end]
            i += 1
    shown = [(origin + s * us).astimezone(zone) for s, _e, _n in segments]
    shown.append((origin + hi * us).astimezone(zone))
    return [(shown[i], shown[i + 1], n) for i, (_s, _e, n) in enumerate(segments)]


def _count_timeline(
    grid: Grid, capacity: int, regular: Sequence[int], lo: int, hi: int, zone
) -> list[tuple[datetime, datetime, int]]:
    """`cell_timeline` when every busy interval lies on cell bounds and nothing closes the whole
    resource: the steps of the per-cell counts, cut to [lo, hi) (microseconds from the origin)."""
    cell = grid.cell // timedelta(microseconds=1)
    steps = count_steps(regular, grid.n)
    first = max(bisect_right(steps, (lo // cell, capacity + 1)) - 1, 0)
    bounds = [lo]
    frees = [capacity - steps[first][1]]
    for k, busy in steps[first + 1 :]:
        moment = k * cell
        if moment >= hi:
            break
        bounds.append(moment)
        frees.append(capacity - busy)
    bounds.append(hi)
    # Within the grid the zone keeps one offset: wall-clock steps from the first moment are exact.
    local = (grid.origin + timedelta(microseconds=lo)).astimezone(zone)
    shown = [local + timedelta(microseconds=moment - lo) for moment in bounds]
    if local.utcoffset() != shown[-1].utcoffset():
        shown = [(grid.origin + timedelta(microseconds=m)).astimezone(zone) for m in bounds]
    return [(shown[i], shown[i + 1], free) for i, free in enumerate(frees)]
