"""Drill: stop and start the (private) Redis under load, gracefully and with kill -9.

    python -m bench.faults.restart_redis

Redis carries Celery's messages, the cache and the decision channel. Round 1 stops it with
SIGTERM (it writes its append-only file, as `docker compose restart redis` would) and starts it
again after 5 s on the same directory; round 2 kills it with SIGKILL (the last second of the
append-only file may be lost) and starts it after 5 s. Meanwhile bookings are still accepted
(their allocation task cannot be queued: the sweeper re-queues them once Redis is back) and
the workers must reconnect by themselves. The fault ends when every worker answers a ping.
"""

from __future__ import annotations

import sys
import time

from bench.faults.drill import Plan, main, wait_workers

PLAN = Plan(name="restart_redis", title="stop and start Redis under load (SIGTERM, then SIGKILL)")
DOWN_SECONDS = 5


def fault(stack, load, verdict) -> list[tuple[float, float]]:
    windows = []
    time.sleep(8)
    for round_no, hard in ((1, False), (2, True)):
        t0 = time.time()
        stack.redis_stop(hard=hard)
        time.sleep(DOWN_SECONDS)
        stack.redis_start()
        back = time.time()
        ready = wait_workers(stack, stack.live_workers())
        verdict.figures[f"round {round_no}: workers consuming again after Redis was back, s"] = (
            round(ready - back, 1)
        )
        windows.append((t0, ready))
        time.sleep(10)
    return windows


if __name__ == "__main__":
    sys.exit(main(PLAN, fault))
