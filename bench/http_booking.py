"""Bookings per second through HTTP as users feel them, with real Celery workers deciding.

    python -m bench.http_booking [--quick] [--no-write]

Starts gunicorn (gthread, 2 processes × 16 threads, as the Dockerfile and docker-compose.yml
deploy it) and a Celery worker (prefork, concurrency 2) on Redis against a scratch PostgreSQL
database (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/testbed_bench; Redis
BENCH_REDIS_URL; port BENCH_PORT), loads the real catalogue (seeds/) plus a bench inventory,
then, with a lean asyncio load generator (bench/loadgen.py) whose own CPU is counted apart and
which spreads its keep-alive connections evenly over the gunicorn processes:
1. two cases (bench/booking_load.py) at 1, 8 and 32 clients, each client sending
   `POST /api/v1/bookings` with `Prefer: wait=10` in a closed loop for a fixed time:
   (a) equipment bookings (16 types × 4
   units, 3 bookings per unit-hour), (b) 1-device bookings on NAIDC-H100 (110 nodes × 8 GPUs,
   its seeded policy), 440 per one-hour window so windows half fill and the allocator searches;
   throughput (confirmed/s), p50/p95/p99 from send to decision received, outcome counts, and
   CPU per booking of each process (bench/procstats.py);
2. race drills: 30 slots × 32 contenders on one unit, and 968 1-device requests from 32 clients
   for one window of the 880-device pool; counts winners and overlapping allocations in the DB;
3. RSS of every web and worker process after the runs; the CPU floor of one Celery hop;
4. PostgreSQL's own rate (bench/pgbench_excl.py: one-row inserts under the same exclusion
   constraint) at 8 and 32 clients, and our share of it.
bench/http_booking_report.py writes it up (docs/benchmarks.md) with each figure against the
issue's target and what limits it. Everything runs on this machine and stops by itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import loadgen
from bench.booking_load import (
    SEOUL,
    TYPES,
    UNITS_PER_TYPE,
    EquipmentLoad,
    PoolInfo,
    PoolLoad,
    equipment_race,
    pool_origin,
    pool_race,
)
from bench.procstats import (
    CpuMeter,
    owners_of_client_ports,
    server_processes,
    tree_rss,
)

ROOT = Path(__file__).resolve().parent.parent
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/testbed_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
PORT = int(os.environ.get("BENCH_PORT", "8765"))
CELERY_POOL = os.environ.get("BENCH_CELERY_POOL", "prefork")
FIGURES = ROOT / "var" / "bench" / "http_booking.json"
POOL_CODE = "NAIDC-H100"
WAIT_S = 10
LEVELS = (1, 8, 32)
SECONDS = {1: 10.0, 8: 15.0, 32: 20.0}
QUICK_SECONDS = {1: 3.0, 8: 4.0, 32: 5.0}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=DB_URL,
        REDIS_URL=REDIS_URL,
        CELERY_BROKER_URL=REDIS_URL,
        # Production settings (DEBUG off: no query logging), as docker compose runs them.
        DEBUG="0",
        SECRET_KEY="bench-only-secret-key-0123456789abcdefghijklmnop",  # noqa: S106
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        SECURE_SSL_REDIRECT="0",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="testbed.settings",
    )
    return env


def _recreate_database() -> None:
    import psycopg

    base, name = DB_URL.rsplit("/", 1)
    with psycopg.connect(
        base.replace("postgres://", "postgresql://") + "/postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=_env(), check=True
    )


def _setup_catalogue() -> str:
    """Bench inventory: TYPES equipment types × UNITS_PER_TYPE units, one contested unit, a token."""
    import django

    os.environ.update(_env())
    django.setup()
    from django.contrib.auth import get_user_model

    from booking.models import Membership, Organization
    from equipment.models import Center, EquipmentType, EquipmentUnit
    from testbed.api.auth import token_for

    center = Center.objects.create(code="bench", name="벤치", name_en="Bench", field="healthcare")
    common = dict(
        center=center,
        field="healthcare",
        slot_minutes=60,
        min_minutes=60,
        max_minutes=240,
        max_lead_days=3650,
        buffer_minutes=0,
        hourly_rate=1000,
    )
    for i in range(TYPES):
        t = EquipmentType.objects.create(
            code=f"BENCH-{i:02d}", name=f"벤치 {i}", name_en=f"Bench {i}", **common
        )
        EquipmentUnit.objects.bulk_create(
            [
                EquipmentUnit(equipment_type=t, code=f"BENCH-{i:02d}-{u}")
                for u in range(UNITS_PER_TYPE)
            ]
        )
    contested = EquipmentType.objects.create(
        code="RACE", name="경합", name_en="Contested", **common
    )
    EquipmentUnit.objects.create(equipment_type=contested, code="RACE-01")
    org = Organization.objects.create(
        slug="bench", name="벤치 주식회사", category="sme", region="gwangju"
    )
    user = get_user_model().objects.create_user("bench", password="bench-pass-2026")  # noqa: S106
    Membership.objects.create(organization=org, user=user, role="member")
    return token_for(user)


def _setup_pool() -> PoolInfo:
    """The real catalogue from seeds/ (NAIDC-H100 with its real 110 × 8 shape and policy)."""
    from seeds.loader import load_catalogue

    load_catalogue()
    from equipment.models import AcceleratorPool, Device, Node

    pool = AcceleratorPool.objects.get(code=POOL_CODE)
    return PoolInfo(
        code=pool.code,
        nodes=Node.objects.filter(pool=pool).count(),
        devices=Device.objects.filter(node__pool=pool).count(),
        slot_minutes=pool.slot_minutes,
        max_lead_days=pool.max_lead_days,
    )


class Servers:
    def __init__(self, *, web_workers: int, web_threads: int, celery_concurrency: int) -> None:
        env = _env()
        gunicorn = [sys.executable, "-m", "gunicorn", "testbed.wsgi", "-b", f"127.0.0.1:{PORT}"]
        gunicorn += ["-k", "gthread", "-w", str(web_workers), "--threads", str(web_threads)]
        gunicorn += ["--timeout", "120", "--limit-request-line", "8190", "--log-level", "warning"]
        celery = [sys.executable, "-m", "celery", "-A", "testbed", "worker", "-l", "warning"]
        celery += ["-P", CELERY_POOL, "-c", str(celery_concurrency)]
        celery += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.web = subprocess.Popen(gunicorn, cwd=ROOT, env=env)
        self.worker = subprocess.Popen(celery, cwd=ROOT, env=env)
        self.procs = [self.web, self.worker]

    def wait_ready(self, token: str) -> None:
        import requests

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{PORT}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        else:
            raise SystemExit("gunicorn did not become healthy in 60 s")
        # One booking end to end proves the worker is consuming.
        start = dt.datetime(2030, 1, 1, 0, tzinfo=SEOUL)
        result = book(
            requests.Session(), token, "BENCH-00", start, start + dt.timedelta(hours=1), wait=30
        )
        if result[0] != "confirmed":
            raise SystemExit(f"warm-up booking was not confirmed: {result}")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def book(
    session, token: str, resource: str, start: dt.datetime, end: dt.datetime, *, wait: float = 10
):
    """(status, seconds from send to decision), with `requests` (start-up checks, other drills)."""
    t0 = time.perf_counter()
    response = session.post(
        f"http://127.0.0.1:{PORT}/api/v1/bookings",
        json={
            "resource": resource,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "purpose": "bench",
        },
        headers={"Authorization": f"Bearer {token}", "Prefer": f"wait={wait}"},
        timeout=wait + 20,
    )
    elapsed = time.perf_counter() - t0
    if response.status_code != 201:
        return f"http_{response.status_code}", elapsed
    return response.json()["status"], elapsed


@dataclass
class Level:
    result: loadgen.LoadResult
    cpu_s: dict[str, float]  # CPU seconds per role during the run
    machine_s: float  # the whole machine's busy CPU seconds during the run
    connections: list[int]  # clients' connections held by each web process (balanced)

    def summary(self) -> dict:
        r = self.result
        booked = max(1, r.confirmed)
        return {
            "clients": r.clients,
            "requests": r.requests,
            "confirmed": r.confirmed,
            "wall_s": round(r.wall_s, 3),
            "confirmed_per_s": round(r.confirmed_per_s, 1),
            "p50_ms": round(r.pct(50), 1),
            "p95_ms": round(r.pct(95), 1),
            "p99_ms": round(r.pct(99), 1),
            "mean_ms": round(sum(r.latencies_ms) / max(1, r.requests), 1),
            "outcomes": dict(r.outcomes),
            "errors": r.errors[:5],
            "pending_ms": _ends(r.pending_ms),
            "reconnects": r.reconnects,
            "client_cpu_ms_per_request": round(r.client_cpu_ms_per_request, 3),
            "cpu_ms_per_booking": {
                role: round(1000 * s / booked, 2) for role, s in sorted(self.cpu_s.items())
            },
            "machine_busy_s": round(self.machine_s, 2),
            "connections_per_web_process": self.connections,
        }


def _ends(values: list[float], n: int = 3) -> list[int]:
    """The n smallest and n largest, rounded (all of them when there are few)."""
    ordered = sorted(round(v) for v in values)
    return ordered if len(ordered) <= 2 * n else ordered[:n] + ordered[-n:]


@dataclass
class CaseResult:
    name: str
    levels: list[dict] = field(default_factory=list)
    race: dict = field(default_factory=dict)


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Prefer": f"wait={WAIT_S}"}


def run_case(
    token: str,
    make_request: Callable[[int, int], tuple[str, bytes]],
    meter: CpuMeter,
    seconds: dict[int, float],
    web_root: int,
) -> list[dict]:
    headers = _headers(token)
    balance = loadgen.Balance(
        owners=lambda ports: owners_of_client_ports(web_root, PORT, ports),
        processes=lambda: server_processes(web_root),
    )
    # Steady state, not start-up: the first requests on each server thread open its database
    # connection and warm the caches; 64 bookings from 32 clients, not measured.
    loadgen.run_closed_loop(
        "127.0.0.1",
        PORT,
        headers=headers,
        clients=32,
        duration_s=60,
        make_request=make_request,
        max_requests=64,
    )
    levels = []
    for clients in LEVELS:
        time.sleep(0.5)  # let the previous level's tail (acks, commits) settle
        snaps: list = []

        def snap(snaps: list = snaps) -> None:
            snaps.append(meter.snapshot())

        result = loadgen.run_closed_loop(
            "127.0.0.1",
            PORT,
            headers=headers,
            clients=clients,
            duration_s=seconds[clients],
            make_request=make_request,
            balance=balance,
            around=(snap, snap),
        )
        roles, machine = CpuMeter.spent(snaps[0], snaps[1])
        levels.append(Level(result, roles, machine, result.split).summary())
        print(
            f"  {clients:>2} clients: {result.confirmed_per_s:7.1f} confirmed/s, "
            f"p50 {result.pct(50):.0f} ms, p99 {result.pct(99):.0f} ms, {dict(result.outcomes)}",
            flush=True,
        )
    return levels


def celery_floor(meter: CpuMeter, tasks: int = 500) -> dict[str, float]:
    """CPU per task of a task that does nothing (testbed.ping, result ignored), end to end:
    the floor that one Celery hop alone puts under every booking on this machine."""
    import redis

    from testbed.celery import app

    queue = redis.Redis.from_url(REDIS_URL)
    before = meter.snapshot()
    for _ in range(tasks):
        app.send_task("testbed.ping", args=["floor"], ignore_result=True)
    deadline = time.monotonic() + 60
    while queue.llen("celery") and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # the last few are being acknowledged
    roles, _machine = CpuMeter.spent(before, meter.snapshot())
    return {role: round(1000 * s / tasks, 3) for role, s in roles.items()}


def calibration_loop_ms() -> float:
    """CPU time of a fixed pure-Python loop: how fast this machine was during the run."""
    t0 = time.process_time()
    total = 0
    for i in range(3_000_000):
        total += i * i
    return (time.process_time() - t0) * 1000


def measure(args: argparse.Namespace) -> dict:
    _recreate_database()
    token = _setup_catalogue()
    pool = _setup_pool()
    servers = Servers(
        web_workers=args.web_workers,
        web_threads=args.web_threads,
        celery_concurrency=args.celery_concurrency,
    )
    database = DB_URL.rsplit("/", 1)[1]
    meter = CpuMeter(web_root=servers.web.pid, worker_root=servers.worker.pid, database=database)
    seconds = QUICK_SECONDS if args.quick else SECONDS
    figures: dict = {
        "quick": args.quick,
        "web": f"gunicorn gthread {args.web_workers} × {args.web_threads} threads",
        "worker": f"Celery {CELERY_POOL}, concurrency {args.celery_concurrency}",
        "seconds": seconds,
        "pool": pool.__dict__,
    }
    try:
        servers.wait_ready(token)
        cases = []
        print("equipment bookings", flush=True)
        equipment = CaseResult(
            "equipment", run_case(token, EquipmentLoad(), meter, seconds, servers.web.pid)
        )
        equipment.race = equipment_race(PORT, token, slots=5 if args.quick else 30, contenders=32)
        print("  race:", equipment.race, flush=True)
        cases.append(equipment)
        print(f"1-device bookings on {pool.code} ({pool.devices} devices)", flush=True)
        gpu = CaseResult(
            "gpu pool",
            run_case(token, PoolLoad(pool, pool_origin(pool)), meter, seconds, servers.web.pid),
        )
        gpu.race = pool_race(PORT, token, pool)
        print("  race:", gpu.race, flush=True)
        cases.append(gpu)
        figures["cases"] = [c.__dict__ for c in cases]
        figures["rss_mb"] = {
            "web": tree_rss(servers.web.pid),
            "worker": tree_rss(servers.worker.pid),
        }
        try:
            figures["celery_floor_ms"] = celery_floor(meter)
        except Exception as exc:  # noqa: BLE001 - a missing ping task must not lose the run
            figures["celery_floor_ms"] = {"error": repr(exc)}
        figures["calibration_ms"] = round(calibration_loop_ms())
    finally:
        servers.stop()
    from bench.pgbench_excl import measure as pgbench

    figures["pgbench"] = pgbench(DB_URL, clients=[8, 32], seconds=3 if args.quick else 10)
    figures["availability"] = read_availability()
    return figures


def read_availability() -> dict | None:
    """bench.availability's figures for the 30-day case, when it wrote them machine-readably
    (var/bench/availability.json: p50_ms, p95_ms, …) in this `make bench` run (or, run alone,
    whenever it last ran)."""
    path = ROOT / "var" / "bench" / "availability.json"
    if not path.exists():
        return None
    started = float(os.environ.get("BENCH_RUN_STARTED", "0"))
    if path.stat().st_mtime < started:
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    data["_written"] = dt.datetime.fromtimestamp(path.stat().st_mtime, SEOUL).isoformat(
        timespec="minutes"
    )
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds per level (smoke)")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone"
    )
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=16)
    parser.add_argument("--celery-concurrency", type=int, default=2)
    args = parser.parse_args()
    started = time.monotonic()
    figures = measure(args)
    figures["elapsed_s"] = round(time.monotonic() - started)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(figures, indent=1, default=str))

    from bench.http_booking_report import render

    markdown = render(figures)
    print(markdown)
    if not args.no_write and not args.quick:
        from bench.report import write_section

        print("written to", write_section("http-booking", markdown))
    elif args.quick:
        print("(--quick: docs/benchmarks.md left alone; figures in", FIGURES, ")")


if __name__ == "__main__":
    main()
