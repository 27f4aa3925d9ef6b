"""A lean HTTP/1.1 load generator: asyncio streams, persistent connections, no HTTP library.

One event loop in one process drives every client, so on a 2-core machine the generator costs
a few hundred microseconds of CPU per request rather than the milliseconds a thread and a
`requests.Session` per client cost. Its own CPU time is measured (process CPU during the run)
and reported apart: it is the benchmark's cost, not the server's.

    result = run_closed_loop(host, port, clients=8, duration_s=10, make_request=...)

`make_request(client, n)` returns the (path, JSON bytes) of the next POST, or None when that
client has nothing more to send; each client sends one request at a time (a closed loop) and
the latency of each is from the first byte written to the last byte of the answer read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MakeRequest = Callable[[int, int], "tuple[str, bytes] | None"]


@dataclass
class Balance:
    """How to spread persistent connections evenly over a pre-forked server's processes.

    A server whose processes race to accept() hands a burst of new connections mostly to one
    process (gunicorn: 31 of 32), which a keep-alive client then keeps for the whole run: the
    measurement would be of one process. `owners(client_ports)` says which server process holds
    each connection (client local port → process id); `processes()` lists them all. Surplus
    connections are re-dialled until no process holds more than its share.
    """

    owners: Callable[[list[int]], dict[int, int]]
    processes: Callable[[], list[int]]
    attempts: int = 400


class HttpError(RuntimeError):
    """The server answered something this client cannot parse, or closed mid-answer."""


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def outcome(response: Response) -> str:
    """`confirmed`, `rejected`, `pending`… for a 201; `http_<code>[ <problem code>]` otherwise."""
    if response.status == 201:
        try:
            return str(response.json()["status"])
        except (ValueError, KeyError, TypeError):
            return "http_201 unparsable"
    code = ""
    if response.body.startswith(b"{"):
        try:
            code = str(response.json().get("code") or "")
        except (ValueError, AttributeError):
            code = ""
    return f"http_{response.status}" + (f" {code}" if code else "")


async def read_response(reader: asyncio.StreamReader) -> Response:
    """One HTTP/1.1 response: Content-Length or chunked bodies (what gunicorn sends)."""
    status_line = await reader.readline()
    if not status_line:
        raise HttpError("connection closed before a response")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise HttpError(f"bad status line {status_line[:80]!r}")
    status = int(parts[1])
    headers: dict[bytes, bytes] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise HttpError("connection closed inside the headers")
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)  # CRLF after each chunk
        body = b"".join(chunks)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await reader.read()  # no length: the body runs to the end of the connection
        headers[b"connection"] = b"close"
    return Response(status, headers, body)


class Connection:
    """A persistent HTTP/1.1 connection sending POSTs with fixed headers (built once)."""

    @property
    def local_port(self) -> int:
        assert self.writer is not None
        return int(self.writer.get_extra_info("sockname")[1])

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._fixed = f"Host: {host}:{port}\r\nContent-Type: application/json\r\n{fixed}".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = self.reader = None

    async def post(self, path: str, body: bytes) -> Response:
        if self.writer is None:
            await self.open()
            self.reconnects += 1
        assert self.writer is not None and self.reader is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
            % (path.encode(), self._fixed, len(body), body)
        )
        response = await read_response(self.reader)
        if response.headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return response


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of an ascending list; 0 for an empty one."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n·p/100), at least the first
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


@dataclass
class LoadResult:
    clients: int
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    client_cpu_s: float = 0.0  # this process's CPU time during the run
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    split: list[int] = field(default_factory=list)  # connections per server process (balanced)
    pending_ms: list[float] = field(default_factory=list)  # latencies of `pending` answers

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def confirmed(self) -> int:
        return self.outcomes.get("confirmed", 0)

    @property
    def confirmed_per_s(self) -> float:
        return self.confirmed / self.wall_s if self.wall_s else 0.0

    def pct(self, p: float) -> float:
        return percentile(sorted(self.latencies_ms), p)

    @property
    def client_cpu_ms_per_request(self) -> float:
        return 1000 * self.client_cpu_s / self.requests if self.requests else 0.0


async def _closed_loop(
    host: str,
    port: int,
    headers: dict[str, str],
    clients: int,
    duration_s: float,
    make_request: MakeRequest,
    max_requests: int | None,
    balance: Balance | None = None,
    around: tuple[Callable[[], None], Callable[[], None]] | None = None,
) -> LoadResult:
    result = LoadResult(clients=clients)
    connections = [Connection(host, port, headers) for _ in range(clients)]
    await asyncio.gather(*(c.open() for c in connections))  # connecting is not measured
    if balance is not None:
        result.split = await _balance(connections, balance, host, port, headers)
    issued = 0
    deadline = 0.0

    async def client(index: int) -> None:
        nonlocal issued
        conn = connections[index]
        n = 0
        while time.perf_counter() < deadline and (max_requests is None or issued < max_requests):
            request = make_request(index, n)
            if request is None:
                return
            issued += 1
            n += 1
            path, body = request
            t0 = time.perf_counter()
            try:
                response = await conn.post(path, body)
            except (OSError, HttpError, asyncio.IncompleteReadError) as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")
                result.outcomes["connection error"] += 1
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)
                await conn.close()
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            result.latencies_ms.append(elapsed)
            answer = outcome(response)
            result.outcomes[answer] += 1
            if answer == "pending":
                result.pending_ms.append(elapsed)

    if around is not None:
        around[0]()
    cpu0, t0 = time.process_time(), time.perf_counter()
    deadline = t0 + duration_s
    await asyncio.gather(*(client(i) for i in range(clients)))
    result.wall_s = time.perf_counter() - t0
    result.client_cpu_s = time.process_time() - cpu0
    if around is not None:
        around[1]()
    result.reconnects = sum(c.reconnects for c in connections)
    await asyncio.gather(*(c.close() for c in connections))
    return result


async def _balance(
    connections: list[Connection],
    balance: Balance,
    host: str,
    port: int,
    headers: dict[str, str],
) -> list[int]:
    """Re-dial connections held by over-full server processes (a fresh connect lands on
    whichever process accepts first) until each holds at most its share; the final split."""
    processes = balance.processes()
    share = -(-len(connections) // max(1, len(processes)))  # ceil

    def split() -> dict[int, list[int]]:
        owner_of = balance.owners([c.local_port for c in connections])
        held: dict[int, list[int]] = {p: [] for p in processes}
        for i, c in enumerate(connections):
            held.setdefault(owner_of.get(c.local_port, -1), []).append(i)
        return held

    await asyncio.sleep(0.05)  # the server has accepted the burst
    for _ in range(balance.attempts):
        held = split()
        over = [i for p, idx in held.items() if p != -1 for i in idx[share:]]
        under = [p for p, idx in held.items() if p != -1 and len(idx) < share]
        if not over or not under:
            break
        fresh = Connection(host, port, headers)
        await fresh.open()
        await asyncio.sleep(0.02)
        owner = balance.owners([fresh.local_port]).get(fresh.local_port)
        if owner in under:
            await connections[over[0]].close()
            connections[over[0]] = fresh
        else:
            await fresh.close()
            await asyncio.sleep(0.03)  # let the accepting process get busy elsewhere
    return sorted((len(idx) for p, idx in split().items() if p != -1), reverse=True)


def _run(coroutine: Any) -> Any:
    """asyncio.run, also from a thread whose event loop is already running (e.g. a test process
    where Playwright's sync API left one): then the coroutine runs in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def run_closed_loop(
    host: str,
    port: int,
    *,
    headers: dict[str, str],
    clients: int,
    duration_s: float,
    make_request: MakeRequest,
    max_requests: int | None = None,
    balance: Balance | None = None,
    around: tuple[Callable[[], None], Callable[[], None]] | None = None,
) -> LoadResult:
    """`clients` connections, each sending its next request as soon as the last is answered,
    until `duration_s` has passed (a request in flight then is still awaited and counted) or
    `max_requests` were sent or every client's make_request returned None. With `balance`,
    the connections are first spread evenly over the server's processes (see Balance).
    `around` = (before, after): called just before the first request and just after the last
    answer (e.g. CPU snapshots), outside the connecting and balancing."""
    return _run(
        _closed_loop(
            host, port, headers, clients, duration_s, make_request, max_requests, balance, around
        )
    )


def post_many(
    host: str,
    port: int,
    *,
    headers: dict[str, str],
    batches: Sequence[Sequence[tuple[str, bytes]]],
) -> list[list[Response]]:
    """Each batch's requests sent together, one connection each, the batch's answers awaited
    before the next batch starts (the race drills). Answers in request order."""

    async def go() -> list[list[Response]]:
        width = max((len(b) for b in batches), default=0)
        connections = [Connection(host, port, headers) for _ in range(width)]
        await asyncio.gather(*(c.open() for c in connections))
        answers = []
        for batch in batches:
            answers.append(
                list(
                    await asyncio.gather(
                        *(connections[i].post(path, body) for i, (path, body) in enumerate(batch))
                    )
                )
            )
        await asyncio.gather(*(c.close() for c in connections))
        return answers

    return _run(go())
