"""Drill: two web instances and three workers against one database, one worker killed midway.

    python -m bench.faults.cluster

Two gunicorn instances on two ports (clients spread over both, as behind a load balancer) and
three Celery workers (prefork, concurrency 2 each) decide against one PostgreSQL; after 12 s one
worker is killed with kill -9 (its whole process group, mid-batch) and not replaced. The same
checks as every drill: all final within the bound, no double allocation, nothing lost, the
quota ledger balanced, nothing decided twice.
"""

from __future__ import annotations

import sys
import time

from bench.faults.drill import Plan, main
from bench.faults.kill_worker import busy_child

PLAN = Plan(
    name="cluster",
    title="2 web instances, 3 workers, one worker killed mid-batch",
    rate=16.0,
    clients=10,
    web_instances=2,
    workers=3,
    decide_delay_ms=100,
)


def fault(stack, load, verdict) -> list[tuple[float, float]]:
    time.sleep(12)
    child, open_tx = busy_child(stack)
    verdict.check(child is not None, "no pool child was ever inside a transaction")
    victim = next(
        (p for p in stack.worker_procs if child in stack.worker_children(p)), stack.worker_procs[0]
    )
    t0 = time.time()
    stack.kill(victim)
    verdict.figures["open transactions at the kill"] = open_tx
    verdict.figures["workers left"] = sum(1 for p in stack.worker_procs if p.popen.poll() is None)
    time.sleep(15)
    return [(t0, t0 + 1)]


if __name__ == "__main__":
    sys.exit(main(PLAN, fault))
