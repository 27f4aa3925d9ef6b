"""Availability as computed data: free-count steps, bookable slot starts, and fits as bitmaps.

Pure: standard library only, no Django. Availability is always derived from the busy intervals
(never kept as a counter).

Two ways to the same answer:
- `timeline` sweeps sorted busy intervals: exact for any input, used when the intervals are few
  (the SQLite fallback, the reference the tests and the benchmark compare against).
- The *cell* functions answer a whole window at once from bitmaps. A `Grid` cuts the window into
  equal cells of g = gcd(slot, 24 h, buffer) minutes counted from local midnight, so every slot
  boundary and every buffer shift falls on a cell boundary. A unit or device is free over an aligned
  window [s, e) exactly when none of the cells it covers holds a busy moment; so "busy anywhere in
  cell k" (a bit per cell, one Python int per unit or device) loses nothing for fitting. PostgreSQL
  builds those bits (booking/occupancy.py), the windows that fit are a few dozen big-int
  operations per device (`windows_free`, `at_least`), whatever the number of allocations, and the
  free-count timeline is a per-cell count of the same bits, exact because only intervals that
  start and end on cell boundaries are counted from cells (the rest are swept exactly).
The grid needs one UTC offset over the window (no DST change inside); otherwise `grid_for` says
None and the caller uses the sweep.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from booking.allocator import END_OF_TIME, add_clipped
from booking.policy import (
    DAY,
    Policy,
    align_up,
    elapsed,
    is_open,
    next_boundary,
    open_span,
    require_aware,
    whole_node_counts,
)

Interval = tuple[datetime, datetime]
MINUTE = timedelta(minutes=1)
# Moments this far inside the calendar's ends are safe to shift by a day in any zone.
_EDGE = timedelta(days=3)


def _merged_clipped(
    intervals: Sequence[Interval], start: datetime, end: datetime
) -> list[Interval]:
    """One id's busy intervals clipped to [start, end) and merged, so overlaps count once."""
    clipped = sorted(
        (max(s.astimezone(UTC), start), min(e.astimezone(UTC), end))
        for s, e in intervals
        if s < end and e > start
    )
    merged: list[Interval] = []
    for s, e in clipped:
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def timeline(
    ids: Sequence[int],
    busy: Mapping[int, Sequence[Interval]],
    start: datetime,
    end: datetime,
) -> list[tuple[datetime, datetime, int]]:
    """How many of `ids` are free, as merged (seg_start, seg_end, free) steps covering [start, end).

    Busy intervals of ids not in `ids` are ignored. Segment bounds are in `start`'s zone.
    """
    require_aware(start, "start")
    require_aware(end, "end")
    zone = start.tzinfo
    # Steps end at END_OF_TIME at the latest: shown in `start`'s zone, a later one could overflow.
    lo, hi = start.astimezone(UTC), min(end, END_OF_TIME).astimezone(UTC)
    if hi <= lo:
        return []
    unique_ids = list(dict.fromkeys(ids))
    events: list[tuple[datetime, int]] = []
    for uid in unique_ids:
        for s, e in _merged_clipped(busy.get(uid, ()), lo, hi):
            events.append((s, 1))
            events.append((e, -1))
    events.sort()

    segments: list[tuple[datetime, datetime, int]] = []
    busy_now = 0
    i = 0
    cursor = lo
    while cursor < hi:
        while i < len(events) and events[i][0] <= cursor:
            busy_now += events[i][1]
            i += 1
        step_end = events[i][0] if i < len(events) else hi
        free = len(unique_ids) - busy_now
        if segments and segments[-1][2] == free:
            segments[-1] = (segments[-1][0], step_end, free)
        else:
            segments.append((cursor, step_end, free))
        cursor = step_end
    return [(s.astimezone(zone), e.astimezone(zone), n) for s, e, n in segments]


def _fixed_offset(policy: Policy, start: datetime, end: datetime) -> timedelta | None:
    """The zone's one UTC offset over [start, end] (checked at every local midnight), or None."""
    if start.astimezone(UTC) < datetime.min.replace(tzinfo=UTC) + _EDGE:
        return None
    if end.astimezone(UTC) > END_OF_TIME - _EDGE:
        return None
    offset = start.astimezone(policy.tz).utcoffset()
    day = start.astimezone(policy.tz).date() - DAY
    last = end.astimezone(policy.tz).date() + DAY
    while day <= last:
        if datetime.combine(day, time(0), tzinfo=policy.tz).utcoffset() != offset:
            return None
        day += DAY
    if end.astimezone(policy.tz).utcoffset() != offset:
        return None
    return offset


def _open_spans(policy: Policy, start: datetime, end: datetime) -> list[Interval]:
    """Where open windows can lie: each open day's hours, or runs of open days around the clock."""
    if policy.around_the_clock:
        if policy.every_day:
            return [(start, end)]
        spans: list[Interval] = []
        day = start.astimezone(policy.tz).date()
        last = end.astimezone(policy.tz).date()
        run_start: date | None = None
        while day <= last + DAY:
            is_open_day = day <= last and day.weekday() in policy.open_weekdays
            if is_open_day and run_start is None:
                run_start = day
            elif not is_open_day and run_start is not None:
                lo = max(datetime.combine(run_start, time(0), tzinfo=policy.tz), start)
                hi = min(datetime.combine(day, time(0), tzinfo=policy.tz), end)
                if lo < hi:
                    spans.append((lo, hi))
                run_start = None
            day += DAY
        return spans
    spans = []
    day = start.astimezone(policy.tz).date() - DAY
    last = end.astimezone(policy.tz).date()
    while day <= last:
        if day.weekday() in policy.open_weekdays:
            opening, closing = open_span(policy, day)
            lo, hi = max(opening, start), min(closing, end)
            if lo < hi:
                spans.append((lo, hi))
        day += DAY
    return spans


def _local_minutes(moment: datetime, offset: timedelta) -> int:
    """Whole wall-clock minutes since 1970-01-01 00:00 local, for a moment on a minute."""
    return (moment.astimezone(UTC) + offset - datetime(1970, 1, 1, tzinfo=UTC)) // MINUTE


def slot_start_minutes(
    policy: Policy, start: datetime, end: datetime, duration: timedelta
) -> tuple[list[int], timedelta] | None:
    """`slot_starts` as local wall minutes since 1970 (and the offset), or None when the zone
    changes its offset near the window (then use `slot_starts`). Integer arithmetic only."""
    require_aware(start, "start")
    require_aware(end, "end")
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    end = min(end, END_OF_TIME)
    offset = _fixed_offset(policy, start, end)
    if offset is None:
        return None
    if end <= start or duration % MINUTE:
        return [], offset  # a start on a whole minute plus a part-minute never ends aligned
    length = duration // MINUTE
    slot = policy.slot_minutes
    found: list[int] = []
    for span_start, span_end in _open_spans(policy, start, end):
        first = align_up(policy, span_start)
        if first.astimezone(UTC) >= span_end.astimezone(UTC):
            continue
        moment = _local_minutes(first, offset)
        # The last start whose window still ends inside the span (span_end may be mid-minute).
        last = (span_end.astimezone(UTC) + offset - datetime(1970, 1, 1, tzinfo=UTC)) // MINUTE
        last -= length
        while moment <= last:
            wall_end = (moment + length) % 1440
            if (wall_end == 0) if slot >= 1440 else (wall_end % slot == 0):
                found.append(moment)
            wall = moment % 1440
            step = slot if slot < 1440 and wall + slot < 1440 else 1440 - wall
            moment += step
    return found, offset


def _from_local_minutes(minutes: int, offset: timedelta, tz) -> datetime:
    return (datetime(1970, 1, 1, tzinfo=UTC) + minutes * MINUTE - offset).astimezone(tz)


def slot_starts(
    policy: Policy,
    start: datetime,
    end: datetime,
    duration: timedelta,
    *,
    limit: int | None = None,
) -> list[datetime]:
    """Every aligned s with start ≤ s and s + duration ≤ end where the resource is open.

    The whole window is walked: `limit` (None: no limit) only shortens the answer for callers
    that want the first few. Only open hours are walked, so closed nights and weekends cost
    nothing; with one UTC offset over the window the walk is integer arithmetic. Nothing past
    END_OF_TIME is walked (the next day would overflow).
    """
    if limit is not None and limit < 1:
        return []
    fast = slot_start_minutes(policy, start, end, duration)
    if fast is not None:
        minutes, offset = fast
        if limit is not None:
            minutes = minutes[:limit]
        return [_from_local_minutes(m, offset, policy.tz) for m in minutes]
    end = min(end, END_OF_TIME)
    if end <= start:
        return []
    found: list[datetime] = []
    for span_start, span_end in _open_spans(policy, start, end):
        moment = align_up(policy, span_start)
        while True:
            window_end = add_clipped(moment, duration)
            if window_end > span_end or elapsed(moment, window_end) < duration:
                break
            if is_open(policy, moment, window_end):
                found.append(moment)
                if limit is not None and len(found) >= limit:
                    return found
            moment = next_boundary(policy, moment)
    return found


# --- cells ------------------------------------------------------------------------------------


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
        first = _local_minutes(self.origin, self.offset)
        per_cell = self.cell // MINUTE
        return [(m - first) // per_cell for m in minutes]


def grid_for(policy: Policy, start: datetime, end: datetime) -> Grid | None:
    """Cells of gcd(slot, 1440, buffer) minutes covering [start, end), or None without a fixed
    UTC offset there (a DST change) or near the calendar's ends."""
    require_aware(start, "start")
    require_aware(end, "end")
    offset = _fixed_offset(policy, start, end)
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


def count_steps(bitmaps: Sequence[int], n: int) -> list[tuple[int, int]]:
    """How many bitmaps have bit k, as (first cell, count) wherever the count changes."""
    if n <= 0:
        return []
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
        for s, e in _merged_clipped(everything_busy, lo_dt, hi_dt)
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
