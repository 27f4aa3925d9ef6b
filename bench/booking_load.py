"""What the booking benchmark sends: its two workloads and the two race drills.

The workloads are callables `load(client, n) -> (path, JSON body)` for bench/loadgen.py that
hand out bookings in a fixed order so that no run, level or case collides with another:
equipment bookings (3 per unit-hour of 4-unit types) and 1-device bookings on the big GPU pool
(440 per one-hour window, so windows half fill while clients race into them). The race drills
send more requests than fit and count winners and overlapping allocations in the database
(Django must be set up; they read booking_allocation directly: only the schema is assumed).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from bench import loadgen

SEOUL = zoneinfo.ZoneInfo("Asia/Seoul")
TYPES = 16
UNITS_PER_TYPE = 4
PER_UNIT_HOUR = 3  # equipment bookings per unit-hour slot of a type (of its 4 units)
PER_WINDOW = 440  # 1-device bookings per one-hour window of the 880-device pool


@dataclass(frozen=True)
class PoolInfo:
    code: str
    nodes: int
    devices: int
    slot_minutes: int
    max_lead_days: int


# --- workloads: the n-th booking of a case, never colliding with another case's -------------


def _body(resource: str, start: dt.datetime, minutes: int) -> bytes:
    end = start + dt.timedelta(minutes=minutes)
    return (
        f'{{"resource":"{resource}","quantity":1,"start":"{start.isoformat()}",'
        f'"end":"{end.isoformat()}","purpose":"bench"}}'
    ).encode()


class EquipmentLoad:
    """Booking n: type n % 16, its (n // 16 // 3)-th hour from 2030-02-01: three bookings per
    unit-hour of a 4-unit type, so the allocator picks among units and every one fits."""

    name = "equipment"

    def __init__(self) -> None:
        self.n = 0
        self.origin = dt.datetime(2030, 2, 1, tzinfo=SEOUL)

    def __call__(self, _client: int, _seq: int) -> tuple[str, bytes]:
        n, self.n = self.n, self.n + 1
        hour = n // TYPES // PER_UNIT_HOUR
        start = self.origin + dt.timedelta(hours=hour)
        return "/api/v1/bookings", _body(f"BENCH-{n % TYPES:02d}", start, 60)


class PoolLoad:
    """Booking n: one device for the (n // 440)-th slot from tomorrow: 440 per window of the
    880-device pool, so every window half fills while clients race into it."""

    name = "gpu pool"

    def __init__(self, pool: PoolInfo, origin: dt.datetime) -> None:
        self.n = 0
        self.pool, self.origin = pool, origin

    def __call__(self, _client: int, _seq: int) -> tuple[str, bytes]:
        n, self.n = self.n, self.n + 1
        start = self.origin + dt.timedelta(minutes=self.pool.slot_minutes * (n // PER_WINDOW))
        return "/api/v1/bookings", _body(self.pool.code, start, self.pool.slot_minutes)


def pool_origin(pool: PoolInfo) -> dt.datetime:
    """The first whole slot at least a day ahead (inside the pool's lead-time window)."""
    now = dt.datetime.now(SEOUL) + dt.timedelta(days=1)
    return now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)


def _overlapping_pairs(column: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT count(*) FROM booking_allocation a JOIN booking_allocation b
                ON a.{column} = b.{column} AND a.id < b.id AND a.active AND b.active
                AND tstzrange(a.start, a."end") && tstzrange(b.start, b."end")"""  # noqa: S608
        )
        return int(cursor.fetchone()[0])


def equipment_race(port: int, token: str, slots: int, contenders: int) -> dict:
    """`contenders` requests released together for one unit's hour, `slots` times."""
    origin = dt.datetime(2031, 1, 1, 0, tzinfo=SEOUL)
    batches = [
        [("/api/v1/bookings", _body("RACE", origin + dt.timedelta(hours=2 * s), 60))] * contenders
        for s in range(slots)
    ]
    headers = {"Authorization": f"Bearer {token}", "Prefer": "wait=20"}
    answers = loadgen.post_many("127.0.0.1", port, headers=headers, batches=batches)
    confirmed = [sum(1 for r in batch if loadgen.outcome(r) == "confirmed") for batch in answers]
    with_alternatives = sum(
        1
        for batch in answers
        for r in batch
        if r.status == 201 and (r.json().get("rejection") or {}).get("alternatives")
    )
    undecided = sum(
        1 for batch in answers for r in batch if loadgen.outcome(r) not in ("confirmed", "rejected")
    )
    return {
        "what": f"{slots} slots × {contenders} contenders on one unit",
        "slots": slots,
        "exactly_one": sum(1 for c in confirmed if c == 1),
        "extra_bookings": sum(max(0, c - 1) for c in confirmed),
        "undecided": undecided,
        "overlapping_allocation_pairs": _overlapping_pairs("unit_id"),
        "rejected_with_alternatives": with_alternatives,
    }


def pool_race(port: int, token: str, pool: PoolInfo, clients: int = 32) -> dict:
    """More 1-device requests than the pool has devices, all for one window, from `clients`
    clients at once: exactly `devices` may be confirmed."""
    start = pool_origin(pool) + dt.timedelta(days=min(80, pool.max_lead_days - 2))
    body = _body(pool.code, start, pool.slot_minutes)
    total = pool.devices + pool.devices // 10
    result = loadgen.run_closed_loop(
        "127.0.0.1",
        port,
        headers={"Authorization": f"Bearer {token}", "Prefer": "wait=20"},
        clients=clients,
        duration_s=600,
        make_request=lambda _c, _n: ("/api/v1/bookings", body),
        max_requests=total,
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM booking_allocation
               WHERE active AND device_id IS NOT NULL AND start = %s""",
            [start],
        )
        held = int(cursor.fetchone()[0])
    return {
        "what": f"{total} 1-device requests for one window of the {pool.devices}-device pool "
        f"from {clients} clients",
        "requests": total,
        "devices": pool.devices,
        "confirmed": result.confirmed,
        "rejected": result.outcomes.get("rejected", 0),
        "outcomes": dict(result.outcomes),
        "devices_held_in_window": held,
        "extra_bookings": max(0, result.confirmed - pool.devices),
        "overlapping_allocation_pairs": _overlapping_pairs("device_id"),
    }
