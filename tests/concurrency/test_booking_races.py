"""Races through the real HTTP API, decided by a real Celery worker on the real Redis and
PostgreSQL. The lock is the plan; the exclusion constraint is the backstop (control case)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
import requests
from django.db import connection
from django.utils import timezone

from booking.models import Allocation, Booking, Organization, QuotaGrant, QuotaLedgerEntry
from testbed.api.auth import token_for
from tests.factories import (
    EquipmentTypeFactory,
    EquipmentUnitFactory,
    OrganizationFactory,
    UserFactory,
    add_member,
    make_pool,
)
from tests.worker import start_worker

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
CONTENDERS = 32


@pytest.fixture
def booker(transactional_db):
    org = OrganizationFactory(slug="racers")
    user = UserFactory(username="racer")
    add_member(org, user)
    return token_for(user)


def next_free_day(days: int = 3) -> dt.datetime:
    local = timezone.localtime() + dt.timedelta(days=days)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def race(live_server, token: str, bodies: list[dict], wait: int = 25) -> list[dict]:
    """Send every body at once (a barrier releases the threads together); the responses."""
    barrier = threading.Barrier(len(bodies))
    results: list[dict | None] = [None] * len(bodies)

    def client(i: int) -> None:
        session = requests.Session()
        barrier.wait()
        response = session.post(
            f"{live_server.url}/api/v1/bookings",
            json=bodies[i],
            timeout=wait + 30,
            headers={"Authorization": f"Bearer {token}", "Prefer": f"wait={wait}"},
        )
        assert response.status_code == 201, response.text
        results[i] = response.json()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None for r in results), "a client thread failed"
    return results  # type: ignore[return-value]


def overlapping_pairs() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM booking_allocation a JOIN booking_allocation b
               ON a.id < b.id AND a.active AND b.active
               AND (a.unit_id = b.unit_id OR a.device_id = b.device_id)
               AND tstzrange(a.start, a."end") && tstzrange(b.start, b."end")"""
        )
        return cursor.fetchone()[0]


def one_unit_type(code: str):
    t = EquipmentTypeFactory(code=code, slot_minutes=30, min_minutes=30, max_minutes=240)
    EquipmentUnitFactory(equipment_type=t, code=f"{code}-01")
    return t


def window(start: dt.datetime, minutes: int, **extra) -> dict:
    return {
        "start": start.isoformat(),
        "end": (start + dt.timedelta(minutes=minutes)).isoformat(),
        **extra,
    }


def test_it_confirms_exactly_one_of_32_clients_on_one_slot(live_server, celery_worker, booker):
    one_unit_type("RACE-A")
    start = next_free_day()
    results = race(
        live_server, booker, [window(start, 60, resource="RACE-A") for _ in range(CONTENDERS)]
    )
    statuses = [r["status"] for r in results]
    assert statuses.count("confirmed") == 1, statuses
    assert statuses.count("rejected") == CONTENDERS - 1
    losers = [r for r in results if r["status"] == "rejected"]
    assert all(
        r["rejection"]["code"] == "unavailable" and r["rejection"]["alternatives"] for r in losers
    )
    assert overlapping_pairs() == 0
    assert Allocation.objects.filter(active=True).count() == 1


def test_it_confirms_exactly_one_of_32_overlapping_windows(live_server, celery_worker, booker):
    one_unit_type("RACE-B")
    start = next_free_day(4)
    # Offsets 0, 30, 60, 90 minutes with 2-hour windows: every window holds [90, 120) minutes.
    bodies = [
        window(start + dt.timedelta(minutes=30 * (i % 4)), 120, resource="RACE-B")
        for i in range(CONTENDERS)
    ]
    statuses = [r["status"] for r in race(live_server, booker, bodies)]
    assert statuses.count("confirmed") == 1, statuses
    assert overlapping_pairs() == 0


def test_it_confirms_exactly_k_when_a_pool_takes_k(live_server, celery_worker, booker):
    pool = make_pool(nodes=2, per_node=8)  # 16 devices; requests of 2 → k = 8
    start = next_free_day(5)
    bodies = [window(start, 180, resource=pool.code, quantity=2) for _ in range(CONTENDERS)]
    results = race(live_server, booker, bodies)
    statuses = [r["status"] for r in results]
    assert statuses.count("confirmed") == 8, statuses
    assert statuses.count("rejected") == CONTENDERS - 8
    confirmed = [r for r in results if r["status"] == "confirmed"]
    assert all(len({a["node"] for a in r["allocations"]}) == 1 for r in confirmed), (
        "2 devices on one node"
    )
    assert overlapping_pairs() == 0


def test_it_still_never_double_books_with_the_lock_turned_off(live_server, booker, settings):
    """Control case: with the allocation lock off, workers race for real (the log shows the
    exclusion constraint refusing the losers' rows) and still exactly one booking wins."""
    one_unit_type("RACE-C")
    # The delay widens the read-to-write window so concurrent decisions overlap on every run;
    # one booking per transaction (no batching) makes as many concurrent decisions as possible.
    drill = {
        "TESTBED_ALLOCATION_LOCKING": "0",
        "TESTBED_DECIDE_DELAY_MS": "50",
        "TESTBED_ALLOCATION_BATCH": "1",
    }
    # Every booking queues its own task (no coalescing flag), so deciders really run at once.
    settings.TESTBED_ALLOCATION_COALESCE = False
    with start_worker(drill, concurrency=4, loglevel="info") as worker:
        races_seen = 0
        for day in range(6, 9):
            start = next_free_day(day)
            results = race(
                live_server,
                booker,
                [window(start, 60, resource="RACE-C") for _ in range(CONTENDERS)],
            )
            assert [r["status"] for r in results].count("confirmed") == 1
            races_seen = worker.log().count("constraint stopped a double booking")
            if races_seen:
                break
    assert overlapping_pairs() == 0
    assert races_seen >= 1, "the control case should show the race happening without the lock"


def test_it_never_needs_the_constraint_while_the_lock_is_on(live_server, booker):
    """The same drill with the lock on: decisions queue on the type's row lock, so the
    exclusion constraint is never reached (it is the backstop, not the plan)."""
    one_unit_type("RACE-D")
    drill = {"TESTBED_ALLOCATION_LOCKING": "1", "TESTBED_DECIDE_DELAY_MS": "50"}
    with start_worker(drill, concurrency=4, loglevel="info") as worker:
        results = race(
            live_server,
            booker,
            [window(next_free_day(9), 60, resource="RACE-D") for _ in range(CONTENDERS)],
        )
        assert [r["status"] for r in results].count("confirmed") == 1
        assert worker.log().count("constraint stopped a double booking") == 0
    assert overlapping_pairs() == 0


def test_it_never_overdraws_a_hard_grant_under_32_concurrent_bookings(
    live_server, celery_worker, booker
):
    pool = make_pool(nodes=8, per_node=8)  # 64 devices: capacity is never the limit here
    org = Organization.objects.get(slug="racers")
    grant = QuotaGrant.objects.create(
        organization=org,
        scope=pool.code,
        period_start=dt.date(2026, 1, 1),
        period_end=dt.date(2099, 12, 31),
        limit_hours=Decimal("10"),
    )
    start = next_free_day(10)
    results = race(
        live_server,
        booker,
        [window(start, 60, resource=pool.code, quantity=1) for _ in range(CONTENDERS)],
    )
    statuses = [r["status"] for r in results]
    assert statuses.count("confirmed") == 10, statuses
    assert all(
        r["rejection"]["code"] == "quota_exceeded" for r in results if r["status"] == "rejected"
    )
    held = sum(QuotaLedgerEntry.objects.filter(grant=grant).values_list("hours", flat=True))
    assert held == Decimal("10")


def test_it_sweeps_a_booking_whose_task_was_lost(live_server, celery_worker, booker):
    from booking.tasks import sweep_pending

    t = one_unit_type("LOST")
    org = Organization.objects.get(slug="racers")
    start = next_free_day(11)
    lost = Booking.objects.create(
        organization=org,
        user=org.members.first(),
        equipment_type=t,
        quantity=1,
        start=start,
        end=start + dt.timedelta(hours=1),
    )  # queued nowhere
    Booking.objects.filter(pk=lost.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    assert sweep_pending.delay().get(timeout=20) == 1
    for _ in range(200):
        lost.refresh_from_db()
        if lost.status != "pending":
            break
        threading.Event().wait(0.05)
    assert lost.status == "confirmed"


def test_it_changes_nothing_when_a_task_is_delivered_twice(live_server, celery_worker, booker):
    from booking.tasks import allocate_booking
    from testbed.models import AuditEntry

    t = one_unit_type("TWICE")
    org = Organization.objects.get(slug="racers")
    start = next_free_day(12)
    booking = Booking.objects.create(
        organization=org,
        user=org.members.first(),
        equipment_type=t,
        quantity=1,
        start=start,
        end=start + dt.timedelta(hours=1),
    )
    allocate_booking.delay(booking.pk)
    allocate_booking.delay(booking.pk)
    for _ in range(400):
        booking.refresh_from_db()
        if booking.status != "pending":
            break
        threading.Event().wait(0.05)
    threading.Event().wait(0.5)
    celery_worker.drain()  # and the second delivery has run too
    assert booking.status == "confirmed"
    assert Allocation.objects.filter(booking=booking).count() == 1
    assert (
        AuditEntry.objects.filter(action="booking.allocate", object_id=str(booking.pk)).count() == 1
    )
