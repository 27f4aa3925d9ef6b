"""Planning a sync: what Slurm holds vs. what should exist → the creates, updates and deletes that
make them equal, and the foreign reservations that stand in a booking's way. Pure: no Django
model, no scontrol; plain `Reservation` values in, a `Plan` out (tested in microseconds).

Ours are the reservations whose name starts with the cluster's prefix (`tb-` by default); the
plan never touches any other reservation, it only reports those that overlap ours.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from integrations.slurm.scontrol import Reservation

# The flags we set and compare. Slurm adds others itself (SPEC_NODES when nodes are named).
MANAGED_FLAGS = frozenset({"MAINT", "IGNORE_JOBS", "OVERLAP"})


@dataclass(frozen=True)
class Action:
    """One change: `kind` create / update / recreate (delete + create: flags changed) / delete."""

    kind: str
    name: str
    desired: Reservation | None = None
    actual: Reservation | None = None
    changes: dict[str, list[str]] = field(default_factory=dict)  # field → [was, becomes]


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)  # foreign reservations over ours

    @property
    def empty(self) -> bool:
        return not self.actions


def _names(values: Iterable[str]) -> str:
    return ",".join(sorted(values))


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def differences(desired: Reservation, actual: Reservation, *, now: dt.datetime) -> dict:
    """Field → [actual, desired] for each field that differs (times to the second).

    A reservation that has begun keeps its start: Slurm refuses to move it, and a desired start
    in the past was created as "now" anyway."""
    changes: dict[str, list[str]] = {}
    started = actual.start <= now or actual.state == "ACTIVE"
    if not (started and desired.start <= now) and _second(desired.start) != _second(actual.start):
        changes["start"] = [_iso(actual.start), _iso(desired.start)]
    if _second(desired.end) != _second(actual.end):
        changes["end"] = [_iso(actual.end), _iso(desired.end)]
    for name in ("nodes", "accounts", "users"):
        want, have = getattr(desired, name), getattr(actual, name)
        if want != have:
            changes[name] = [_names(have), _names(want)]
    if desired.partition and desired.partition != actual.partition:
        changes["partition"] = [actual.partition, desired.partition]
    want_flags, have_flags = desired.flags & MANAGED_FLAGS, actual.flags & MANAGED_FLAGS
    if want_flags != have_flags:
        changes["flags"] = [_names(have_flags), _names(want_flags)]
    return changes


def _second(moment: dt.datetime) -> dt.datetime:
    return moment.replace(microsecond=0)


def plan(
    *, desired: list[Reservation], actual: list[Reservation], prefix: str, now: dt.datetime
) -> Plan:
    """The changes that make Slurm's `prefix`-named reservations equal `desired`.

    Reservations that have ended are neither created nor compared (Slurm drops them itself).
    Creates of booking reservations come before MAINT ones: Slurm lets a MAINT reservation overlap
    an existing one, not the other way round."""
    result = Plan()
    ours = {r.name: r for r in actual if r.name.startswith(prefix)}
    wanted = {r.name: r for r in desired if r.end > now}
    for name, want in sorted(wanted.items(), key=lambda kv: ("MAINT" in kv[1].flags, kv[0])):
        have = ours.get(name)
        if have is None:
            result.actions.append(Action("create", name, desired=want))
            continue
        changes = differences(want, have, now=now)
        if not changes:
            continue
        kind = "recreate" if "flags" in changes else "update"
        result.actions.append(Action(kind, name, desired=want, actual=have, changes=changes))
    for name, have in sorted(ours.items()):
        if name not in wanted and have.end > now:
            result.actions.append(Action("delete", name, actual=have))
    for other in sorted(actual, key=lambda r: r.name):
        if other.name.startswith(prefix) or other.end <= now:
            continue
        hit = sorted(
            w.name for w in wanted.values() if "MAINT" not in w.flags and w.overlaps(other)
        )
        if hit:
            result.conflicts.append(
                {
                    "reservation": other.name,
                    "nodes": _names(other.nodes & set().union(*(wanted[n].nodes for n in hit))),
                    "start": _iso(other.start),
                    "end": _iso(other.end),
                    "flags": _names(other.flags),
                    "overlaps": hit,
                }
            )
    return result
