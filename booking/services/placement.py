"""Where the bookings of a batch fit: each resource's holds over the batch, and alternatives.

`BatchResource` is read once per resource for a whole batch of decisions and updated in memory
as bookings are placed, so later bookings of the batch see the earlier ones. `alternatives_for`
finds the nearest windows that fit now for a rejected booking. Every date step is clipped at
booking.allocator.END_OF_TIME: a booking near the end of the calendar is decided, never crashes.

A move (booking/services/moves.py) places its replacement with `freeing`: the old booking's
allocations count as free for it (moving one hour later on the same GPU works), and once the
replacement is placed they are `release`d for the rest of the batch too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from booking.allocator import (
    DeviceState,
    NodeState,
    UnitState,
    add_clipped,
    choose_devices,
    choose_units,
    find_alternatives,
)
from booking.models import Booking
from booking.policy import check_maintenance
from booking.services.resources import (
    batch_states,
    buffer_of,
    node_states,
    policy_for,
    resource_maintenance,
    unit_states,
)
from equipment.models import AcceleratorPool, EquipmentType

ALTERNATIVES_HORIZON = dt.timedelta(days=14)

# One allocation row's hold: (unit or device id, start, end), as the busy intervals carry it.
Held = tuple[int, dt.datetime, dt.datetime]


def _drop(busy: tuple, intervals: list[tuple]) -> tuple:
    """`busy` without one occurrence of each interval (absent ones: outside the span read)."""
    left = list(busy)
    for interval in intervals:
        if interval in left:
            left.remove(interval)
    return tuple(left)


def without_holds(
    units: list[UnitState] | None, nodes: list[NodeState] | None, freed: list[Held]
) -> tuple[list[UnitState] | None, list[NodeState] | None]:
    """The states as if these allocations were released (a move's old booking)."""
    if not freed:
        return units, nodes
    by_target: dict[int, list[tuple]] = {}
    for target, start, end in freed:
        by_target.setdefault(target, []).append((start, end))
    if units is not None:
        units = [
            UnitState(id=u.id, busy=_drop(u.busy, by_target[u.id])) if u.id in by_target else u
            for u in units
        ]
    if nodes is not None:
        nodes = [
            NodeState(
                id=n.id,
                devices=tuple(
                    DeviceState(id=d.id, busy=_drop(d.busy, by_target[d.id]))
                    if d.id in by_target
                    else d
                    for d in n.devices
                ),
            )
            if any(d.id in by_target for d in n.devices)
            else n
            for n in nodes
        ]
    return units, nodes


def alternatives_for(
    resource, booking: Booking, *, now: dt.datetime, limit: int = 5, freeing: Sequence[Held] = ()
) -> list[dict]:
    """Up to `limit` windows at or after the asked start, same duration and quantity, that fit now
    (for a move, with the old booking's allocations, `freeing`, counted as free)."""
    policy = policy_for(resource)
    buffer = buffer_of(resource)
    duration = booking.end - booking.start
    # Clipped, never overflowing: a booking near the end of the calendar gets no alternatives.
    latest_start = min(
        add_clipped(booking.start, ALTERNATIVES_HORIZON),
        add_clipped(now, dt.timedelta(days=policy.max_lead_days)),
    )
    horizon_end = add_clipped(latest_start, duration + buffer)
    if isinstance(resource, EquipmentType):
        units = unit_states(resource, booking.start, horizon_end, exclude_booking=booking.pk)
        units = without_holds(units, None, list(freeing))[0] or []
        busy_ends = [e for u in units for _s, e in u.busy]

        def fits(s: dt.datetime, e: dt.datetime) -> bool:
            return (
                choose_units(
                    units,
                    s,
                    add_clipped(e, buffer),
                    booking.quantity,
                    pinned=booking.pinned_unit_id,
                )
                is not None
            )
    else:
        nodes = node_states(resource, booking.start, horizon_end, exclude_booking=booking.pk)
        nodes = without_holds(None, nodes, list(freeing))[1] or []
        busy_ends = [e for n in nodes for d in n.devices for _s, e in d.busy]

        def fits(s: dt.datetime, e: dt.datetime) -> bool:
            return choose_devices(nodes, s, e, booking.quantity) is not None

    windows = resource_maintenance(resource, booking.start, horizon_end)
    busy_ends.extend(w[1] for w in windows)
    min_start = max(booking.start, add_clipped(now, dt.timedelta(minutes=policy.min_lead_minutes)))

    def fits_all(s: dt.datetime, e: dt.datetime) -> bool:
        return check_maintenance(windows, s, e) is None and fits(s, e)

    found = find_alternatives(
        fits_all,
        policy,
        start=min_start,
        duration=duration,
        until=latest_start,
        busy_ends=busy_ends,
        limit=limit,
    )
    return [{"start": s.isoformat(), "end": e.isoformat()} for s, e in found]


def load_batch(entries: Sequence[BatchResource]) -> None:
    """Load every resource of a batch at once: four statements, however many resources
    (booking/services/resources.batch_states); the same states BatchResource.load reads."""
    types = {e.obj.pk: e.span() for e in entries if isinstance(e.obj, EquipmentType)}
    pools = {e.obj.pk: e.span() for e in entries if not isinstance(e.obj, EquipmentType)}
    states = batch_states(types, pools)
    for entry in entries:
        if isinstance(entry.obj, EquipmentType):
            entry.units = states.units[entry.obj.pk]
            entry.windows = states.windows[("type", entry.obj.pk)]
        else:
            entry.nodes = states.nodes[entry.obj.pk]
            entry.windows = states.windows[("pool", entry.obj.pk)]


@dataclass
class BatchResource:
    """One resource of a batch with what holds it over the span of the batch's bookings."""

    obj: EquipmentType | AcceleratorPool
    bookings: list[Booking]
    units: list[UnitState] | None = None
    nodes: list[NodeState] | None = None
    windows: list[tuple] = field(default_factory=list)

    def span(self) -> tuple[dt.datetime, dt.datetime]:
        """From the earliest start to the latest end (plus the buffer) of its bookings."""
        buffer = buffer_of(self.obj)
        return (
            min(b.start for b in self.bookings),
            add_clipped(max(b.end for b in self.bookings), buffer),
        )

    def place(
        self, booking: Booking, *, freeing: Sequence[Held] = ()
    ) -> tuple[list[int], dict[int, int] | None] | None:
        """(unit ids, None) or (device ids, node id by device), free over the booking; or None.
        `freeing`: holds counted as free for this booking only (a move's old allocations)."""
        start, end = booking.start, add_clipped(booking.end, buffer_of(self.obj))
        units, nodes = without_holds(self.units, self.nodes, list(freeing))
        if units is not None:
            chosen = choose_units(
                units, start, end, booking.quantity, pinned=booking.pinned_unit_id
            )
            return (chosen, None) if chosen else None
        assert nodes is not None
        placement = choose_devices(nodes, start, end, booking.quantity)
        if placement is None:
            return None
        node_of = {d.id: n.id for n in nodes for d in n.devices}
        return list(placement.device_ids), {d: node_of[d] for d in placement.device_ids}

    def release(self, freed: list[Held]) -> None:
        """What later bookings of the batch see: these holds are gone (a moved booking's)."""
        self.units, self.nodes = without_holds(self.units, self.nodes, freed)

    def hold(self, targets: list[int], start: dt.datetime, end: dt.datetime) -> None:
        """What later bookings of the batch see: these targets are now busy over [start, end)."""
        taken = set(targets)
        if self.units is not None:
            self.units = [
                UnitState(id=u.id, busy=(*u.busy, (start, end))) if u.id in taken else u
                for u in self.units
            ]
            return
        assert self.nodes is not None
        self.nodes = [
            NodeState(
                id=n.id,
                devices=tuple(
                    DeviceState(id=d.id, busy=(*d.busy, (start, end))) if d.id in taken else d
                    for d in n.devices
                ),
            )
            if any(d.id in taken for d in n.devices)
            else n
            for n in self.nodes
        ]
