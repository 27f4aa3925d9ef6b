"""Drill: allocation tasks delivered twice and re-delivered; nothing may change twice.

    python -m bench.faults.duplicate_delivery

While the load runs, every booking a client gets an id for has its `booking.allocate_booking`
task sent twice more with one task id (a broker delivering one message twice), and every
0.5 s `booking.allocate_shard` is sent twice (same id) for every shard: duplicates racing the
real tasks. After everything is decided the drill takes a snapshot of every booking (status,
decision time, attempts, allocation rows, ledger entries, audit entries), re-delivers all of
those tasks once more plus a sweep, waits for the queue to drain, and compares: nothing may
have changed. Only tasks the workers have registered are sent.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid

from bench.faults.drill import Plan, main

PLAN = Plan(
    name="duplicate_delivery",
    title="allocation tasks delivered twice while racing, and re-delivered after the decision",
    worker_concurrency=3,
    decide_delay_ms=50,
)
SHARDS = 4  # TESTBED_ALLOCATION_SHARDS' default (booking/services/wakeup.py)


def registered(stack) -> set[str]:
    for _attempt in range(10):
        try:
            replies = stack.celery().control.inspect(timeout=2.0).registered() or {}
        except Exception:
            replies = {}
        if replies:
            return {name.split()[0] for names in replies.values() for name in names}
        time.sleep(1)
    return set()


def snapshot(stack) -> dict[int, tuple]:
    rows = stack.sql(
        "SELECT b.id, b.status, b.decided_at, b.updated_at, b.allocation_attempts, b.over_quota, "
        "(SELECT count(*) FROM booking_allocation a WHERE a.booking_id = b.id), "
        "(SELECT count(*) FROM booking_quotaledgerentry l WHERE l.booking_id = b.id), "
        "(SELECT count(*) FROM testbed_auditentry e WHERE e.object_type = 'booking.booking' "
        " AND e.object_id = b.id::text) FROM booking_booking b"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def drain(stack, seconds: float = 90) -> bool:
    broker = stack.redis()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if broker.llen("celery") == 0 and broker.hlen("unacked") == 0:
            return True
        time.sleep(0.3)
    return False


def fault(stack, load, verdict) -> list[tuple[float, float]]:
    names = registered(stack)
    per_booking = "booking.allocate_booking" in names
    per_shard = "booking.allocate_shard" in names
    verdict.figures["tasks duplicated"] = [
        n for n, on in (("allocate_booking", per_booking), ("allocate_shard", per_shard)) if on
    ]
    verdict.check(per_booking or per_shard, f"no allocation task registered: {sorted(names)}")
    stop = threading.Event()
    sent = {"count": 0}

    def duplicator() -> None:
        seen: set[int] = set()
        while not stop.wait(0.5):
            if per_shard:
                for shard in range(SHARDS):
                    task_id = str(uuid.uuid4())
                    for _ in range(2):
                        stack.send_task("booking.allocate_shard", [shard], task_id=task_id)
                        sent["count"] += 1
            if per_booking:
                for r in load.created():
                    if r.booking_id in seen:
                        continue
                    seen.add(r.booking_id)
                    task_id = str(uuid.uuid4())
                    for _ in range(2):
                        stack.send_task("booking.allocate_booking", [r.booking_id], task_id=task_id)
                        sent["count"] += 1

    thread = threading.Thread(target=duplicator, daemon=True)
    thread.start()
    time.sleep(35)
    stop.set()
    thread.join(timeout=30)
    verdict.figures["duplicate tasks sent under load"] = sent["count"]
    return []


def redeliver(stack, load, verdict) -> None:
    """After the decisions: everything again, then nothing may have changed."""
    names = registered(stack)
    drain(stack)
    before = snapshot(stack)
    again = 0
    for booking_id in before:
        if "booking.allocate_booking" in names:
            stack.send_task("booking.allocate_booking", [booking_id])
            again += 1
    if "booking.allocate_shard" in names:
        for shard in range(SHARDS):
            for _ in range(2):
                stack.send_task("booking.allocate_shard", [shard])
                again += 1
    stack.send_task("booking.sweep_pending", [])
    drained = drain(stack)
    time.sleep(2)
    after = snapshot(stack)
    changed = [b for b in before if before[b] != after.get(b)]
    verdict.figures["tasks re-delivered after the decisions"] = again
    verdict.figures["bookings changed by re-delivery"] = len(changed)
    verdict.check(drained, "the queue did not drain after the re-delivery")
    verdict.check(
        not changed,
        "re-delivery changed bookings: "
        + "; ".join(f"{b}: {before[b]} → {after.get(b)}" for b in changed[:3]),
    )


if __name__ == "__main__":
    sys.exit(main(PLAN, fault, after=redeliver))
