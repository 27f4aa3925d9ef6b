"""What must hold after every drill, read from the private database with plain SQL.

- every booking reaches a final state: none is `pending` once the wait bound has passed, and
  the longest wait (from creation, or from the end of the fault if it was created before the
  fault ended, to the decision) is at most the bound: sweep interval + sweeper period + margin;
- no double allocation: overlapping active allocations of one unit or device = 0, and in every
  moment the holding bookings of a resource ask for no more than its capacity; each holding
  booking has exactly `quantity` active allocation rows, any other booking none;
- nothing lost: every id a client got in a 201 has a row, the row is final, and a final status
  the client was told is the one in the database;
- the quota ledger balances: each holding booking holds quantity × hours on its organisation's
  grant, every other booking holds nothing, each grant's held hours are the sum of those, a
  hard grant is never below zero (a soft one may be, and then over-quota bookings are flagged);
- nothing was done twice: one `booking.allocate` audit entry and at most one hold per booking.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

HOLDING = ("awaiting_approval", "confirmed", "active", "completed")
FINAL = (
    "awaiting_approval",
    "confirmed",
    "rejected",
    "active",
    "completed",
    "cancelled",
    "no_show",
)


@dataclass
class Verdict:
    figures: dict[str, object] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, ok: bool, failure: str) -> None:
        if not ok:
            self.failures.append(failure)

    @property
    def passed(self) -> bool:
        return not self.failures


def wait_until_final(stack, bound_from: float, bound: float) -> float:
    """Poll until no booking is pending, at most until bound_from + bound (+5 s to see it
    overrun); returns when the last pending booking was gone (wall clock), or the deadline."""
    deadline = bound_from + bound + 5
    while True:
        try:
            left = stack.sql("SELECT count(*) FROM booking_booking WHERE status = 'pending'")[0][0]
        except Exception:  # the database may still be starting
            left = -1
        if left == 0 or time.time() > deadline:
            return time.time()
        time.sleep(0.5)


def _effective_start(created: float, faults: list[tuple[float, float]], decided: float) -> float:
    """When the booking's wait is counted from: its creation, or the end of a fault that was on
    while it waited and ended before it was decided."""
    start = created
    for a, b in sorted(faults):
        if start < b and a < decided and decided > b:
            start = max(start, b)
    return start


def verify(stack, load, *, faults: list[tuple[float, float]], bound: float) -> Verdict:
    v = Verdict()
    rows = stack.sql(
        "SELECT id, status, quantity, extract(epoch FROM created_at)::float8, "
        "extract(epoch FROM decided_at)::float8, "
        'extract(epoch FROM ("end" - start))::float8 / 3600, organization_id, over_quota, '
        "coalesce(equipment_type_id, 0), coalesce(pool_id, 0), rejection_code "
        "FROM booking_booking"
    )
    bookings = {r[0]: r for r in rows}
    by_status: dict[str, int] = defaultdict(int)
    rejected_by_code: dict[str, int] = defaultdict(int)
    for r in rows:
        by_status[r[1]] += 1
        if r[1] == "rejected":
            rejected_by_code[r[10] or "?"] += 1
    v.figures["bookings in database"] = len(rows)
    v.figures["by status"] = dict(sorted(by_status.items()))
    v.figures["rejected by code"] = dict(sorted(rejected_by_code.items()))

    # --- final state and waits -------------------------------------------------------------
    pending = [r[0] for r in rows if r[1] not in FINAL]
    v.check(not pending, f"{len(pending)} bookings not final: {pending[:10]}")
    waits = [r[4] - r[3] for r in rows if r[4] is not None]
    after_fault = [r[4] - _effective_start(r[3], faults, r[4]) for r in rows if r[4] is not None]
    longest = max(after_fault, default=0.0)
    v.figures["max time to final, s"] = round(max(waits, default=0.0), 1)
    v.figures["max time to final after the fault, s"] = round(longest, 1)
    v.figures["wait bound, s"] = round(bound, 1)
    v.check(longest <= bound, f"a booking waited {longest:.1f} s (bound {bound:.0f} s)")

    # --- double allocation -----------------------------------------------------------------
    for column in ("unit_id", "device_id"):
        overlaps = stack.sql(
            f"SELECT count(*) FROM booking_allocation a JOIN booking_allocation b "  # noqa: S608
            f"ON a.{column} = b.{column} AND a.id < b.id AND a.active AND b.active "
            'AND tstzrange(a.start, a."end") && tstzrange(b.start, b."end")'
        )[0][0]
        v.figures[f"overlapping active allocations ({column[:-3]})"] = overlaps
        v.check(overlaps == 0, f"{overlaps} overlapping active allocation pairs on {column}")
    capacity = {
        ("type", t): n
        for t, n in stack.sql(
            "SELECT equipment_type_id, count(*) FROM equipment_equipmentunit GROUP BY 1"
        )
    } | {
        ("pool", p): n
        for p, n in stack.sql(
            "SELECT n.pool_id, count(*) FROM equipment_device d "
            "JOIN equipment_node n ON n.id = d.node_id GROUP BY 1"
        )
    }
    events: dict[tuple[str, int], list[tuple[float, int]]] = defaultdict(list)
    for bid, start, end in stack.sql(
        'SELECT id, extract(epoch FROM start)::float8, extract(epoch FROM "end")::float8 '
        "FROM booking_booking WHERE status = ANY(%s)",
        (list(HOLDING),),
    ):
        r = bookings[bid]
        key = ("type", r[8]) if r[8] else ("pool", r[9])
        events[key] += [(start, r[2]), (end, -r[2])]
    over_capacity = 0
    for key, evs in events.items():
        level = 0
        for _t, delta in sorted(evs, key=lambda e: (e[0], e[1])):  # ends before starts
            level += delta
            if level > capacity.get(key, 0):
                over_capacity += 1
    v.figures["moments over capacity"] = over_capacity
    v.check(over_capacity == 0, f"{over_capacity} moments with more booked than capacity")
    active = dict(
        stack.sql("SELECT booking_id, count(*) FROM booking_allocation WHERE active GROUP BY 1")
    )
    wrong_rows = [
        bid for bid, r in bookings.items() if active.get(bid, 0) != (r[2] if r[1] in HOLDING else 0)
    ]
    v.check(
        not wrong_rows, f"bookings with the wrong number of active allocations: {wrong_rows[:10]}"
    )

    # --- nothing lost ----------------------------------------------------------------------
    created = load.created()
    client_ids = {s.booking_id for s in created}
    missing = sorted(client_ids - set(bookings))
    v.check(not missing, f"201 answered but no row: {missing[:10]}")
    told_wrong = [
        (s.booking_id, s.status, bookings[s.booking_id][1])
        for s in created
        if s.booking_id in bookings
        and s.status != "pending"
        and s.status != bookings[s.booking_id][1]
    ]
    v.check(not told_wrong, f"client told one status, database has another: {told_wrong[:5]}")
    orphan_ids = set(bookings) - client_ids
    orphans = len(orphan_ids)
    v.figures["rows no client got an id for"] = orphans
    if orphans:
        v.notes.append(
            f"{orphans} bookings were stored but their client got no 201 (the answer was lost "
            f"to the fault; what those requests were answered: {_orphan_answers(stack, load, orphan_ids)}); "
            "they are final like the rest. A client that retries without an Idempotency-Key books twice."
        )

    # --- quota ledger ----------------------------------------------------------------------
    grants = {
        gid: (org, Decimal(limit), enforcement)
        for gid, org, limit, enforcement in stack.sql(
            "SELECT id, organization_id, limit_hours, enforcement FROM booking_quotagrant"
        )
    }
    grant_of_org = {org: gid for gid, (org, _l, _e) in grants.items()}
    held: dict[int, Decimal] = defaultdict(Decimal)
    consumed: dict[int, Decimal] = defaultdict(Decimal)
    per_booking: dict[int, Decimal] = defaultdict(Decimal)
    holds_per_booking: dict[int, int] = defaultdict(int)
    for gid, bid, kind, hours in stack.sql(
        "SELECT grant_id, booking_id, kind, hours FROM booking_quotaledgerentry"
    ):
        if kind in ("hold", "release"):
            held[gid] += hours
            if bid is not None:
                per_booking[bid] += hours
        else:
            consumed[gid] += hours
        if kind == "hold" and bid is not None:
            holds_per_booking[bid] += 1
    bad_holds = []
    expected_held: dict[int, Decimal] = defaultdict(Decimal)
    for bid, r in bookings.items():
        want = Decimal(0)
        if r[1] in HOLDING and r[6] in grant_of_org:
            want = (Decimal(r[2]) * Decimal(str(r[5]))).quantize(Decimal("0.0001"))
            expected_held[grant_of_org[r[6]]] += want
        if per_booking.get(bid, Decimal(0)) != want:
            bad_holds.append((bid, r[1], str(per_booking.get(bid, 0)), str(want)))
    v.check(
        not bad_holds, f"bookings whose hold is wrong (id, status, held, expected): {bad_holds[:5]}"
    )
    for gid, (_org, limit, enforcement) in grants.items():
        remaining = limit - held[gid] - consumed[gid]
        v.figures[f"grant {gid} ({enforcement}) limit/held/remaining h"] = (
            f"{limit:.0f}/{held[gid]:.0f}/{remaining:.0f}"
        )
        v.check(
            held[gid] == expected_held[gid],
            f"grant {gid}: ledger holds {held[gid]} h, its holding bookings {expected_held[gid]} h",
        )
        if enforcement == "hard":
            v.check(remaining >= 0, f"hard grant {gid} overdrawn: {remaining} h")
        elif remaining < 0:
            flagged = sum(1 for r in bookings.values() if r[6] == _org and r[7])
            v.check(
                flagged > 0, f"soft grant {gid} went over ({remaining} h) but no booking is flagged"
            )

    # --- nothing twice -----------------------------------------------------------------------
    audits = dict(
        stack.sql(
            "SELECT object_id, count(*) FROM testbed_auditentry WHERE action = 'booking.allocate' "
            "AND object_type = 'booking.booking' GROUP BY 1 HAVING count(*) > 1"
        )
    )
    v.check(not audits, f"bookings decided more than once (audit): {list(audits.items())[:5]}")
    doubled = [bid for bid, n in holds_per_booking.items() if n > 1]
    v.check(not doubled, f"bookings with more than one hold: {doubled[:10]}")
    return v


def _orphan_answers(stack, load, orphan_ids: set[int]) -> dict[str, int]:
    """What the requests behind stored-but-unanswered bookings got instead of their 201, matched
    by (organisation, resource, quantity, window) against the non-201 answers."""
    rows = stack.sql(
        "SELECT b.id, o.slug, coalesce(t.code, p.code), b.quantity, "
        'extract(epoch FROM b.start)::float8, extract(epoch FROM b."end")::float8 '
        "FROM booking_booking b JOIN booking_organization o ON o.id = b.organization_id "
        "LEFT JOIN equipment_equipmenttype t ON t.id = b.equipment_type_id "
        "LEFT JOIN equipment_acceleratorpool p ON p.id = b.pool_id WHERE b.id = ANY(%s)",
        (sorted(orphan_ids),),
    )
    failed: dict[tuple, list] = defaultdict(list)
    for r in load.results:
        if r.http != 201:
            key = (r.org, r.resource, r.quantity, r.start.timestamp(), r.end.timestamp())
            failed[key].append(r)
    answers: dict[str, int] = defaultdict(int)
    for _bid, org, code, quantity, start, end in rows:
        candidates = failed.get((org, code, quantity, start, end))
        if candidates:
            r = candidates.pop(0)
            answers[f"{r.http or r.code} {r.content_type.split(';')[0] or '-'}"] += 1
        else:
            answers["unmatched"] += 1
    return dict(answers)
