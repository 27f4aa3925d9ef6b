"""Portal pages, server time to a complete response: `python -m bench.portal_pages [--no-write]`.

Loads the real catalogue (`load_seeds --demo`: 77 equipment types, the national AI data centre's
880-device H100 pool and the rest) into a scratch PostgreSQL database (BENCH_DATABASE_URL with suffix
_portal), books a busy week on the H100 pool (about 40% of device-hours, 1–8-device bookings),
then times the pages the issue names through Django's test client — the catalogue, the H100
resource page with that week, the organisation dashboard and the operators' console — and counts
queries. The whole response is timed (rendering included), so it bounds the first byte from above;
network and gunicorn add little on loopback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import time
import zoneinfo
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/testbed_bench")
DB_URL = BASE_URL + "_portal"
SEOUL = zoneinfo.ZoneInfo("Asia/Seoul")
RUNS = 20
TARGET_MS = 150


def _prepare() -> None:
    import psycopg

    base, name = DB_URL.rsplit("/", 1)
    with psycopg.connect(
        base.replace("postgres://", "postgresql://") + "/postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": DB_URL, "CELERY_BROKER_URL": "memory://", "DEBUG": "1"}
    for command in (["migrate", "-v0"], ["load_seeds", "--demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    os.environ.update(
        DATABASE_URL=DB_URL,
        CELERY_BROKER_URL="memory://",
        DJANGO_SETTINGS_MODULE="testbed.settings",
        ALLOWED_HOSTS="testserver,localhost",
    )


def _busy_week(pool, organization, user, monday: dt.datetime) -> int:
    """Bookings over the pool's devices for the week: 1–8 devices on one node, 2–12 h each."""
    from booking.models import Allocation, Booking

    rng = random.Random(7)
    rows = 0
    for node in pool.nodes.prefetch_related("devices"):
        devices = list(node.devices.all())
        cursor = monday + dt.timedelta(hours=rng.randint(0, 12))
        while cursor < monday + dt.timedelta(days=7):
            length = dt.timedelta(hours=rng.randint(2, 12))
            taken = devices[: rng.choice([1, 2, 4, 8])]
            booking = Booking.objects.create(
                organization=organization,
                user=user,
                pool=pool,
                quantity=len(taken),
                start=cursor,
                end=cursor + length,
                status="confirmed",
            )
            Allocation.objects.bulk_create(
                Allocation(booking=booking, device=d, node=node, start=cursor, end=cursor + length)
                for d in taken
            )
            rows += len(taken)
            cursor += length + dt.timedelta(hours=rng.randint(4, 16))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    _prepare()
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from booking.models import Membership
    from equipment.models import AcceleratorPool, Device

    pool = AcceleratorPool.objects.get(code="NAIDC-H100")
    manager = (
        Membership.objects.filter(role="manager").select_related("user", "organization").first()
    )
    assert manager is not None, "load_seeds --demo made no manager"
    today = dt.datetime.now(SEOUL).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - dt.timedelta(days=today.weekday()) + dt.timedelta(days=7)
    rows = _busy_week(pool, manager.organization, manager.user, monday)
    devices = Device.objects.filter(node__pool=pool).count()
    operator = get_user_model().objects.filter(is_staff=True, is_active=True).first()
    assert operator is not None, "load_seeds --demo made no operator"

    member_client, operator_client, anonymous = Client(), Client(), Client()
    member_client.force_login(manager.user)
    operator_client.force_login(operator)
    pages = [
        ("catalogue `/`", anonymous, "/"),
        (
            f"H100 resource page, a week ({devices} devices, {rows} allocations)",
            member_client,
            f"/resources/{pool.code}/?week={monday:%Y-%m-%d}",
        ),
        ("organisation dashboard `/organization/`", member_client, "/organization/"),
        ("operators' console `/operations/`", operator_client, "/operations/"),
    ]
    lines = []
    for label, client, path in pages:
        queries: list[str] = []

        def count(execute, sql, params, many, context, queries=queries):
            queries.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        timings = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            client.get(path)
            timings.append((time.perf_counter() - t0) * 1000)
        timings.sort()
        p50, p95 = statistics.median(timings), timings[int(len(timings) * 0.95) - 1]
        verdict = "meets" if p95 < TARGET_MS else "misses"
        lines.append(
            f"| {label} | {p50:.0f} ms | {p95:.0f} ms | {len(queries)} | {verdict} < {TARGET_MS} ms |"
        )
    md = "\n".join(
        [
            "## Portal pages: time to a complete response",
            "",
            "`python -m bench.portal_pages`: the real catalogue (`load_seeds --demo`), a busy week on the "
            f"880-device H100 pool; each page {RUNS} times through Django's test client (rendering included, "
            "so this bounds the first byte from above).",
            "",
            "| page | p50 | p95 | SQL queries | target |",
            "|---|---:|---:|---:|---|",
            *lines,
        ]
    )
    print(md)
    if not args.no_write:
        from bench.report import write_section

        print("written to", write_section("portal_pages", md))


if __name__ == "__main__":
    main()
