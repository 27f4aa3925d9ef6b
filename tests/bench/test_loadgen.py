"""The lean load generator against a real loopback HTTP/1.1 server: keep-alive, both body
framings, reconnects after `Connection: close`, closed-loop bookkeeping, percentiles."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from bench import loadgen


class Server:
    """A tiny HTTP/1.1 server on its own loop: answers each POST by its JSON body's `answer`
    (`confirmed` → 201 with Content-Length, `chunked` → 201 chunked, `problem` → 400
    problem+json, `close` → 201 then closes). Counts connections and requests."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while True:
            line = await reader.readline()
            if not line:
                break
            length = 0
            while (header := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = header.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length))
            self.requests += 1
            answer = body["answer"]
            if answer == "chunked":
                payload = json.dumps({"status": "rejected"}).encode()
                half = len(payload) // 2
                writer.write(
                    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
                    % (half, payload[:half], len(payload) - half, payload[half:])
                )
            elif answer == "problem":
                payload = json.dumps({"code": "lead_time", "field": "start"}).encode()
                writer.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/problem+json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                )
            else:
                payload = json.dumps({"status": "confirmed"}).encode()
                close = b"Connection: close\r\n" if answer == "close" else b""
                writer.write(
                    b"HTTP/1.1 201 Created\r\n%sContent-Length: %d\r\n\r\n%s"
                    % (close, len(payload), payload)
                )
                if answer == "close":
                    await writer.drain()
                    break
            await writer.drain()
        writer.close()

    def stop(self) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def body(answer: str) -> tuple[str, bytes]:
    return "/api/v1/bookings", json.dumps({"answer": answer}).encode()


def test_closed_loop_keeps_one_connection_per_client_and_counts_outcomes(server):
    answers = ["confirmed", "chunked", "problem"]
    result = loadgen.run_closed_loop(
        "127.0.0.1",
        server.port,
        headers={"Authorization": "Bearer x"},
        clients=4,
        duration_s=30,
        make_request=lambda client, n: body(answers[n % 3]) if n < 6 else None,
    )
    assert result.requests == 24 == server.requests
    assert server.connections == 4  # persistent: no reconnect between requests
    assert result.reconnects == 0
    assert result.outcomes == {"confirmed": 8, "rejected": 8, "http_400 lead_time": 8}
    assert result.confirmed == 8
    assert result.confirmed_per_s > 0
    assert result.client_cpu_s > 0
    assert len(result.latencies_ms) == 24 and min(result.latencies_ms) > 0


def test_max_requests_caps_the_run_across_clients(server):
    result = loadgen.run_closed_loop(
        "127.0.0.1",
        server.port,
        headers={},
        clients=8,
        duration_s=30,
        make_request=lambda client, n: body("confirmed"),
        max_requests=50,
    )
    assert result.requests == 50 == server.requests


def test_a_closed_connection_is_reopened(server):
    result = loadgen.run_closed_loop(
        "127.0.0.1",
        server.port,
        headers={},
        clients=1,
        duration_s=30,
        make_request=lambda client, n: body("close") if n < 3 else None,
    )
    assert result.outcomes == {"confirmed": 3}
    assert result.reconnects == 2
    assert server.connections == 3


def test_balance_redials_until_each_server_process_holds_its_share(server):
    """A burst of 4 connections all land on process 1; re-dialled ones land 1, 2, 1, 2, …"""
    seen: dict[int, int] = {}
    turns = iter([1, 2] * 50)

    def owners(ports: list[int]) -> dict[int, int]:
        for p in ports:
            if p not in seen:
                seen[p] = 1 if len(seen) < 4 else next(turns)
        return {p: seen[p] for p in ports}

    result = loadgen.run_closed_loop(
        "127.0.0.1",
        server.port,
        headers={},
        clients=4,
        duration_s=30,
        make_request=lambda client, n: body("confirmed") if n < 2 else None,
        balance=loadgen.Balance(owners=owners, processes=lambda: [1, 2]),
    )
    assert result.split == [2, 2]
    assert result.outcomes == {"confirmed": 8}
    assert server.connections == 4 + 4  # the burst, then two misses and two hits re-dialled


def test_post_many_sends_each_batch_together_and_keeps_order(server):
    answers = loadgen.post_many(
        "127.0.0.1",
        server.port,
        headers={},
        batches=[[body("confirmed"), body("problem")], [body("chunked")]],
    )
    assert [[loadgen.outcome(r) for r in batch] for batch in answers] == [
        ["confirmed", "http_400 lead_time"],
        ["rejected"],
    ]
    assert server.connections == 2


def test_a_refused_connection_raises_rather_than_counting_nothing():
    with pytest.raises(OSError):
        loadgen.run_closed_loop(
            "127.0.0.1",
            1,  # nothing listens on port 1
            headers={},
            clients=1,
            duration_s=1,
            make_request=lambda client, n: body("confirmed"),
        )


def test_outcome_names_status_and_problem_code():
    def response(status: int, payload: bytes) -> loadgen.Response:
        return loadgen.Response(status, {}, payload)

    assert loadgen.outcome(response(201, b'{"status": "pending"}')) == "pending"
    assert loadgen.outcome(response(201, b"not json")) == "http_201 unparsable"
    assert loadgen.outcome(response(503, b'{"code": "unavailable"}')) == "http_503 unavailable"
    assert loadgen.outcome(response(502, b"<html>bad gateway</html>")) == "http_502"


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 99, 0.0),
        ([5.0], 50, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
        ([float(i) for i in range(1, 11)], 99, 10.0),
        ([float(i) for i in range(1, 11)], 0, 1.0),
    ],
)
def test_percentile_is_nearest_rank(values, p, expected):
    assert loadgen.percentile(values, p) == expected
