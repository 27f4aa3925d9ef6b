"""Drill: restart PostgreSQL under load (`pg_ctl restart -m fast`, then stopped for 10 s).

    python -m bench.faults.restart_postgres

While the database is away the API must answer 503 application/problem+json (never a 500 or
an HTML page) and afterwards recover by itself: nobody restarts gunicorn or the workers. A
prober also reads `GET /api/v1/pools` every 0.5 s, so a read path is seen as well as the
booking POST. Figures: what was answered during each outage, how long after PostgreSQL was back
the first booking was accepted, and the usual checks (nothing lost, nothing double-booked:
a decision that was committed just before the restart must survive it, fsync is on).
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from collections import Counter

from bench.faults.drill import ERROR_GRACE_SECONDS, Plan, main

PLAN = Plan(
    name="restart_postgres",
    title="pg_ctl restart -m fast, then PostgreSQL stopped for 10 s, under load",
)
STOPPED_SECONDS = 10


class Prober:
    """GET a read endpoint every 0.5 s; keeps (wall time, status, content type, body head)."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.seen: list[tuple[float, int, str, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        token = next(iter(self.stack.catalogue["orgs"].values()))["tokens"][0]
        while not self.stop.wait(0.5):
            conn = http.client.HTTPConnection("127.0.0.1", self.stack.web_ports[0], timeout=20)
            try:
                conn.request("GET", "/api/v1/pools", headers={"Authorization": f"Bearer {token}"})
                r = conn.getresponse()
                body = r.read()[:300].decode(errors="replace")
                self.seen.append((time.time(), r.status, r.getheader("Content-Type", ""), body))
            except (OSError, http.client.HTTPException) as exc:
                self.seen.append((time.time(), 0, "", type(exc).__name__))
            finally:
                conn.close()


def fault(stack, load, verdict) -> list[tuple[float, float]]:
    prober = Prober(stack)
    prober.thread.start()
    windows = []
    try:
        time.sleep(8)
        t0 = time.time()
        stack.pg_restart("fast")
        windows.append((t0, time.time()))
        time.sleep(10)
        t0 = time.time()
        stack.pg_stop("fast")
        time.sleep(STOPPED_SECONDS)
        stack.pg_start()
        windows.append((t0, time.time()))
        time.sleep(12)
    finally:
        prober.stop.set()
        prober.thread.join(timeout=30)
    _judge(load, prober, windows, verdict)
    return windows


def _during(t: float, windows, grace: float = ERROR_GRACE_SECONDS) -> bool:
    return any(a <= t <= b + grace for a, b in windows)


def _judge(load, prober, windows, verdict) -> None:
    for n, (a, b) in enumerate(windows, 1):
        after = [r for r in load.results if r.t0 >= b and r.http == 201]
        first = min((r.t1 for r in after), default=None)
        verdict.figures[f"round {n}: database away, s"] = round(b - a, 1)
        verdict.figures[f"round {n}: first booking accepted after it was back, s"] = (
            round(first - b, 1) if first else None
        )
        verdict.check(first is not None, f"round {n}: no booking was accepted after the restart")
    bad: Counter = Counter()
    samples: dict[str, str] = {}
    for r in load.results:
        if r.http == 201 or not _during(r.t1, windows):
            continue
        kind = f"POST /api/v1/bookings → {r.http or r.code} {r.content_type.split(';')[0] or '-'}"
        if r.http != 503 or not r.content_type.startswith("application/problem+json"):
            bad[kind] += 1
            samples.setdefault(kind, r.body[:300])
    probes: Counter = Counter()
    for t, status, ctype, body in prober.seen:
        if not _during(t, windows):
            if status != 200:
                bad[f"GET /api/v1/pools → {status} outside the outage"] += 1
            continue
        kind = f"GET /api/v1/pools → {status or body} {ctype.split(';')[0] or '-'}"
        probes[kind] += 1
        if status not in (200, 503) or (status == 503 and "problem+json" not in ctype):
            bad[kind] += 1
            samples.setdefault(kind, body[:300])
    verdict.figures["GET /api/v1/pools during the outages"] = dict(probes)
    verdict.check(
        not bad,
        "answers during the outage that are not 503 application/problem+json: "
        + "; ".join(f"{k} ×{v}, body: {samples.get(k, '')!r}" for k, v in bad.items()),
    )


if __name__ == "__main__":
    sys.exit(main(PLAN, fault))
