"""Drill: a worker dies (kill -9) while its task holds a shard's coalescing flag.

    python -m bench.faults.flag_holder_dies

The web queues `booking.allocate_shard(s)` only when it wins `SET testbed:alloc:flag:<s> NX`
(booking/services/wakeup.py); the task deletes the flag when its shard has nothing pending. A
task that dies holding the flag wakes nobody, and until the flag expires (its TTL,
TESTBED_ALLOCATION_FLAG_TTL, here 10 s) every web process loses the SET and queues nothing. With
TESTBED_DECIDE_DELAY_MS at 1 s the drill waits until a flag is set and a pool child is inside a
decision transaction, then kills the worker's whole process group and starts a new worker at
once. Round 1 keeps the load on; round 2 pauses it right after the kill, so only the pending
sweep can wake anyone. Every booking must still be decided within sweep interval + flag TTL
(+ the sweeper's period and the usual margin).
"""

from __future__ import annotations

import sys
import time

from bench.faults.drill import Plan, main, wait_workers
from bench.faults.duplicate_delivery import registered
from bench.faults.kill_worker import busy_child, pending

FLAG_TTL = 10
PLAN = Plan(
    name="flag_holder_dies",
    title="kill -9 the worker whose task holds a shard's coalescing flag",
    worker_concurrency=1,
    decide_delay_ms=1000,
    flag_ttl_seconds=FLAG_TTL,
    extra_bound=FLAG_TTL,
)


def flags(stack) -> dict[str, int]:
    """Flag keys in any database of the private Redis → seconds they still live."""
    out: dict[str, int] = {}
    for db in range(16):
        client = stack.redis()
        client.execute_command("SELECT", db)
        for key in client.scan_iter(match="testbed:alloc:flag:*", count=100):
            out[f"db{db}:{key.decode()}"] = int(client.ttl(key))
    return out


def kill_holder(stack, verdict, label: str) -> tuple[float, dict[str, int]]:
    """Wait for a flag and a child in a transaction; kill the worker; start a new one."""
    deadline = time.monotonic() + 20
    held: dict[str, int] = {}
    child = None
    while time.monotonic() < deadline:
        held = flags(stack)
        child, _open = busy_child(stack, 0.5)
        if held and child is not None:
            break
    verdict.check(bool(held), f"{label}: no coalescing flag was ever set")
    verdict.check(child is not None, f"{label}: no pool child was ever inside a transaction")
    victim = stack.live_worker()
    t0 = time.time()
    stack.kill(victim)
    verdict.figures[f"{label}: flags held at the kill (key: TTL s)"] = held
    stack.worker_start()
    return t0, held


def fault(stack, load, verdict) -> list[tuple[float, float]]:
    verdict.check(
        "booking.allocate_shard" in registered(stack), "the worker has no booking.allocate_shard"
    )
    windows = []
    time.sleep(8)
    t0, _held = kill_holder(stack, verdict, "round 1 (under load)")
    wait_workers(stack, 1)
    windows.append((t0, t0))  # the bound counts from the kill: the flag outlives the worker
    time.sleep(FLAG_TTL + 8)
    t0, _held = kill_holder(stack, verdict, "round 2 (load paused)")
    load.pause()
    wait_workers(stack, 1)
    stuck = pending(stack)
    deadline = time.monotonic() + 60
    while pending(stack) and time.monotonic() < deadline:
        time.sleep(0.2)
    verdict.figures["round 2: bookings pending after the kill"] = stuck
    verdict.figures["round 2: all decided after the kill, s"] = round(time.time() - t0, 1)
    verdict.figures["round 2: flags left"] = flags(stack)
    windows.append((t0, t0))
    load.resume()
    time.sleep(6)
    return windows


if __name__ == "__main__":
    sys.exit(main(PLAN, fault))
