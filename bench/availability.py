"""Availability for a week of a 128-device pool: `python -m bench.availability [--no-write]`.

Builds a 16 × 8 pool in a scratch PostgreSQL database (BENCH_DATABASE_URL with suffix
_availability), fills the week with a realistic mix of bookings (about 60% of device-hours
taken), then times `GET /api/v1/availability` for the week through Django's test client and
the selector alone, and counts queries.
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
DB_URL = BASE_URL + "_availability"
SEOUL = zoneinfo.ZoneInfo("Asia/Seoul")


def _prepare() -> None:
    import psycopg

    base, name = DB_URL.rsplit("/", 1)
    with psycopg.connect(
        base.replace("postgres://", "postgresql://") + "/postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": DB_URL, "CELERY_BROKER_URL": "memory://"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(
        DATABASE_URL=DB_URL,
        CELERY_BROKER_URL="memory://",
        DJANGO_SETTINGS_MODULE="testbed.settings",
        ALLOWED_HOSTS="testserver,localhost",
    )


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

    from booking.models import Allocation, Booking, Membership, Organization
    from booking.selectors import availability
    from equipment.models import AcceleratorPool, Center, Device, Node
    from testbed.api.auth import token_for

    center = Center.objects.create(code="bench", name="벤치", name_en="Bench", field="compute")
    pool = AcceleratorPool.objects.create(
        code="WEEK-128",
        name="주간",
        name_en="Week",
        center=center,
        vendor="NVIDIA",
        accelerator="H100",
        kind="gpu",
        slot_minutes=60,
        min_minutes=60,
        max_minutes=7 * 1440,
        max_lead_days=3650,
    )
    devices = []
    for n in range(16):
        node = Node.objects.create(pool=pool, hostname=f"week-n{n:02d}")
        devices += Device.objects.bulk_create([Device(node=node, index=i) for i in range(8)])
    org = Organization.objects.create(slug="bench", name="벤치", category="sme", region="gwangju")
    user = get_user_model().objects.create_user("bench")
    Membership.objects.create(organization=org, user=user)
    token = token_for(user)
    week = dt.datetime(2030, 3, 4, tzinfo=SEOUL)
    rng = random.Random(11)
    rows = 0
    for device in devices:  # each device: back-to-back bookings of 2–12 h with gaps, ~60% busy
        cursor = week + dt.timedelta(hours=rng.randint(0, 6))
        while cursor < week + dt.timedelta(days=7):
            length = dt.timedelta(hours=rng.randint(2, 12))
            booking = Booking.objects.create(
                organization=org,
                user=user,
                pool=pool,
                quantity=1,
                start=cursor,
                end=cursor + length,
                status="confirmed",
            )
            Allocation.objects.create(
                booking=booking, device=device, node=device.node, start=cursor, end=cursor + length
            )
            rows += 1
            cursor += length + dt.timedelta(hours=rng.randint(1, 8))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    params = {
        "resource": pool.code,
        "start": week.isoformat(),
        "end": (week + dt.timedelta(days=7)).isoformat(),
        "quantity": 4,
        "duration_minutes": 240,
    }
    timings, selector_timings = [], []
    queries: list[str] = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get("/api/v1/availability", params)
    assert response.status_code == 200, response.content
    body = response.json()
    for _ in range(10):
        t0 = time.perf_counter()
        client.get("/api/v1/availability", params)
        timings.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        availability(
            resource=pool,
            start=week,
            end=week + dt.timedelta(days=7),
            quantity=4,
            duration=dt.timedelta(hours=4),
        )
        selector_timings.append((time.perf_counter() - t0) * 1000)
    md = "\n".join(
        [
            "## Availability: a week of a 128-device pool",
            "",
            f"`python -m bench.availability`: 16 nodes × 8 devices, {rows} allocations in the week (~60% of "
            "device-hours booked), `GET /api/v1/availability` for 7 days, quantity 4, 4-hour windows.",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| HTTP (test client) median / max of 10 | {statistics.median(timings):.0f} ms / {max(timings):.0f} ms |",
            f"| selector alone, median | {statistics.median(selector_timings):.0f} ms |",
            f"| SQL queries per request | {len(queries)} |",
            f"| timeline steps / fitting windows returned | {len(body['timeline'])} / {len(body['fits'])} |",
            "",
            "For comparison, NEMO's calendar feed runs 1,023 queries and 1.1 s for one tool-week (ARCHITECTURE.md).",
        ]
    )
    print(md)
    if not args.no_write:
        from bench.report import write_section

        print("written to", write_section("availability", md))


if __name__ == "__main__":
    main()
