"""Drill: kill -9 a Celery worker mid-batch (a pool child, then the whole worker), start a new one.

    python -m bench.faults.kill_worker

TESTBED_DECIDE_DELAY_MS keeps each decision transaction open 300 ms, so a batch is in flight
when the kill lands (the drill waits until a pool child holds an open transaction and kills that
one). Round 1 kills that pool child: the main process replaces it and, with
task_reject_on_worker_lost, the message goes back to the queue. Round 2 kills the worker's
whole process group (main process and children, as when a container dies): its unacknowledged
messages stay invisible in Redis, the sweeper must re-queue their bookings; a new worker starts.
Round 3 does the same with the load paused, so the killed batch is the last work there is: no
later task's batch can pick its bookings up, only the sweeper can (its delay is reported).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from bench.faults.drill import Plan, main, wait_workers

PLAN = Plan(
    name="kill_worker",
    title="kill -9 a worker's pool child, then a whole worker, mid-batch",
    decide_delay_ms=300,
)


def busy_child(stack, seconds: float = 15.0) -> tuple[int | None, int]:
    """A pool child that holds an open transaction (waits for one), and how many are open."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        busy = stack.busy_worker_children()
        if busy:
            return next(iter(busy)), len(stack.in_flight_transactions())
        time.sleep(0.05)
    return None, len(stack.in_flight_transactions())


def fault(stack, load, verdict) -> list[tuple[float, float]]:
    windows = []
    time.sleep(8)
    child, open_tx = busy_child(stack)
    verdict.check(child is not None, "round 1: no pool child was ever inside a transaction")
    t0 = time.time()
    if child is not None:
        os.kill(child, signal.SIGKILL)
    verdict.figures["round 1: open transactions at the kill"] = open_tx
    windows.append((t0, wait_workers(stack, 1)))
    time.sleep(8)
    victim = stack.live_worker()
    child, open_tx = busy_child(stack)
    verdict.check(child is not None, "round 2: no pool child was ever inside a transaction")
    t0 = time.time()
    stack.kill(victim)
    verdict.figures["round 2: open transactions at the kill"] = open_tx
    time.sleep(2)  # nobody consumes meanwhile: bookings queue up and the killed one's are stuck
    stack.worker_start()
    windows.append((t0, wait_workers(stack, 1)))
    time.sleep(8)
    windows.append(quiet_kill(stack, load, verdict))
    time.sleep(6)
    return windows


def pending(stack) -> int:
    return stack.sql("SELECT count(*) FROM booking_booking WHERE status = 'pending'")[0][0]


def quiet_kill(stack, load, verdict) -> tuple[float, float]:
    """Round 3: pause the load, queue a few bookings, kill the worker deciding them, start one."""
    load.pause()
    deadline = time.monotonic() + 20
    while pending(stack) and time.monotonic() < deadline:
        time.sleep(0.2)
    victim = stack.live_worker()
    child = None
    for _attempt in range(3):
        load.burst(3)
        child, _open = busy_child(stack, 5)
        if child is not None:
            break
    verdict.check(child is not None, "round 3: the burst's batch was never caught in flight")
    t0 = time.time()
    stack.kill(victim)
    broker = stack.redis()
    lost = pending(stack)
    verdict.figures["round 3 (load paused): bookings in the killed batch"] = lost
    verdict.figures["round 3: messages left unacknowledged / queued"] = (
        f"{broker.hlen('unacked')}/{broker.llen('celery')}"
    )
    stack.worker_start()
    ready = wait_workers(stack, 1)
    deadline = time.monotonic() + 60
    while pending(stack) and time.monotonic() < deadline:
        time.sleep(0.2)
    verdict.figures["round 3: decided again after the kill, s"] = round(time.time() - t0, 1)
    verdict.check(lost > 0, "round 3: the kill left nothing pending (nothing for the sweeper)")
    load.resume()
    return (t0, ready)


if __name__ == "__main__":
    sys.exit(main(PLAN, fault))
