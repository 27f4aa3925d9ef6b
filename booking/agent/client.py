"""The agent's side of the conversation: sending batches to `POST /api/v1/telemetry`, and the loop.

Loop: read every device → append to the spool → send up to `batch` oldest queued samples →
delete them only after a 2xx → sleep until the next reading. When the server cannot be reached
(or answers 5xx, 401, 429), the samples stay queued and sending backs off exponentially (up to
`max_backoff`), while reading goes on at the same interval. Only the standard library is used,
so the agent runs on a compute node with nothing but Python and nvidia-ml-py.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from booking.agent.sampler import Sampler
from booking.agent.spool import Spool

logger = logging.getLogger(__name__)

USER_AGENT = "testbed-agent/1"
ENDPOINT = "/api/v1/telemetry"
_INDEXED_ERROR = re.compile(r"^samples\.(\d+)\.")


class SendFailed(Exception):
    """The batch did not get through and may succeed later (network, 5xx, 401, 429): keep it."""


class BatchRefused(Exception):
    """The server refused the batch as invalid (400, 413): sending it again would fail again."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body.get('detail') or body}")

    def bad_indexes(self) -> set[int]:
        """Positions in the batch the server named (errors are keyed `samples.<i>.<field>`)."""
        errors = self.body.get("errors") or {}
        return {int(m.group(1)) for key in errors if (m := _INDEXED_ERROR.match(str(key)))}


class TelemetryClient:
    def __init__(self, server: str, key: str, *, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise ValueError(
                f"--server must be an http(s) URL such as https://testbed.example.kr, not {server!r}"
            )
        if not key.startswith("tbn_"):
            raise ValueError(
                "--key must be a node key (tbn_…) from `manage.py node_key <hostname>`"
            )
        path = parsed.path.rstrip("/")
        self.url = urllib.parse.urlunsplit(
            (
                parsed.scheme,
                parsed.netloc,
                path if path.endswith(ENDPOINT) else path + ENDPOINT,
                "",
                "",
            )
        )
        self.key = key
        self.timeout = timeout

    def send(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        body = json.dumps({"samples": samples}, separators=(",", ":")).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s) above
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Authorization": f"Bearer {self.key}",
                "User-Agent": USER_AGENT,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return _json(response.read())
        except urllib.error.HTTPError as exc:
            payload = _json(exc.read())
            if exc.code in {400, 413, 422}:
                raise BatchRefused(exc.code, payload) from None
            raise SendFailed(f"HTTP {exc.code}: {payload.get('detail') or exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise SendFailed(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"detail": raw[:200].decode(errors="replace")}
    return value if isinstance(value, dict) else {"detail": value}


@dataclass
class FlushResult:
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    left: int = 0
    error: str | None = None
    replies: list[dict[str, Any]] = field(default_factory=list)


class Agent:
    """Read, queue, send. Safe to stop at any moment: whatever is read is on disk first."""

    def __init__(
        self,
        *,
        sampler: Sampler,
        spool: Spool,
        client: TelemetryClient,
        interval: float = 10.0,
        batch: int = 1000,
        max_backoff: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if not 1 <= batch <= 10_000:
            raise ValueError("batch is 1 to 10,000 samples")
        self.sampler = sampler
        self.spool = spool
        self.client = client
        self.interval = interval
        self.batch = batch
        self.max_backoff = max_backoff
        self.monotonic = monotonic
        self.failures = 0
        self.retry_at = 0.0

    def read(self) -> int:
        """One reading of every device, appended to the spool."""
        try:
            samples = self.sampler.sample()
        except Exception:  # a sampler hiccup must not stop the agent; the next reading may work
            logger.exception("reading the devices failed")
            return 0
        return self.spool.append(samples)

    def flush(self, *, budget: float | None = None, ignore_backoff: bool = False) -> FlushResult:
        """Send queued samples, oldest first, until the queue is empty, a send fails, or `budget` s pass."""
        result = FlushResult()
        if not ignore_backoff and self.monotonic() < self.retry_at:
            result.left = self.spool.count()
            result.error = "backing off"
            return result
        started = self.monotonic()
        while True:
            rows = self.spool.oldest(self.batch)
            if not rows:
                break
            ids = [row_id for row_id, _payload in rows]
            try:
                reply = self.client.send([payload for _id, payload in rows])
            except BatchRefused as exc:
                if (
                    exc.status == 413 and self.batch > 1
                ):  # a proxy's body limit: smaller batches get through
                    self.batch = max(1, self.batch // 2)
                    logger.warning(
                        "server said the batch is too large; sending %d at a time", self.batch
                    )
                    continue
                bad = exc.bad_indexes()
                refused = [ids[i] for i in sorted(bad) if i < len(ids)] or ids
                # Only what the server named is set aside; the rest goes again on the next round.
                self.spool.reject(refused, reason=str(exc))
                result.rejected += len(refused)
                logger.error(
                    "server refused %d sample(s), kept in the spool's rejected table: %s",
                    len(refused),
                    exc,
                )
                continue
            except SendFailed as exc:
                self.failures += 1
                delay = min(self.max_backoff, self.interval * 2 ** min(self.failures - 1, 16))
                self.retry_at = self.monotonic() + delay * random.uniform(0.8, 1.2)
                result.error = str(exc)
                logger.warning(
                    "sending failed (%s); %d queued, next try in %.0f s",
                    exc,
                    self.spool.count(),
                    delay,
                )
                break
            self.spool.delete(ids)
            self.failures = 0
            self.retry_at = 0.0
            result.sent += int(reply.get("accepted", 0))
            result.duplicates += int(reply.get("duplicates", 0))
            result.replies.append(reply)
            if budget is not None and self.monotonic() - started > budget:
                break
        result.left = self.spool.count()
        return result

    def run_once(self) -> FlushResult:
        """Read once and send everything queued (backoff ignored): for cron, tests and a first check."""
        self.read()
        return self.flush(ignore_backoff=True)

    def run_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        next_read = self.monotonic()
        while not stop.is_set():
            self.read()
            next_read += self.interval
            self.flush(budget=self.interval * 0.8)
            now = self.monotonic()
            if (
                next_read < now
            ):  # fell behind (a long send): read again at once, keep the cadence after
                next_read = now
            stop.wait(max(0.0, next_read - now))

    def close(self) -> None:
        self.sampler.close()
        self.spool.close()
