"""bench.http_booking's pure parts (booking_load, http_booking_report, pgbench_excl, procstats):
the workloads never ask more than fits, the write-up judges figures against the targets and names
what limits them, pgbench and /proc parsing."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter

from bench import booking_load as bl
from bench import http_booking_report as report
from bench import pgbench_excl, procstats


def decoded(request: tuple[str, bytes]) -> dict:
    path, body = request
    assert path == "/api/v1/bookings"
    return json.loads(body)


def test_equipment_load_puts_three_bookings_per_unit_hour_and_spreads_types():
    load = bl.EquipmentLoad()
    per_slot: Counter = Counter()
    for n in range(5000):
        b = decoded(load(n % 32, n))
        start, end = dt.datetime.fromisoformat(b["start"]), dt.datetime.fromisoformat(b["end"])
        assert end - start == dt.timedelta(hours=1)
        assert start.minute == 0 and start.utcoffset() == dt.timedelta(hours=9)
        assert b["quantity"] == 1
        per_slot[(b["resource"], start)] += 1
    assert max(per_slot.values()) == bl.PER_UNIT_HOUR < bl.UNITS_PER_TYPE
    assert {r for r, _s in per_slot} == {f"BENCH-{i:02d}" for i in range(bl.TYPES)}


def test_pool_load_fills_each_window_with_440_one_device_bookings():
    pool = bl.PoolInfo(code="NAIDC-H100", nodes=110, devices=880, slot_minutes=60, max_lead_days=90)
    origin = bl.pool_origin(pool)
    assert origin.minute == 0 and origin > dt.datetime.now(bl.SEOUL) + dt.timedelta(days=1)
    load = bl.PoolLoad(pool, origin)
    windows: Counter = Counter()
    for n in range(3 * bl.PER_WINDOW + 7):
        b = decoded(load(0, n))
        assert b["resource"] == "NAIDC-H100" and b["quantity"] == 1
        windows[dt.datetime.fromisoformat(b["start"])] += 1
    assert sorted(windows.values()) == [7, 440, 440, 440]
    assert min(windows) == origin
    assert max(windows) - origin == dt.timedelta(hours=3)
    assert bl.PER_WINDOW * 2 == pool.devices  # windows half fill


def level(clients: int, rate: float, *, p99: float, mean: float, busy: float, web: float):
    wall = 10.0
    confirmed = int(rate * wall)
    per = {"web (gunicorn)": web, "worker (Celery)": 2.0, "PostgreSQL": 1.0, "Redis": 0.2}
    per["load generator"] = 0.3
    return {
        "clients": clients,
        "requests": confirmed,
        "confirmed": confirmed,
        "wall_s": wall,
        "confirmed_per_s": rate,
        "p50_ms": mean,
        "p95_ms": p99 * 0.9,
        "p99_ms": p99,
        "mean_ms": mean,
        "outcomes": {"confirmed": confirmed},
        "client_cpu_ms_per_request": 0.3,
        "cpu_ms_per_booking": per,
        "machine_busy_s": busy * wall * report.CORES,
    }


def figures(*, fast: bool) -> dict:
    rate8, rate32, p99 = (320.0, 470.0, 120.0) if fast else (40.0, 50.0, 900.0)
    levels = [
        level(1, 20.0, p99=80, mean=50, busy=0.3, web=4.0),
        level(8, rate8, p99=p99 / 2, mean=8000 / rate8, busy=0.99, web=4.0),
        level(32, rate32, p99=p99, mean=32000 / rate32, busy=0.99, web=4.0 if fast else 30.0),
    ]
    race_unit = {
        "what": "30 slots × 32",
        "slots": 30,
        "exactly_one": 30,
        "extra_bookings": 0,
        "undecided": 0,
        "overlapping_allocation_pairs": 0,
        "rejected_with_alternatives": 930,
    }
    race_pool = {
        "what": "968 for 880",
        "requests": 968,
        "devices": 880,
        "confirmed": 880 if fast else 881,
        "rejected": 88,
        "outcomes": {"confirmed": 880, "rejected": 88},
        "devices_held_in_window": 880,
        "extra_bookings": 0 if fast else 1,
        "overlapping_allocation_pairs": 0,
    }
    return {
        "quick": False,
        "web": "gunicorn gthread 2 × 16 threads",
        "worker": "Celery prefork, concurrency 2",
        "seconds": {1: 10.0, 8: 15.0, 32: 20.0},
        "pool": {"code": "NAIDC-H100", "nodes": 110, "devices": 880},
        "cases": [
            {"name": "equipment", "levels": levels, "race": race_unit},
            {"name": "gpu pool", "levels": levels, "race": race_pool},
        ],
        "rss_mb": {
            "web": [(1, "master", 25.0), (2, "child", 140.0 if fast else 160.0)],
            "worker": [(3, "master", 110.0), (4, "child", 100.0)],
        },
        "pgbench": {
            "tps": {8: 4000.0, 32: 8000.0},
            "settings": {"fsync": "on"},
            "binary": "pgbench",
            "seconds": 10,
        },
        "availability": {"p50_ms": 9.0, "p95_ms": 14.5, "_written": "now"} if fast else None,
        "celery_floor_ms": {"worker (Celery)": 1.5, "Redis": 0.2, "load generator": 0.9},
        "calibration_ms": 200,
        "elapsed_s": 300,
    }


def summary_row(markdown: str, label: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(f"| {label}"))


def test_report_marks_targets_met_when_figures_reach_them():
    md = report.render(figures(fast=True))
    assert "320 ✅" in summary_row(md, "confirmed/s, 8 clients")
    assert "470 ✅" in summary_row(md, "confirmed/s, 32 clients")
    assert "120 ms ✅" in summary_row(md, "p99 request→decision, 32 clients")
    assert "0 ✅ | 0 ✅" in summary_row(md, "double bookings")
    assert "140 MB ✅" in summary_row(md, "RSS of a web worker")
    assert "p50 9.0 / p95 14.5 ms ✅" in summary_row(md, "availability")
    assert "8.0%" in summary_row(md, "our share of PostgreSQL's own rate, 8 clients")  # 320/4000
    assert "❌" not in md


def test_report_marks_misses_and_says_what_limits_them():
    md = report.render(figures(fast=False))
    rate32 = summary_row(md, "confirmed/s, 32 clients")
    assert "50 ❌" in rate32
    # 32 clients, web 30 ms + worker 2 + PostgreSQL 1 + Redis 0.2 + generator 0.3 = 33.5 ms
    assert "33.5 ms CPU per booking" in rate32
    assert f"ceiling {1000 * report.CORES / 33.5:.0f}/s" in rate32
    assert "largest web (gunicorn) 30.0 ms" in rate32
    p99 = summary_row(md, "p99 request→decision, 32 clients")
    assert "900 ms ❌" in p99 and "Little's law" in p99
    assert "1 ❌" in summary_row(md, "double bookings")  # the pool's extra booking
    assert "160 MB ❌" in summary_row(md, "RSS of a web worker")
    assert "see the availability section" in summary_row(md, "availability")


def test_rate_limit_names_waiting_when_cores_are_idle_and_latency_for_one_client():
    idle = level(8, 40.0, p99=400, mean=200, busy=0.4, web=4.0)
    assert report.limit_of_rate(idle).startswith("waiting, not CPU: cores 40% busy")
    one = level(1, 20.0, p99=80, mean=50, busy=0.3, web=4.0)
    assert report.limit_of_rate(one).startswith("one request at a time: 1 ÷ 50 ms mean = 20/s")


def test_cpu_budget_counts_other_programs_apart():
    lv = level(32, 100.0, p99=500, mean=320, busy=1.0, web=10.0)
    budget = report.cpu_budget(lv)
    assert budget["server_ms"] == 13.2 and round(budget["all_ms"], 2) == 13.5
    # ours: 13.5 ms × 1000 bookings = 13.5 s of the machine's 10 s × cores busy
    expected_others = (10.0 * report.CORES - 13.5) / (10.0 * report.CORES)
    assert abs(budget["others"] - expected_others) < 1e-9


def test_pgbench_tps_is_read_from_its_summary():
    out = (
        "number of transactions actually processed: 40342\n"
        "latency average = 0.594 ms\n"
        "initial connection time = 13.370 ms\n"
        "tps = 13479.234188 (without initial connection time)\n"
    )
    assert pgbench_excl.parse_tps(out) == 13479.234188
    assert pgbench_excl.parse_tps("connection to server failed") is None


def test_postgres_backends_count_only_for_the_bench_database():
    def proc(title: str) -> procstats.Proc:
        return procstats.Proc(pid=10, ppid=1, cpu_s=1.0, cmdline=title)

    def role(title: str) -> str | None:
        return procstats.role_of(proc(title), web=set(), worker=set(), database="testbed_bench_b")

    assert role("postgres: 15/main: postgres testbed_bench_b 127.0.0.1(5000) idle") == "PostgreSQL"
    assert role("postgres: postgres testbed_bench_b [local] idle") == "PostgreSQL"
    assert role("postgres: 15/main: postgres testbed_other 127.0.0.1(5001) idle") is None
    assert role("postgres: 15/main: walwriter") == "PostgreSQL"
    assert role("redis-server 127.0.0.1:6379") == "Redis"
    assert role("/usr/bin/python3 -m gunicorn testbed.wsgi") is None  # not our tree


def test_process_trees_and_this_process_cpu_are_read_from_proc():
    procs = procstats.processes()
    me = os.getpid()
    assert me in procs and procs[me].cpu_s >= 0
    assert procstats.descendants([os.getppid()], procs) >= {os.getppid(), me}
    meter = procstats.CpuMeter(web_root=me, worker_root=-1, database="none")
    before = meter.snapshot()
    sum(i * i for i in range(300_000))
    roles, machine = procstats.CpuMeter.spent(before, meter.snapshot())
    assert roles["load generator"] > 0 and machine >= 0
    assert procstats.rss_mb(me) and procstats.rss_mb(me) > 1


def test_connections_per_process_counts_each_childs_established_sockets():
    """This process is a child of its parent and holds 3 accepted connections on a listening
    port (local port = the listener's) and their 3 client ends (local port ephemeral)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    accepted = [listener.accept()[0] for _ in range(3)]
    try:
        split = procstats.connections_per_process(os.getppid(), port)
        assert split[os.getpid()] == 3  # the accepted ends: local port is the listener's
        assert len(procstats.established_on_port(port)) == 3
    finally:
        for s in clients + accepted:
            s.close()
        listener.close()
