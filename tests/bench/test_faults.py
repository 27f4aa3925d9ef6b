"""bench.faults' checks judge a database state rightly: a clean state passes, and each broken
invariant (a booking left pending, a hold missing, a hard grant overdrawn, more booked than
capacity, a 201 without its row, a booking decided twice, a wait past the bound) is named.
The drills themselves start private PostgreSQL and Redis servers and run only under `make bench`."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
from django.db import connection

from bench.faults import checks
from bench.faults.__main__ import markdown
from bench.faults.load import Sent
from booking.models import Allocation, Booking, QuotaGrant, QuotaLedgerEntry
from testbed.models import AuditEntry
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware

START = aware(2031, 3, 3, 10)
END = START + dt.timedelta(hours=1)


class FakeStack:
    """What verify() needs of a drill's stack: SQL on its database (here the test database)."""

    def sql(self, query: str, params=()) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall() if cursor.description else []


class FakeLoad:
    def __init__(self, sent: list[Sent]) -> None:
        self.results = sent

    def created(self) -> list[Sent]:
        return [r for r in self.results if r.http == 201 and r.booking_id]


def sent(booking: Booking, status: str) -> Sent:
    now = time.time()
    return Sent(
        0,
        "acme",
        "EQ",
        1,
        START,
        END,
        now,
        now,
        201,
        "application/json",
        booking.pk,
        status,
        None,
        "",
    )


@pytest.fixture
def state(org, member):
    """One unit; a confirmed booking holding it (allocation, 1 h hold on a 10 h hard grant, one
    audit entry) and a rejected one for the same hour."""
    kind = EquipmentTypeFactory(code="EQ")
    unit = EquipmentUnitFactory(equipment_type=kind)
    grant = QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2031, 1, 1),
        period_end=dt.date(2031, 12, 31),
        limit_hours=Decimal(10),
        enforcement="hard",
    )

    def booking(status: str) -> Booking:
        b = Booking.objects.create(
            organization=org, user=member, equipment_type=kind, start=START, end=END, status=status
        )
        Booking.objects.filter(pk=b.pk).update(decided_at=b.created_at + dt.timedelta(seconds=1))
        AuditEntry.objects.create(
            channel="system",
            action="booking.allocate",
            object_type="booking.booking",
            object_id=str(b.pk),
        )
        return b

    confirmed = booking("confirmed")
    Allocation.objects.create(booking=confirmed, unit=unit, start=START, end=END)
    QuotaLedgerEntry.objects.create(grant=grant, booking=confirmed, kind="hold", hours=1)
    rejected = booking("rejected")
    load = FakeLoad([sent(confirmed, "confirmed"), sent(rejected, "rejected")])
    return {"kind": kind, "unit": unit, "grant": grant, "a": confirmed, "b": rejected, "load": load}


def verify(state, **kwargs) -> checks.Verdict:
    return checks.verify(FakeStack(), state["load"], faults=[], bound=18, **kwargs)


def test_a_clean_state_passes(state):
    verdict = verify(state)
    assert verdict.passed, verdict.failures
    assert verdict.figures["by status"] == {"confirmed": 1, "rejected": 1}
    assert verdict.figures["moments over capacity"] == 0


def test_a_pending_booking_fails(state):
    Booking.objects.filter(pk=state["b"].pk).update(status="pending")
    assert any("not final" in f for f in verify(state).failures)


def test_a_missing_hold_fails(state):
    QuotaLedgerEntry.objects.all().delete()
    failures = verify(state).failures
    assert any("hold is wrong" in f for f in failures)
    assert any("ledger holds 0" in f for f in failures)


def test_an_overdrawn_hard_grant_fails(state):
    QuotaGrant.objects.filter(pk=state["grant"].pk).update(limit_hours=Decimal("0.5"))
    assert any("overdrawn" in f for f in verify(state).failures)


def test_more_booked_than_capacity_fails(state):
    Booking.objects.filter(pk=state["b"].pk).update(status="confirmed")
    QuotaLedgerEntry.objects.create(grant=state["grant"], booking=state["b"], kind="hold", hours=1)
    failures = verify(state).failures
    assert any("more booked than capacity" in f for f in failures)
    assert any("wrong number of active allocations" in f for f in failures)


def test_a_201_without_its_row_and_a_status_told_wrong_fail(state):
    ghost = Sent(0, "acme", "EQ", 1, START, END, 0, 0, 201, "", 999_999, "confirmed", None, "")
    state["load"].results += [ghost, sent(state["b"], "confirmed")]
    failures = verify(state).failures
    assert any("no row: [999999]" in f for f in failures)
    assert any("client told one status" in f for f in failures)


def test_a_booking_decided_twice_fails(state):
    AuditEntry.objects.create(
        channel="system",
        action="booking.allocate",
        object_type="booking.booking",
        object_id=str(state["a"].pk),
    )
    assert any("decided more than once" in f for f in verify(state).failures)


def test_a_wait_past_the_bound_fails_but_a_fault_moves_where_it_counts_from(state):
    late = Booking.objects.get(pk=state["b"].pk)
    Booking.objects.filter(pk=late.pk).update(decided_at=late.created_at + dt.timedelta(seconds=30))
    assert any("waited 30" in f for f in verify(state).failures)
    fault = (late.created_at.timestamp(), late.created_at.timestamp() + 25)
    verdict = checks.verify(FakeStack(), state["load"], faults=[fault], bound=18)
    assert verdict.passed, verdict.failures
    assert verdict.figures["max time to final after the fault, s"] == 5.0


def test_effective_start_counts_from_the_end_of_a_fault_only_when_decided_after_it():
    assert checks._effective_start(10.0, [(12.0, 20.0)], 25.0) == 20.0
    assert checks._effective_start(10.0, [(12.0, 20.0)], 15.0) == 10.0  # decided during it
    assert checks._effective_start(30.0, [(12.0, 20.0)], 35.0) == 30.0  # created after it


def test_the_report_tables_every_drill_with_its_verdict():
    text = markdown(
        [
            {
                "name": "kill_worker",
                "state": "PASS",
                "title": "t",
                "figures": {"requests sent": 3, "201 outcomes": {"confirmed": 3}, "x": 1},
                "failures": [],
            },
            {"name": "cluster", "state": "FAIL", "figures": {}, "failures": ["boom"]},
        ]
    )
    assert "| kill_worker | **PASS** | 3 | confirmed 3 |" in text
    assert "| cluster | **FAIL** |" in text
    assert "- FAIL: boom" in text and "- x: 1" in text
