"""Choose units or devices for a window, and find the nearest windows that do fit.

Pure: standard library only, no Django. The caller (the allocation service) hands in the
current busy intervals, already widened by buffers and including maintenance, while
holding the pool's lock; the database's exclusion constraint is the backstop.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property

from booking.policy import (
    Policy,
    add_elapsed,
    align_up,
    elapsed,
    is_open,
    opening_times,
    reopening_times,
    require_aware,
    whole_node_counts,
)

Interval = tuple[datetime, datetime]

# Stands in for "no busy interval on that side": a free stretch longer than any booking.
FAR = timedelta(days=365 * 100)

# The last moment any search or buffer reaches. A little before datetime.max, so that a moment
# at or before it can still be shown in any zone (±14 h) and stepped to the next local midnight.
END_OF_TIME = datetime(9999, 12, 29, tzinfo=UTC)


def add_clipped(moment: datetime, delta: timedelta) -> datetime:
    """`moment + delta` in elapsed time, but never past END_OF_TIME: saturates, never overflows.

    A moment already past END_OF_TIME (bad data) is returned as it is, never moved backwards.
    """
    room = END_OF_TIME - moment  # aware subtraction: a timedelta, which cannot overflow here
    if delta <= room:
        return add_elapsed(moment, delta)
    if room < timedelta(0):
        return moment
    return END_OF_TIME.astimezone(moment.tzinfo)


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    """Half-open intervals [a_start, a_end) and [b_start, b_end) share at least one instant."""
    return a_start < b_end and b_start < a_end


def _merged(busy: Iterable[Interval]) -> tuple[tuple[datetime, ...], tuple[datetime, ...]]:
    """Busy intervals in UTC, sorted and merged, as parallel (starts, ends) tuples.

    Merging keeps every answer the same (a window overlaps the union iff it overlaps a
    part; the latest end before a moment is the end of its merged run) and makes one bisect
    enough, even when buffered intervals overlap or nest.
    """
    starts: list[datetime] = []
    ends: list[datetime] = []
    for start, end in sorted((s.astimezone(UTC), e.astimezone(UTC)) for s, e in busy):
        if end <= start:
            continue
        if ends and start <= ends[-1]:
            if end > ends[-1]:
                ends[-1] = end
        else:
            starts.append(start)
            ends.append(end)
    return tuple(starts), tuple(ends)


class _BusyIndex:
    """Free/gap queries by bisect over the merged busy intervals of one unit or device."""

    _starts: tuple[datetime, ...]
    _ends: tuple[datetime, ...]
    busy: tuple[Interval, ...]

    def __post_init__(self) -> None:
        starts, ends = _merged(self.busy)
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(self, "_ends", ends)

    def is_free(self, start: datetime, end: datetime) -> bool:
        return self.gaps(start, end) is not None

    def gaps(self, start: datetime, end: datetime) -> tuple[timedelta, timedelta] | None:
        """(gap before, gap after) around a free window, or None when the window is busy."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        i = bisect_left(self._starts, end)  # runs [:i] begin before the window ends
        if i and self._ends[i - 1] > start:
            return None
        before = start - self._ends[i - 1] if i else FAR
        after = self._starts[i] - end if i < len(self._starts) else FAR
        return before, after


@dataclass(frozen=True)
class UnitState(_BusyIndex):
    id: int
    busy: tuple[Interval, ...]  # sorted by start; already include buffers and maintenance
    _starts: tuple[datetime, ...] = field(init=False, repr=False, compare=False)
    _ends: tuple[datetime, ...] = field(init=False, repr=False, compare=False)


@dataclass(frozen=True)
class DeviceState(_BusyIndex):
    id: int
    busy: tuple[Interval, ...]
    _starts: tuple[datetime, ...] = field(init=False, repr=False, compare=False)
    _ends: tuple[datetime, ...] = field(init=False, repr=False, compare=False)


# States are immutable, so the state of an idle unit, device or node (nothing on it over the
# span) is one shared object per id: an 880-device pool that is mostly free is not rebuilt device
# by device for every decision.
@cache
def idle_unit(unit_id: int) -> UnitState:
    """The state of a unit with nothing on it."""
    return UnitState(id=unit_id, busy=())


@cache
def idle_device(device_id: int) -> DeviceState:
    """The state of a device with nothing on it."""
    return DeviceState(id=device_id, busy=())


@dataclass(frozen=True)
class NodeState:
    id: int
    devices: tuple[DeviceState, ...]

    @cached_property
    def _all_free(self) -> tuple[int, ...] | None:
        """Its device ids when nothing holds any of them (free over any window), else None."""
        if any(d.busy for d in self.devices):
            return None
        return tuple(sorted(d.id for d in self.devices))

    def free_device_ids(self, start: datetime, end: datetime) -> list[int]:
        idle = self._all_free
        if idle is not None:
            return list(idle)
        return sorted(d.id for d in self.devices if d.is_free(start, end))


@cache
def idle_node(node_id: int, device_ids: tuple[int, ...]) -> NodeState:
    """The state of a node with nothing on any of its devices (one per node and device set),
    which answers free_device_ids without looking at its devices again."""
    return NodeState(id=node_id, devices=tuple(idle_device(pk) for pk in device_ids))


@dataclass(frozen=True)
class Placement:
    node_ids: tuple[int, ...]
    device_ids: tuple[int, ...]


def _check_request(start: datetime, end: datetime, quantity: int) -> None:
    require_aware(start, "start")
    require_aware(end, "end")
    if end <= start:
        raise ValueError("the window must end after it starts")
    if quantity < 1:
        raise ValueError("quantity must be at least 1")


def choose_units(
    units: Sequence[UnitState],
    start: datetime,
    end: datetime,
    quantity: int,
    *,
    pinned: int | None = None,
) -> list[int] | None:
    """`quantity` distinct unit ids free over [start, end), best fit in time first; or None.

    Best fit: the smallest gap before plus gap after, so that long free stretches stay
    whole for long requests. Ties go to the lower id. With `pinned`, only that unit counts.
    """
    _check_request(start, end, quantity)
    if pinned is not None and quantity != 1:
        raise ValueError("a pinned unit serves a quantity of 1")
    scored: list[tuple[timedelta, int]] = []
    seen: set[int] = set()
    for unit in units:
        if (pinned is not None and unit.id != pinned) or unit.id in seen:
            continue
        seen.add(unit.id)
        gaps = unit.gaps(start, end)
        if gaps is not None:
            scored.append((gaps[0] + gaps[1], unit.id))
    if len(scored) < quantity:
        return None
    return [uid for _, uid in heapq.nsmallest(quantity, scored)]


def choose_devices(
    nodes: Sequence[NodeState], start: datetime, end: datetime, quantity: int
) -> Placement | None:
    """Devices for a pool booking, or None.

    Up to the largest node's size: one node, the feasible node with the fewest free devices
    (best fit; ties to the lower node id), its lowest free device ids. Beyond: whole nodes, all
    devices free, whose sizes add up to exactly `quantity` (policy.whole_node_counts).
    """
    _check_request(start, end, quantity)
    if not nodes:
        return None
    size = max(len(node.devices) for node in nodes)
    if size == 0:
        return None
    if quantity <= size:
        best: tuple[tuple[int, int], NodeState, list[int]] | None = None
        for node in nodes:
            free = node.free_device_ids(start, end)
            if len(free) < quantity:
                continue
            key = (len(free), node.id)
            if best is None or key < best[0]:
                best = (key, node, free)
        if best is None:
            return None
        _, node, free = best
        return Placement(node_ids=(node.id,), device_ids=tuple(free[:quantity]))
    # Beyond one node: whole nodes, of any sizes that add up to exactly `quantity` (8 + 4 = 12
    # on a pool with one 4-card node), fewest nodes first, lowest node ids within a size.
    whole: dict[int, list[NodeState]] = {}
    for node in sorted(nodes, key=lambda n: n.id):
        if node.devices and len(node.free_device_ids(start, end)) == len(node.devices):
            whole.setdefault(len(node.devices), []).append(node)
    counts = whole_node_counts({s: len(group) for s, group in whole.items()}, quantity)
    if counts is None:
        return None
    chosen = sorted(
        (node for s, count in counts.items() for node in whole[s][:count]), key=lambda n: n.id
    )
    return Placement(
        node_ids=tuple(node.id for node in chosen),
        device_ids=tuple(sorted(d.id for node in chosen for d in node.devices)),
    )


def free_count(
    nodes_or_units: Sequence[UnitState] | Sequence[NodeState] | Sequence[DeviceState],
    start: datetime,
    end: datetime,
) -> int:
    """How many units (or devices, over all nodes) are free over [start, end)."""
    require_aware(start, "start")
    require_aware(end, "end")
    count = 0
    for item in nodes_or_units:
        if isinstance(item, NodeState):
            count += sum(1 for d in item.devices if d.is_free(start, end))
        elif item.is_free(start, end):
            count += 1
    return count


def candidate_starts(
    policy: Policy, *, after: datetime, until: datetime, busy_ends: Iterable[datetime]
) -> list[datetime]:
    """Sorted unique aligned starts in [after, until] where feasibility can begin.

    A window that does not fit at one slot but fits at the next became free because a busy
    interval ended in between, or the resource opened, or the search began there: so
    `after`, every busy end (and busy end + buffer, for callers whose fits() adds the buffer
    to raw intervals), and every opening, each aligned up, are all that need checking.
    """
    require_aware(after, "after")
    require_aware(until, "until")
    # Nothing is searched past END_OF_TIME: aligning up or walking the days there would overflow.
    until = min(until, END_OF_TIME)
    lo, hi = after.astimezone(UTC), until.astimezone(UTC)
    if hi < lo:
        return []
    raw = [after]
    for end in busy_ends:
        raw.append(end)
        if policy.buffer_minutes:
            raw.append(add_clipped(end, policy.buffer))
    raw.extend(opening_times(policy, after, until))
    raw.extend(reopening_times(policy, after, until))
    points = set()
    for moment in raw:
        if lo <= moment <= hi:
            aligned = align_up(policy, moment)
            if aligned <= hi:
                points.add(aligned.astimezone(UTC))
    return [p.astimezone(policy.tz) for p in sorted(points)]


def find_alternatives(
    fits: Callable[[datetime, datetime], bool],
    policy: Policy,
    *,
    start: datetime,
    duration: timedelta,
    until: datetime,
    busy_ends: Iterable[datetime],
    limit: int = 5,
) -> list[Interval]:
    """The first `limit` open windows of `duration` that fit, at candidate starts ≥ start.

    Each is an independent alternative (they may overlap); starts are distinct. After a start
    that fits, the next slot is tried too, so the person gets the nearest few choices rather
    than one per free stretch.
    """
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    found: list[Interval] = []
    if limit < 1:
        return found
    slot = timedelta(minutes=policy.slot_minutes)
    queue = list(candidate_starts(policy, after=start, until=until, busy_ends=busy_ends))
    heapq.heapify(queue)
    seen: set[datetime] = set()
    while queue and len(found) < limit:
        candidate = heapq.heappop(queue)
        if candidate in seen:
            continue
        seen.add(candidate)
        end = add_clipped(candidate, duration)
        if elapsed(candidate, end) < duration:
            continue  # the window would run past END_OF_TIME
        if is_open(policy, candidate, end) and fits(candidate, end):
            found.append((candidate, end))
            following = add_clipped(candidate, slot)
            if candidate < following <= until and following not in seen:
                heapq.heappush(queue, following)
    return found
