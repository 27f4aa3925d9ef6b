"""Steady booking load for the drills: a few clients on persistent HTTP connections.

Each client posts `POST /api/v1/bookings` with `Prefer: wait=5` at a fixed pace (it never
bursts to catch up after a slow answer), alternating equipment and GPU-pool requests over a
small set of hour windows, so that demand per window is above capacity and requests collide
on purpose. Every answer is kept (status, content type, booking id and status, problem code,
body head) with its wall-clock time, so the checks can match it against the database and
count what the API answered while a fault was on.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import random
import threading
import time
import zoneinfo
from collections import Counter
from dataclasses import dataclass

SEOUL = zoneinfo.ZoneInfo("Asia/Seoul")
BASE = dt.datetime(2031, 3, 3, 0, 0, tzinfo=SEOUL)
WAIT_SECONDS = 5
IDLE_CLOSE = 1.5  # seconds; gunicorn's keep-alive is 2


@dataclass
class Sent:
    client: int
    org: str
    resource: str
    quantity: int
    start: dt.datetime
    end: dt.datetime
    t0: float  # wall clock (time.time()) when sent
    t1: float  # ... and when the answer (or the error) came
    http: int  # 0: no HTTP answer (connection refused, reset, timeout)
    content_type: str
    booking_id: int | None
    status: str | None  # the booking's status in a 201
    code: str | None  # problem code of an error, or the rejection code of a 201
    body: str  # head of a non-201 body


def expected_requests(rate: float, seconds: float) -> int:
    return max(20, int(rate * seconds))


def demand_hours(rate: float, seconds: float) -> float:
    """Unit-hours the load will ask for (to size the quota grants): ~2 per request."""
    return 2.0 * expected_requests(rate, seconds)


class Load:
    def __init__(
        self,
        stack,
        *,
        clients: int = 4,
        rate: float = 12.0,
        seconds: float = 40.0,
        seed: int = 7,
    ) -> None:
        self.stack = stack
        self.clients = clients
        self.rate = rate
        self.results: list[Sent] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.running = threading.Event()  # cleared by pause(): clients hold their next request
        self.running.set()
        self.threads: list[threading.Thread] = []
        self.random = random.Random(seed)
        total = expected_requests(rate, seconds)
        per_type = total / 2 / max(1, len(stack.catalogue["equipment"]))
        # ~3 requests per equipment window (2 units) and ~6 per pool window (12 devices, ×1/2/4).
        self.eq_windows = max(4, int(per_type / 3))
        self.pool_windows = max(4, int(total / 2 / 6))
        self.started_at = 0.0

    # --- what each request asks for -------------------------------------------------------------
    def _request(self, rng: random.Random) -> tuple[str, int, dt.datetime, dt.datetime]:
        hours = 2 if rng.random() < 0.2 else 1
        if rng.random() < 0.5:
            resource = rng.choice(sorted(self.stack.catalogue["equipment"]))
            start = BASE + dt.timedelta(hours=rng.randrange(self.eq_windows))
            quantity = 1
        else:
            resource = self.stack.catalogue["pool"]
            start = BASE + dt.timedelta(hours=rng.randrange(self.pool_windows))
            quantity = rng.choice((1, 1, 2, 4))
        return resource, quantity, start, start + dt.timedelta(hours=hours)

    # --- clients ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.time()
        orgs = sorted(self.stack.catalogue["orgs"])
        for i in range(self.clients):
            org = orgs[i % len(orgs)]
            tokens = self.stack.catalogue["orgs"][org]["tokens"]
            token = tokens[(i // len(orgs)) % len(tokens)]
            port = self.stack.web_ports[i % len(self.stack.web_ports)]
            rng = random.Random(self.random.random())
            thread = threading.Thread(
                target=self._client, args=(i, org, token, port, rng), daemon=True
            )
            self.threads.append(thread)
            thread.start()

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()

    def stop(self) -> None:
        self.stopping.set()
        self.running.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _client(self, index: int, org: str, token: str, port: int, rng: random.Random) -> None:
        interval = self.clients / self.rate
        conn: list[http.client.HTTPConnection | None] = [None]
        next_at = time.monotonic() + rng.uniform(0, interval)
        while not self.stopping.is_set():
            pause = next_at - time.monotonic()
            if pause > 0 and self.stopping.wait(pause):
                break
            if not self.running.is_set():
                self.running.wait()
                next_at = time.monotonic()
                continue
            next_at = max(next_at + interval, time.monotonic())
            self._post(conn, index, org, token, port, self._request(rng), WAIT_SECONDS)

    def burst(self, count: int, *, wait: int = 0) -> list[Sent]:
        """`count` requests in a row from one extra client (organisation A), outside the pace."""
        org = sorted(self.stack.catalogue["orgs"])[0]
        token = self.stack.catalogue["orgs"][org]["tokens"][0]
        conn: list[http.client.HTTPConnection | None] = [None]
        rng = random.Random(self.random.random())
        out = [
            self._post(conn, -1, org, token, self.stack.web_ports[0], self._request(rng), wait)
            for _ in range(count)
        ]
        if conn[0] is not None:
            conn[0].close()
        return out

    def _post(self, conn, index: int, org: str, token: str, port: int, what, wait: int) -> Sent:
        """One POST on the client's persistent connection (conn[0], reopened when broken)."""
        resource, quantity, start, end = what
        body = {
            "resource": resource,
            "quantity": quantity,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "purpose": "fault drill",
        }
        t0 = time.time()
        if conn[0] is not None and time.monotonic() - getattr(conn[0], "used_at", 0) > IDLE_CLOSE:
            conn[0].close()  # gunicorn drops keep-alive connections idle for 2 s: start afresh
            conn[0] = None
        if conn[0] is None:
            conn[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_SECONDS + 25)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if wait:
            headers["Prefer"] = f"wait={wait}"
        try:
            conn[0].request("POST", "/api/v1/bookings", body=json.dumps(body), headers=headers)
            response = conn[0].getresponse()
            raw = response.read()
            conn[0].used_at = time.monotonic()  # type: ignore[attr-defined]
            status_code = response.status
            content_type = response.getheader("Content-Type", "")
            if response.getheader("Connection", "").lower() == "close":
                conn[0].close()
                conn[0] = None
        except (OSError, http.client.HTTPException) as exc:
            conn[0].close()
            conn[0] = None
            return self._keep(
                Sent(index, org, resource, quantity, start, end, t0, time.time(), 0, "",
                     None, None, type(exc).__name__, str(exc)[:200])
            )  # fmt: skip
        booking_id = status = code = None
        text = raw[:400].decode(errors="replace")
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict):
            if status_code == 201:
                booking_id, status = data.get("id"), data.get("status")
                code = (data.get("rejection") or {}).get("code")
            else:
                code = data.get("code")
        return self._keep(
            Sent(index, org, resource, quantity, start, end, t0, time.time(), status_code,
                 content_type, booking_id, status, code, "" if status_code == 201 else text)
        )  # fmt: skip

    def _keep(self, sent: Sent) -> Sent:
        with self.lock:
            self.results.append(sent)
        return sent

    # --- figures ---------------------------------------------------------------------------------
    def count(self) -> int:
        with self.lock:
            return len(self.results)

    def created(self) -> list[Sent]:
        return [r for r in self.results if r.http == 201 and r.booking_id]

    def errors(self, faults: list[tuple[float, float]], grace: float) -> dict[str, Counter]:
        """Non-201 answers, split by whether they came during a fault (+ grace after it)."""
        during: Counter = Counter()
        outside: Counter = Counter()
        for r in self.results:
            if r.http == 201:
                continue
            key = f"{r.http or r.code} {r.content_type.split(';')[0] or '-'}"
            if r.http and r.http < 500 and r.code:
                key += f" code={r.code}"
            hit = any(a <= r.t1 and r.t0 <= b + grace for a, b in faults)
            (during if hit else outside)[key] += 1
        return {"during": during, "outside": outside}

    def outcomes(self) -> Counter:
        """201 answers by the status they carried (rejections by code)."""
        out: Counter = Counter()
        for r in self.created():
            out[f"rejected:{r.code}" if r.status == "rejected" else str(r.status)] += 1
        return out

    def latency(self) -> dict[str, float]:
        """Request-to-answer seconds of the 201 answers: p50, p99, max."""
        times = sorted(r.t1 - r.t0 for r in self.created())
        if not times:
            return {}
        return {
            "p50": round(times[len(times) // 2], 2),
            "p99": round(times[min(len(times) - 1, int(0.99 * len(times)))], 2),
            "max": round(times[-1], 2),
        }

    def samples(self, predicate, limit: int = 3) -> list[Sent]:
        return [r for r in self.results if predicate(r)][:limit]
