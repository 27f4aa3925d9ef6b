"""Telemetry ingest, samples per second: `python -m bench.telemetry_ingest [--no-write] [--batches N]`.

Builds a scratch PostgreSQL database (BENCH_DATABASE_URL with suffix _telemetry, default
testbed_bench_telemetry): a pool of 4 nodes × 8 GPUs, each node with its agent key, and bookings
holding the devices about two hours in every three, so most samples are attributed. Then:
1. through HTTP: gunicorn (gthread) on a loopback port, 2 and then 4 client threads (one per node,
   as node agents would be) each POSTing batches of 1,000 samples to /api/v1/telemetry;
   reports samples/s and batch latency (p50, p95);
2. through the service alone (`telemetry_ingest`, no HTTP or JSON), the same batch size;
3. a re-sent batch (all duplicates), the agent's retry after a lost reply.
Checks afterwards that every sample is stored exactly once and attributed where a booking held
its device. Everything runs on this machine and stops by itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/testbed_bench")
DB_URL = BASE_URL + "_telemetry"
PORT = int(os.environ.get("BENCH_TELEMETRY_PORT", "8767"))
NODES, PER_NODE = 4, 8
BATCH = 1000
READINGS_PER_BATCH = BATCH // PER_NODE  # one reading of all 8 devices every 10 s
STEP = dt.timedelta(seconds=10)
RUN_READINGS = 10_000  # readings per node reserved for each run, so runs never overlap in time
WEB_WORKERS, WEB_THREADS = 2, 4


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": DB_URL,
        "CELERY_BROKER_URL": "memory://",
        "REDIS_URL": "",
        "DJANGO_SETTINGS_MODULE": "testbed.settings",
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": os.environ.get("BENCH_SECRET_KEY", secrets.token_urlsafe(50)),
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        # Plain HTTP on loopback: production's redirect to HTTPS would answer every batch 301.
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
    }


def _prepare() -> dict[str, str]:
    import psycopg

    base, name = DB_URL.rsplit("/", 1)
    with psycopg.connect(
        base.replace("postgres://", "postgresql://") + "/postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = _env()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    return env


def _inventory(origin: dt.datetime, days: int):
    """Pool, nodes with keys, and bookings holding each node 2 h in every 3 h from `origin`."""
    from django.contrib.auth import get_user_model

    from booking.models import Allocation, Booking, Membership, Organization
    from booking.services.telemetry import node_key_create
    from equipment.models import AcceleratorPool, Center, Device, Node

    center = Center.objects.create(code="bench", name="벤치", name_en="Bench", field="compute")
    pool = AcceleratorPool.objects.create(
        code="BENCH-H100",
        name="벤치 GPU",
        name_en="Bench GPU",
        center=center,
        vendor="NVIDIA",
        accelerator="H100",
        kind="gpu",
        slot_minutes=60,
        min_minutes=60,
        max_minutes=24 * 60,
        max_lead_days=3650,
    )
    org = Organization.objects.create(
        slug="bench", name="벤치 주식회사", category="sme", region="gwangju"
    )
    user = get_user_model().objects.create_user("bench")
    Membership.objects.create(organization=org, user=user, role="member")
    nodes, keys = [], {}
    for n in range(NODES):
        node = Node.objects.create(pool=pool, hostname=f"bench-n{n:02d}")
        Device.objects.bulk_create([Device(node=node, index=i) for i in range(PER_NODE)])
        keys[node.pk] = node_key_create(node=node)
        nodes.append(node)
    allocations = []
    for node in nodes:
        devices = list(node.devices.all())
        for block in range(days * 8):
            start = origin + dt.timedelta(hours=3 * block)
            end = start + dt.timedelta(hours=2)
            booking = Booking.objects.create(
                organization=org,
                user=user,
                pool=pool,
                quantity=PER_NODE,
                start=start,
                end=end,
                status="completed",
                actual_start=start,
                actual_end=end,
            )
            allocations += [
                Allocation(booking=booking, device=d, node=node, start=start, end=end)
                for d in devices
            ]
    Allocation.objects.bulk_create(allocations)
    return nodes, keys


def _batch(origin: dt.datetime, run: int, index: int) -> list[dict]:
    first = run * RUN_READINGS + index * READINGS_PER_BATCH
    samples = []
    for k in range(READINGS_PER_BATCH):
        at = (origin + (first + k) * STEP).isoformat()
        for device in range(PER_NODE):
            utilization = float((first + k + device * 7) % 101)
            samples.append(
                {
                    "device": str(device),
                    "at": at,
                    "utilization_pct": utilization,
                    "memory_used_mb": 40_000.0 + device,
                    "power_w": 100.0 + 6 * utilization,
                    "energy_j": 1_000_000.0 + (first + k) * 4000.0,
                }
            )
    return samples


def _expected_attributed(origin: dt.datetime, run: int, batches: int) -> int:
    """Samples that fall in a booking: bookings hold [3h·b, 3h·b + 2h) from the origin."""
    count = 0
    for index in range(batches):
        first = run * RUN_READINGS + index * READINGS_PER_BATCH
        for k in range(READINGS_PER_BATCH):
            seconds = int(((first + k) * STEP).total_seconds())
            if seconds % (3 * 3600) < 2 * 3600:
                count += PER_NODE
    return count


class Web:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "testbed.wsgi",
                "-b",
                f"127.0.0.1:{PORT}",
                "-k",
                "gthread",
                "-w",
                str(WEB_WORKERS),
                "--threads",
                str(WEB_THREADS),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise SystemExit("gunicorn did not answer in 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _post(conn: http.client.HTTPConnection, key: str, body: bytes) -> dict:
    conn.request(
        "POST",
        "/api/v1/telemetry",
        body=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    response = conn.getresponse()
    payload = response.read()
    if response.status != 202:
        raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
    return json.loads(payload)


def http_run(origin, nodes, keys, *, run: int, clients: int, batches: int) -> dict:
    """`clients` threads, one per node, each POSTing `batches` pre-encoded batches over keep-alive."""
    bodies = {
        node.pk: [json.dumps({"samples": _batch(origin, run, i)}).encode() for i in range(batches)]
        for node in nodes[:clients]
    }
    latencies: list[float] = []
    replies: list[dict] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def client(node) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
        barrier.wait()
        try:
            for body in bodies[node.pk]:
                t0 = time.perf_counter()
                reply = _post(conn, keys[node.pk], body)
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    replies.append(reply)
        except BaseException as exc:  # reported after the run
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(node,)) for node in nodes[:clients]]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    samples = sum(r["accepted"] + r["duplicates"] for r in replies)
    return {
        "clients": clients,
        "batches": len(latencies),
        "samples": samples,
        "wall_s": wall,
        "per_s": samples / wall,
        "p50": _pct(latencies, 0.50),
        "p95": _pct(latencies, 0.95),
        "accepted": sum(r["accepted"] for r in replies),
        "attributed": sum(r["attributed"] for r in replies),
    }


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def service_run(origin, nodes, *, run: int, batches: int) -> dict:
    from booking.services.telemetry import telemetry_ingest

    latencies = []
    accepted = attributed = 0
    prepared = [(node, _batch(origin, run, i)) for i in range(batches) for node in nodes]
    t0 = time.perf_counter()
    for node, samples in prepared:
        t1 = time.perf_counter()
        result = telemetry_ingest(node=node, samples=samples)
        latencies.append(time.perf_counter() - t1)
        accepted += result["accepted"]
        attributed += result["attributed"]
    wall = time.perf_counter() - t0
    return {
        "batches": len(prepared),
        "samples": len(prepared) * BATCH,
        "wall_s": wall,
        "per_s": len(prepared) * BATCH / wall,
        "p50": _pct(latencies, 0.5),
        "p95": _pct(latencies, 0.95),
        "mean": statistics.mean(latencies) * 1000,
        "accepted": accepted,
        "attributed": attributed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--no-write", action="store_true", help="Print only; leave docs/benchmarks.md alone."
    )
    parser.add_argument(
        "--batches", type=int, default=25, help="Batches per client thread (default 25)."
    )
    args = parser.parse_args()
    env = _prepare()
    import django

    django.setup()
    from django.db import connection

    from booking.models import TelemetrySample

    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    origin = now - dt.timedelta(days=8)
    nodes, keys = _inventory(origin, days=7)
    connection.close()  # the web workers and this process must not share a connection

    web = Web(env)
    try:
        http_run(
            origin, nodes, keys, run=0, clients=NODES, batches=2
        )  # warm-up: imports, connections
        two = http_run(origin, nodes, keys, run=1, clients=2, batches=args.batches)
        four = http_run(origin, nodes, keys, run=2, clients=4, batches=args.batches)
        resend = http_run(origin, nodes, keys, run=2, clients=4, batches=min(5, args.batches))
    finally:
        web.stop()
    service = service_run(origin, nodes, run=3, batches=max(5, args.batches // 2))

    stored = TelemetrySample.objects.count()
    expected = BATCH * (NODES * 2 + 2 * args.batches + 4 * args.batches) + service["samples"]
    attributed_db = TelemetrySample.objects.filter(booking__isnull=False).count()
    expected_attributed = (
        NODES * _expected_attributed(origin, 0, 2)
        + 2 * _expected_attributed(origin, 1, args.batches)
        + 4 * _expected_attributed(origin, 2, args.batches)
        + NODES * _expected_attributed(origin, 3, max(5, args.batches // 2))
    )
    checks_ok = (
        stored == expected and attributed_db == expected_attributed and resend["accepted"] == 0
    )
    cpus = os.cpu_count()

    md = "\n".join(
        [
            "## Telemetry ingest",
            "",
            f"`python -m bench.telemetry_ingest`: node agents' batches of {BATCH:,} samples ({PER_NODE} GPUs × "
            f"{READINGS_PER_BATCH} readings) into `POST /api/v1/telemetry`, on a scratch PostgreSQL database with "
            f"{NODES} nodes and bookings holding the devices 2 h in every 3 h (so about two thirds are attributed). "
            f"Web: gunicorn gthread, {WEB_WORKERS} workers × {WEB_THREADS} threads, loopback; the clients share "
            f"the machine ({cpus} cores). Target: at least 5,000 samples/s.",
            "",
            "| path | clients | batches | samples | samples/s | batch p50 (ms) | batch p95 (ms) |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(
                f"| HTTP | {r['clients']} | {r['batches']} | {r['samples']:,} | **{r['per_s']:,.0f}** | "
                f"{r['p50']:.0f} | {r['p95']:.0f} |"
                for r in (two, four)
            ),
            f"| HTTP, re-sent (all duplicates) | {resend['clients']} | {resend['batches']} | {resend['samples']:,} | "
            f"{resend['per_s']:,.0f} | {resend['p50']:.0f} | {resend['p95']:.0f} |",
            f"| service only (`telemetry_ingest`) | 1 | {service['batches']} | {service['samples']:,} | "
            f"{service['per_s']:,.0f} | {service['p50']:.0f} | {service['p95']:.0f} |",
            "",
            f"Stored afterwards: {stored:,} samples (expected {expected:,}: each exactly once), {attributed_db:,} "
            f"attributed (expected {expected_attributed:,}). "
            f"{'All checks passed.' if checks_ok else '**CHECKS FAILED.**'} "
            "Per batch the server makes 5 queries: the node by key, its devices, samples already stored in the "
            "batch's span, the active allocations of its devices over the span, and one multi-row insert.",
        ]
    )
    print(md)
    if not args.no_write:
        from bench.report import write_section

        print("wrote", write_section("telemetry-ingest", md))
    return 0 if checks_ok else 1


if __name__ == "__main__":
    sys.exit(main())
