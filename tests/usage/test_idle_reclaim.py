"""Idle reclaim: flag after `idle_minutes` under the threshold, reclaim after the grace, refund the hold."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core import mail

from booking import tasks
from booking.choices import BookingStatus, LedgerKind
from booking.models import Allocation, Booking, QuotaGrant, QuotaLedgerEntry
from booking.services.allocation import booking_allocate
from booking.services.bookings import booking_request, bookings_start_pool_sessions
from booking.services.emails import booking_email_send
from booking.services.idle import bookings_flag_idle, bookings_reclaim_idle
from booking.services.quotas import grant_balances
from booking.services.telemetry import telemetry_ingest
from equipment.models import Node
from testbed.models import AuditEntry
from tests.factories import OrganizationFactory, UserFactory, add_member, aware, make_pool

pytestmark = pytest.mark.django_db

BOOKED_AT = aware(2026, 12, 1, 8, 0)
START, END = aware(2026, 12, 1, 9), aware(2026, 12, 1, 17)  # 4 devices × 8 h = 32 device-hours


def minute(hh: int, mm: int) -> dt.datetime:
    return aware(2026, 12, 1, hh, mm)


@pytest.fixture
def pool():
    return make_pool(
        nodes=1,
        per_node=4,
        code="GPU-IDLE",
        idle_threshold_pct=5,
        idle_minutes=60,
        idle_grace_minutes=30,
    )


@pytest.fixture
def node(pool):
    return Node.objects.get(pool=pool)


@pytest.fixture
def grant(org):
    return QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=Decimal("100"),
    )


@pytest.fixture
def queued(monkeypatch, django_capture_on_commit_callbacks):
    """Notifications queued after commit, as (task, booking id, event)."""
    sent: list[tuple] = []
    monkeypatch.setattr(
        "booking.services.notifications._queue", lambda name, *args: sent.append((name, *args))
    )
    return sent


@pytest.fixture
def booking(pool, org, member, grant):
    with time_machine.travel(BOOKED_AT, tick=False):
        booking = booking_request(
            actor=member,
            organization=org,
            resource_code=pool.code,
            quantity=4,
            start=START,
            end=END,
        )
        assert booking_allocate(booking_id=booking.pk) == "confirmed"
    assert bookings_start_pool_sessions(now=START) == 1
    booking.refresh_from_db()
    assert booking.status == BookingStatus.ACTIVE
    return booking


def feed(
    node,
    start: dt.datetime,
    end: dt.datetime,
    utilization: float,
    *,
    devices=range(4),
    step: int = 60,
):
    """Readings of the node's devices every `step` seconds over [start, end], as the agent would send."""
    samples = []
    moment = start
    while moment <= end:
        samples += [
            {"device": str(i), "at": moment.isoformat(), "utilization_pct": utilization}
            for i in devices
        ]
        moment += dt.timedelta(seconds=step)
    telemetry_ingest(node=node, samples=samples, now=end + dt.timedelta(minutes=1))


def flag(at: dt.datetime, captured) -> dict:
    with captured(execute=True), time_machine.travel(at, tick=False):
        return bookings_flag_idle()


def reclaim(at: dt.datetime, captured) -> list[int]:
    with captured(execute=True), time_machine.travel(at, tick=False):
        return bookings_reclaim_idle()


def test_it_flags_after_idle_minutes_then_reclaims_after_the_grace_with_the_hold_refunded(
    booking,
    node,
    grant,
    org,
    member,
    queued,
    django_capture_on_commit_callbacks,
):
    captured = django_capture_on_commit_callbacks
    feed(node, minute(9, 0), minute(10, 0), 80.0)  # a busy first hour
    feed(node, minute(10, 1), minute(11, 1), 1.0)  # then nothing runs
    assert flag(minute(10, 30), captured) == {"flagged": 0, "unflagged": 0}, (
        "busy within the last hour"
    )

    assert flag(minute(11, 1), captured) == {"flagged": 1, "unflagged": 0}
    booking.refresh_from_db()
    assert booking.idle_flagged_at == minute(11, 1) and booking.status == BookingStatus.ACTIVE
    assert (
        AuditEntry.objects.filter(action="booking.idle_flag", object_id=str(booking.pk)).count()
        == 1
    )
    assert queued == [("send_booking_email", booking.pk, "idle_flagged")]
    assert flag(minute(11, 6), captured) == {"flagged": 0, "unflagged": 0}, "flagged once"

    feed(node, minute(11, 2), minute(11, 31), 0.0)
    assert reclaim(minute(11, 20), captured) == [], "the grace (30 min) has not passed"
    assert reclaim(minute(11, 31), captured) == [booking.pk]

    booking.refresh_from_db()
    assert booking.status == BookingStatus.COMPLETED
    assert booking.actual_end == booking.reclaimed_at == minute(11, 31)
    assert booking.final_price_krw is not None and booking.final_price_krw > 0
    entry = AuditEntry.objects.get(action="booking.reclaim", object_id=str(booking.pk))
    assert (entry.from_state, entry.to_state) == ("active", "completed")
    assert queued[-1] == ("send_booking_email", booking.pk, "reclaimed")
    # The devices are free from the next slot boundary (hourly slots): 12:00, not 17:00.
    assert set(Allocation.objects.filter(booking=booking).values_list("end", flat=True)) == {
        minute(12, 0)
    }
    # The ledger: the 32 h hold is released in full, the 2 h 31 min used on 4 devices consumed.
    ledger = {
        kind: sum(
            h
            for k, h in QuotaLedgerEntry.objects.filter(booking=booking).values_list(
                "kind", "hours"
            )
            if k == kind
        )
        for kind in (LedgerKind.HOLD, LedgerKind.RELEASE, LedgerKind.CONSUME)
    }
    used = Decimal(4 * (2 * 60 + 31) * 60) / Decimal(3600)
    assert ledger == {
        LedgerKind.HOLD: Decimal("32.0000"),
        LedgerKind.RELEASE: Decimal("-32.0000"),
        LedgerKind.CONSUME: used.quantize(Decimal("0.0001")),
    }
    balance = grant_balances([grant.pk])[grant.pk]
    assert (balance.held, balance.consumed) == (Decimal("0"), used.quantize(Decimal("0.0001")))
    assert reclaim(minute(11, 40), captured) == [], "done once"

    # Somebody else can now book the freed afternoon on the same devices.
    other = OrganizationFactory(slug="waiting")
    waiting = UserFactory(username="waiting")
    add_member(other, waiting)
    with time_machine.travel(minute(11, 32), tick=False):
        taker = booking_request(
            actor=waiting,
            organization=other,
            resource_code=booking.pool.code,
            quantity=4,
            start=minute(12, 0),
            end=minute(16, 0),
        )
        too_early = booking_request(
            actor=waiting,
            organization=other,
            resource_code=booking.pool.code,
            quantity=4,
            start=minute(11, 0) + dt.timedelta(hours=1),
            end=minute(13, 0),
        )
        assert booking_allocate(booking_id=taker.pk) == "confirmed"
        assert booking_allocate(booking_id=too_early.pk) == "rejected", "the taker holds 12–16 now"
    devices = set(Allocation.objects.filter(booking=booking).values_list("device_id", flat=True))
    assert (
        set(Allocation.objects.filter(booking=taker).values_list("device_id", flat=True)) == devices
    )


def test_it_clears_the_flag_when_utilisation_comes_back(
    booking, node, queued, django_capture_on_commit_callbacks
):
    captured = django_capture_on_commit_callbacks
    feed(node, minute(10, 0), minute(11, 1), 2.0)
    assert flag(minute(11, 1), captured)["flagged"] == 1
    feed(node, minute(11, 2), minute(11, 9), 2.0)
    feed(node, minute(11, 10), minute(11, 40), 95.0, devices=[3])  # one device gets to work
    feed(node, minute(11, 10), minute(11, 40), 2.0, devices=[0, 1, 2])

    assert flag(minute(11, 15), captured) == {"flagged": 0, "unflagged": 1}
    assert reclaim(minute(11, 40), captured) == []

    booking.refresh_from_db()
    assert booking.idle_flagged_at is None and booking.status == BookingStatus.ACTIVE
    assert AuditEntry.objects.filter(
        action="booking.idle_unflag", object_id=str(booking.pk)
    ).exists()


def test_a_busy_device_after_the_flag_stops_the_reclaim_even_before_the_flag_is_cleared(
    booking,
    node,
    queued,
    django_capture_on_commit_callbacks,
):
    captured = django_capture_on_commit_callbacks
    feed(node, minute(10, 0), minute(11, 1), 0.0)
    assert flag(minute(11, 1), captured)["flagged"] == 1
    feed(node, minute(11, 2), minute(11, 31), 0.0, devices=[0, 1, 2])
    feed(node, minute(11, 2), minute(11, 31), 40.0, devices=[3])

    assert reclaim(minute(11, 31), captured) == []


@pytest.mark.parametrize(
    "case", ["no samples", "a gap", "a device never reports", "not running long enough"]
)
def test_it_never_flags_what_the_samples_cannot_show(
    booking, node, queued, django_capture_on_commit_callbacks, case
):
    captured = django_capture_on_commit_callbacks
    at = minute(11, 1)
    if case == "a gap":
        feed(node, minute(10, 0), minute(10, 20), 0.0)
        feed(
            node, minute(10, 45), minute(11, 1), 0.0
        )  # 25 minutes without a reading: the agent was down
    elif case == "a device never reports":
        feed(node, minute(10, 0), minute(11, 1), 0.0, devices=[0, 1, 2])
    elif case == "not running long enough":
        feed(node, minute(9, 0), minute(9, 50), 0.0)
        at = minute(9, 50)

    assert flag(at, captured) == {"flagged": 0, "unflagged": 0}
    booking.refresh_from_db()
    assert booking.idle_flagged_at is None


def test_it_does_not_reclaim_when_the_agent_went_silent_after_the_flag(
    booking, node, queued, django_capture_on_commit_callbacks
):
    captured = django_capture_on_commit_callbacks
    feed(node, minute(10, 0), minute(11, 1), 0.0)
    assert flag(minute(11, 1), captured)["flagged"] == 1

    assert reclaim(minute(11, 45), captured) == [], "no readings since the flag: unknown, not idle"
    booking.refresh_from_db()
    assert booking.status == BookingStatus.ACTIVE


def test_the_beat_tasks_run_the_services(booking, node, queued, django_capture_on_commit_callbacks):
    captured = django_capture_on_commit_callbacks
    feed(node, minute(10, 0), minute(11, 31), 0.0)
    with captured(execute=True):
        with time_machine.travel(minute(11, 1), tick=False):
            assert tasks.flag_idle() == {"flagged": 1, "unflagged": 0}
        with time_machine.travel(minute(11, 31), tick=False):
            assert tasks.reclaim_idle() == [booking.pk]
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.COMPLETED


def test_the_organisation_managers_get_the_idle_emails(booking, manager):
    for event, words in (
        ("idle_flagged", "unless used within 30 min"),
        ("reclaimed", "unused quota refunded"),
    ):
        mail.outbox.clear()
        assert booking_email_send(booking_id=booking.pk, event=event) == 1
        message = mail.outbox[0]
        assert manager.email in message.to and booking.user.email in message.to
        assert words in message.body and "under 5% utilisation for 60 min" in message.body
