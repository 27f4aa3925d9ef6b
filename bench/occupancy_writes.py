"""What keeping booking_occupancy costs the writers: part of `python -m bench.availability`.

In the availability benchmark's scratch database, a pool of 4 nodes × 8 devices and batches of 32
allocation rows written the way the allocation worker writes them (one `bulk_create`, one
transaction, committed), then cancelled the way booking_cancel does (one UPDATE of `active`, one
transaction). Three ways, interleaved in rounds so the machine's load hits them alike:
- *none*: the occupancy triggers disabled (what a write costs without the table);
- *statement*: the installed statement-level triggers (transition tables, one upsert per batch);
- *row*: a FOR EACH ROW insert trigger doing the same upsert per row (the alternative measured).
The same batches are also timed inside the server alone (one PL/pgSQL loop, rolled back), which
leaves Django and the client out of the per-row figure. Afterwards the table is checked equal to a
recomputation from booking_allocation.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time

ROW_TRIGGER = """
CREATE OR REPLACE FUNCTION bench_occupancy_added_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO booking_occupancy AS o (kind, target, day, bits, odd)
    SELECT CASE WHEN NEW.unit_id IS NULL THEN 2 ELSE 1 END, coalesce(NEW.unit_id, NEW.device_id),
           p.day, p.bits, CASE WHEN p.odd IS NOT NULL THEN tstzmultirange(p.odd) END
    FROM booking_occupancy_pieces(NEW.start, NEW."end") p
    ON CONFLICT (kind, target, day) DO UPDATE
    SET bits = o.bits | excluded.bits,
        odd = CASE WHEN o.odd IS NULL THEN excluded.odd
                   WHEN excluded.odd IS NULL THEN o.odd
                   ELSE o.odd + excluded.odd END;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS bench_occupancy_insert_row ON booking_allocation;
CREATE TRIGGER bench_occupancy_insert_row AFTER INSERT ON booking_allocation
FOR EACH ROW WHEN (NEW.active) EXECUTE FUNCTION bench_occupancy_added_row();
"""
DROP_ROW_TRIGGER = """
DROP TRIGGER IF EXISTS bench_occupancy_insert_row ON booking_allocation;
DROP FUNCTION IF EXISTS bench_occupancy_added_row();
"""
# Which triggers each way has on (the others off).
WAYS = {
    "none": [],
    "statement": ["booking_occupancy_insert", "booking_occupancy_update"],
    "row": ["bench_occupancy_insert_row", "booking_occupancy_update"],
}
ALL_TRIGGERS = [
    "booking_occupancy_insert",
    "booking_occupancy_update",
    "bench_occupancy_insert_row",
]
ROUNDS = 4
BATCH = 32


def _switch(cursor, way: str) -> None:
    for name in ALL_TRIGGERS:
        state = "ENABLE" if name in WAYS[way] else "DISABLE"
        cursor.execute(f"ALTER TABLE booking_allocation {state} TRIGGER {name}")


# The same batches with no client in the way: one DO block of `n` INSERT … SELECT statements of 32
# rows each, in a transaction rolled back afterwards (deferred foreign-key checks never run, alike
# for every way). Server time per row, with and without the triggers.
SERVER_LOOP = """
DO $$
DECLARE i int;
BEGIN
    FOR i IN 0 .. {n} - 1 LOOP
        INSERT INTO booking_allocation (booking_id, device_id, node_id, start, "end", active, created_at)
        SELECT {booking}, d.id, d.node_id,
               '{start}'::timestamptz + i * interval '15 minutes',
               '{start}'::timestamptz + (i + 1) * interval '15 minutes', true, now()
        FROM equipment_device d JOIN equipment_node n ON n.id = d.node_id
        WHERE n.pool_id = {pool};
    END LOOP;
END $$
"""


def _server_loop(pool_id: int, booking_id: int, start: dt.datetime, n: int) -> float:
    """ms for `n` statements of 32 rows, run inside the server and rolled back."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        t0 = time.perf_counter()
        cursor.execute(
            SERVER_LOOP.format(
                n=int(n), booking=int(booking_id), pool=int(pool_id), start=start.isoformat()
            )
        )
        elapsed = (time.perf_counter() - t0) * 1000
        transaction.set_rollback(True)
    return elapsed


def measure_writes(batches: int, start: dt.datetime) -> dict:
    """Per way: insert and cancel times of `batches` batches of 32 rows (ms), and the check."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from booking.models import Allocation, Booking, Organization
    from equipment.models import AcceleratorPool, Center, Device, Node

    stale = AcceleratorPool.objects.filter(code="WRITE-32").first()
    if stale is not None:  # a --reuse run: the previous run's pool goes first
        Allocation.objects.filter(booking__pool=stale).delete()
        Booking.objects.filter(pool=stale).delete()
        Device.objects.filter(node__pool=stale).delete()
        Node.objects.filter(pool=stale).delete()
        stale.delete()
    center = Center.objects.get(code="bench")
    pool = AcceleratorPool.objects.create(
        code="WRITE-32",
        name="쓰기",
        name_en="Writes",
        center=center,
        vendor="NVIDIA",
        accelerator="H100",
        kind="gpu",
        slot_minutes=15,
        min_minutes=15,
    )
    devices = []
    for n in range(4):
        node = Node.objects.create(pool=pool, hostname=f"write-n{n:02d}")
        devices += Device.objects.bulk_create([Device(node=node, index=i) for i in range(8)])
    booking = Booking.objects.create(
        organization=Organization.objects.get(slug="bench"),
        user=get_user_model().objects.get(username="bench"),
        pool=pool,
        quantity=BATCH,
        start=start,
        end=start + dt.timedelta(minutes=15),
        status="confirmed",
    )
    slot = dt.timedelta(minutes=15)
    inserts: dict[str, list[float]] = {way: [] for way in WAYS}
    cancels: dict[str, list[float]] = {way: [] for way in WAYS}
    per_round = max(batches // ROUNDS, 1)
    with connection.cursor() as cursor:
        cursor.execute(ROW_TRIGGER)
    server: dict[str, list[float]] = {way: [] for way in WAYS}
    try:
        for _round in range(ROUNDS):
            for way in WAYS:
                with connection.cursor() as cursor:
                    _switch(cursor, way)
                far = start + dt.timedelta(days=3000 + 100 * _round)
                server[way].append(
                    _server_loop(pool.pk, booking.pk, far, per_round) / per_round / BATCH
                )
        moment = start + dt.timedelta(days=400)  # clear of the month the reads ask about
        for _round in range(ROUNDS):
            for way in WAYS:
                with connection.cursor() as cursor:
                    _switch(cursor, way)
                for _ in range(per_round):
                    rows = [
                        Allocation(
                            booking=booking,
                            device_id=d.pk,
                            node_id=d.node_id,
                            start=moment,
                            end=moment + slot,
                        )
                        for d in devices
                    ]
                    moment += slot
                    t0 = time.perf_counter()
                    with transaction.atomic():
                        made = Allocation.objects.bulk_create(rows)
                    inserts[way].append((time.perf_counter() - t0) * 1000)
                    t0 = time.perf_counter()
                    with transaction.atomic():
                        Allocation.objects.filter(pk__in=[a.pk for a in made]).update(active=False)
                    cancels[way].append((time.perf_counter() - t0) * 1000)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(DROP_ROW_TRIGGER)
            for name in WAYS["statement"]:
                cursor.execute(f"ALTER TABLE booking_allocation ENABLE TRIGGER {name}")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM booking_occupancy o "
            "FULL JOIN booking_occupancy_expected e USING (kind, target, day) "
            "WHERE o.bits IS DISTINCT FROM e.bits OR o.odd IS DISTINCT FROM e.odd"
        )
        (different,) = cursor.fetchone()
    return {
        "batches": per_round * ROUNDS,
        "inserts": inserts,
        "cancels": cancels,
        "server": server,
        "different": different,
    }


def markdown(result: dict) -> list[str]:
    inserts, cancels = result["inserts"], result["cancels"]
    base_i = statistics.median(inserts["none"])
    base_c = statistics.median(cancels["none"])
    lines = [
        "",
        f"### What the triggers cost the writers ({result['batches']:,} batches of {BATCH} rows per way)",
        "",
        "`bench/occupancy_writes.py`: a batch of 32 one-device allocation rows inserted as the "
        "allocation worker does (one `bulk_create`, its own committed transaction), then "
        "cancelled as `booking_cancel` does (one UPDATE of `active`); the three ways interleaved "
        f"in {ROUNDS} rounds. Times include Django building the statement and the commit.",
        "",
        "| way | insert p50 / mean | extra per row | cancel p50 / mean | extra per row |",
        "|---|---:|---:|---:|---:|",
    ]
    for way in WAYS:
        i50, c50 = statistics.median(inserts[way]), statistics.median(cancels[way])
        lines.append(
            f"| {way} | {i50:.2f} / {statistics.fmean(inserts[way]):.2f} ms "
            f"| {(i50 - base_i) / BATCH * 1000:+.0f} µs "
            f"| {c50:.2f} / {statistics.fmean(cancels[way]):.2f} ms "
            f"| {(c50 - base_c) / BATCH * 1000:+.0f} µs |"
        )
    server = {way: statistics.median(v) * 1000 for way, v in result["server"].items()}
    lines += [
        "",
        "Inside the server alone (the same batches as one PL/pgSQL loop of INSERT … SELECT, "
        f"rolled back; median of {ROUNDS} rounds), µs per row: "
        + ", ".join(
            f"{way} {us:.1f}" + (f" (+{us - server['none']:.1f})" if way != "none" else "")
            for way, us in server.items()
        )
        + ".",
        "",
        f"Afterwards booking_occupancy differed from its recomputation in {result['different']} rows.",
    ]
    return lines
