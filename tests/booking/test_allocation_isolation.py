"""One bad booking never stalls the others: a batch isolates a booking whose decision raises."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.db import OperationalError, connection

from booking.allocator import END_OF_TIME, add_clipped, candidate_starts, find_alternatives
from booking.availability import slot_starts, timeline
from booking.models import Allocation, Booking, QuotaGrant, QuotaLedgerEntry
from booking.policy import Policy
from booking.services import allocation
from booking.services.allocation import MAX_ALLOCATION_ATTEMPTS, booking_allocate
from booking.services.bookings import booking_request, bookings_requeue_lost
from booking.services.quotas import QuotaBook, grant_balances, split_by_grant
from testbed.models import AuditEntry
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware, make_pool

pytestmark = pytest.mark.django_db

NOW = aware(2026, 12, 1, 8, 0)  # a Tuesday, 08:00 KST
UTC = dt.UTC


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def inline_tasks(monkeypatch):
    """Emails queued on commit are sent inline, so the test sees them in mail.outbox.

    (Celery's eager mode would close the test's database connection after each task.)"""
    from booking import tasks
    from booking.services.emails import booking_email_send

    def send_now(booking_id: int, event: str) -> int:
        return booking_email_send(booking_id=booking_id, event=event)

    monkeypatch.setattr(tasks.send_booking_email, "delay", send_now)


@pytest.fixture
def lab():
    """A weekday 09–18 lab type with two units, 30-minute slots, up to 2 h, 15 min buffer."""
    t = EquipmentTypeFactory(
        code="HC-EMG",
        opens_at=dt.time(9),
        closes_at=dt.time(18),
        open_weekdays="01234",
        max_minutes=120,
        buffer_minutes=15,
    )
    EquipmentUnitFactory(equipment_type=t, code="HC-EMG-01")
    EquipmentUnitFactory(equipment_type=t, code="HC-EMG-02")
    return t


def request(actor, org, code, start, end, quantity=1):
    return booking_request(
        actor=actor, organization=org, resource_code=code, quantity=quantity, start=start, end=end
    )


def day(hour: int) -> tuple[dt.datetime, dt.datetime]:
    return aware(2026, 12, 2, hour), aware(2026, 12, 2, hour + 1)


def poison(monkeypatch, method: str, booking_id: int, error: Exception) -> None:
    """Make one step of the batch raise whenever it touches this booking."""
    original = getattr(allocation.BatchResource, method)

    def wrapped(self, *args, **kwargs):
        touched = args[0] if args else None
        ids = {touched.pk} if isinstance(touched, Booking) else {b.pk for b in self.bookings}
        if booking_id in ids:
            raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(allocation.BatchResource, method, wrapped)


def statuses(*bookings) -> list[str]:
    return [Booking.objects.get(pk=b.pk).status for b in bookings]


def allocate_audits(booking) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action="booking.allocate", object_id=str(booking.pk)))


def assert_rejected_as_internal_error(booking, operator) -> None:
    booking.refresh_from_db()
    assert booking.status == "rejected"
    assert booking.rejection_code == "internal_error"
    assert "operators have been alerted" in booking.rejection_detail
    assert booking.alternatives == []
    assert not Allocation.objects.filter(booking=booking).exists()
    assert not QuotaLedgerEntry.objects.filter(booking=booking).exists()
    (audit,) = allocate_audits(booking)
    assert audit.data["rejection"] == "internal_error"
    assert audit.data["error"]
    alerts = [m for m in mail.outbox if operator.email in m.to]
    assert len(alerts) == 1 and f"#{booking.pk}" in alerts[0].subject
    assert "internal_error" in alerts[0].body or "error" in alerts[0].body.lower()


def test_it_rejects_the_one_booking_whose_decision_raises_and_decides_the_rest(
    lab,
    org,
    member,
    other_org,
    outsider,
    operator,
    monkeypatch,
    inline_tasks,
    django_capture_on_commit_callbacks,
    caplog,
):
    pool = make_pool(nodes=1, per_node=8)
    first = request(member, org, "HC-EMG", *day(10))
    bad = request(member, org, "HC-EMG", *day(10))
    third = request(member, org, "HC-EMG", *day(10))
    gpu = request(outsider, other_org, pool.code, *day(10), quantity=4)
    poison(monkeypatch, "place", bad.pk, RuntimeError("injected fault"))
    with django_capture_on_commit_callbacks(execute=True):
        assert booking_allocate(booking_id=first.pk) == "confirmed"
    # The bad booking's failed attempt left no phantom hold: the third still gets a unit.
    assert statuses(first, bad, third, gpu) == ["confirmed", "rejected", "confirmed", "confirmed"]
    assert_rejected_as_internal_error(bad, operator)
    assert "injected fault" in caplog.text
    # Each of the others was decided once, and their bookers were told.
    for b in (first, third, gpu):
        assert len(allocate_audits(b)) == 1
    assert {m.to[0] for m in mail.outbox} >= {member.email, outsider.email, operator.email}
    # Nothing is pending: the sweeper finds nothing, and the bad booking's task changes nothing.
    later = NOW + dt.timedelta(minutes=5)
    assert bookings_requeue_lost(older_than=dt.timedelta(minutes=1), now=later) == []
    with django_capture_on_commit_callbacks(execute=True):
        assert booking_allocate(booking_id=bad.pk) == "rejected"
    assert len(allocate_audits(bad)) == 1


def test_it_rejects_the_task_s_own_booking_when_its_decision_raises(
    lab, org, member, operator, monkeypatch, inline_tasks, django_capture_on_commit_callbacks
):
    bad = request(member, org, "HC-EMG", *day(10))
    others = [request(member, org, "HC-EMG", *day(h)) for h in (10, 12, 14)]
    poison(monkeypatch, "place", bad.pk, OverflowError("date value out of range"))
    with django_capture_on_commit_callbacks(execute=True):
        assert booking_allocate(booking_id=bad.pk) == "rejected"
    assert statuses(*others) == ["confirmed"] * 3
    assert_rejected_as_internal_error(bad, operator)


@pytest.mark.postgres
def test_a_database_error_in_one_booking_rolls_back_only_that_booking(
    lab, org, member, operator, monkeypatch, inline_tasks, django_capture_on_commit_callbacks
):
    """On PostgreSQL a failed statement aborts the whole transaction: the batch must recover."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL aborts a transaction on error; SQLite does not")
    QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=Decimal(100),
        enforcement="hard",
    )
    first, bad, third = (request(member, org, "HC-EMG", *day(h)) for h in (10, 12, 14))
    real_reserve = QuotaBook.reserve

    def reserve(self, *, booking, resource, now, **kwargs):
        over = real_reserve(self, booking=booking, resource=resource, now=now, **kwargs)
        if booking.pk == bad.pk:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")
        return over

    monkeypatch.setattr(QuotaBook, "reserve", reserve)
    with django_capture_on_commit_callbacks(execute=True):
        assert booking_allocate(booking_id=first.pk) == "confirmed"
    assert statuses(first, bad, third) == ["confirmed", "rejected", "confirmed"]
    assert_rejected_as_internal_error(bad, operator)
    (grant,) = QuotaGrant.objects.filter(organization=org)
    assert grant_balances([grant.pk])[grant.pk].held == Decimal(2)  # first and third, not bad


def test_a_failure_before_the_per_booking_loop_does_not_stall_the_queue(
    lab, org, member, operator, monkeypatch, inline_tasks, django_capture_on_commit_callbacks
):
    """The poisoned booking is claimed by every batch: each task falls back to its own booking."""
    bad = request(member, org, "HC-EMG", *day(10))
    good = request(member, org, "HC-EMG", *day(12))
    poison(monkeypatch, "span", bad.pk, OverflowError("date value out of range"))
    with django_capture_on_commit_callbacks(execute=True):
        assert booking_allocate(booking_id=good.pk) == "confirmed"
    assert statuses(bad) == ["pending"]
    with django_capture_on_commit_callbacks(execute=True):
        assert booking_allocate(booking_id=bad.pk) == "rejected"
    assert_rejected_as_internal_error(bad, operator)
    later = NOW + dt.timedelta(minutes=5)
    assert bookings_requeue_lost(older_than=dt.timedelta(minutes=1), now=later) == []


def test_a_batch_whose_database_work_fails_counts_the_failure_only_against_the_culprit(
    lab, org, member, monkeypatch
):
    bad = request(member, org, "HC-EMG", *day(10))
    good = request(member, org, "HC-EMG", *day(12))
    timeout = OperationalError("canceling statement due to statement timeout")
    poison(monkeypatch, "span", bad.pk, timeout)
    assert booking_allocate(booking_id=good.pk) == "confirmed"
    with pytest.raises(OperationalError):
        booking_allocate(booking_id=bad.pk)
    bad.refresh_from_db()
    assert (bad.status, bad.allocation_attempts) == ("pending", 1)


def test_repeated_transient_failures_end_in_a_rejection_after_a_bounded_number_of_tries(
    lab, org, member, operator, monkeypatch, inline_tasks, django_capture_on_commit_callbacks
):
    booking = request(member, org, "HC-EMG", *day(10))

    def claim(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(allocation, "_claim", claim)
    for attempt in range(1, MAX_ALLOCATION_ATTEMPTS + 1):
        with pytest.raises(OperationalError):
            booking_allocate(booking_id=booking.pk)
        booking.refresh_from_db()
        assert (booking.status, booking.allocation_attempts) == ("pending", attempt)
    with django_capture_on_commit_callbacks(execute=True):
        assert booking_allocate(booking_id=booking.pk) == "rejected"
    assert_rejected_as_internal_error(booking, operator)


def test_an_open_ended_quota_grant_in_the_database_no_longer_stalls_anything(
    lab, org, member, other_org, outsider, django_capture_on_commit_callbacks
):
    """Created directly (the API now refuses it): one day after 9999-12-31 used to raise."""
    grant = QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(9999, 12, 31),
        limit_hours=Decimal(1000),
        enforcement="hard",
    )
    mine = request(member, org, "HC-EMG", *day(10))
    theirs = request(outsider, other_org, "HC-EMG", *day(12))
    with django_capture_on_commit_callbacks(execute=True):
        assert booking_allocate(booking_id=mine.pk) == "confirmed"
    assert statuses(theirs) == ["confirmed"]
    assert grant_balances([grant.pk])[grant.pk].held == Decimal(1)


def test_quota_period_math_handles_the_last_day_of_the_calendar(lab, org):
    grant = QuotaGrant(
        pk=1,
        organization=org,
        scope="*",
        period_start=dt.date(9999, 12, 1),
        period_end=dt.date(9999, 12, 31),
        limit_hours=Decimal(10),
    )
    start, end = aware(9999, 12, 31, 22), aware(9999, 12, 31, 23)
    assert split_by_grant([grant], lab, 2, start, end) == [(grant, Decimal(2))]


def test_bookings_near_the_end_of_the_calendar_are_decided_without_raising(
    lab, org, operator, django_capture_on_commit_callbacks
):
    """Inserted directly (the API bounds dates now): the alternatives search used to overflow."""
    pool = make_pool(nodes=1, per_node=8)
    QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(9999, 12, 1),
        period_end=dt.date(9999, 12, 31),
        limit_hours=Decimal(1000),
        enforcement="hard",
    )

    def insert(quantity=1, **kw):
        return Booking.objects.create(organization=org, user=operator, quantity=quantity, **kw)

    near_end = aware(9999, 12, 30, 10), aware(9999, 12, 30, 11)
    labs = [insert(equipment_type=lab, start=near_end[0], end=near_end[1]) for _ in range(3)]
    last_hour = insert(
        pool=pool, quantity=8, start=aware(9999, 12, 31, 22), end=aware(9999, 12, 31, 23)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert booking_allocate(booking_id=labs[0].pk) == "confirmed"
    assert statuses(*labs, last_hour) == ["confirmed", "confirmed", "rejected", "confirmed"]
    labs[2].refresh_from_db()
    assert labs[2].rejection_code == "unavailable"  # decided, not an internal error
    # Past END_OF_TIME the buffer saturates: the allocation still covers the whole booking.
    (end,) = Allocation.objects.filter(booking=labs[0]).values_list("end", flat=True)
    assert near_end[1] <= end <= near_end[1] + dt.timedelta(minutes=15)


# --- the pure search near datetime.max ------------------------------------------------------

POLICY = Policy(slot_minutes=60, min_minutes=60, max_minutes=24 * 60 * 7)


def test_add_clipped_saturates_at_the_end_of_time_instead_of_overflowing():
    late = dt.datetime.max.replace(tzinfo=UTC) - dt.timedelta(hours=1)
    assert add_clipped(late, dt.timedelta(days=14)) == late  # never moves backwards
    assert add_clipped(END_OF_TIME - dt.timedelta(hours=1), dt.timedelta(days=14)) == END_OF_TIME
    assert add_clipped(NOW, dt.timedelta(hours=2)) == NOW + dt.timedelta(hours=2)


def test_the_alternatives_search_stops_at_the_end_of_time():
    start = END_OF_TIME - dt.timedelta(hours=3)
    near_max = dt.datetime.max.replace(tzinfo=UTC) - dt.timedelta(minutes=30)
    found = find_alternatives(
        lambda s, e: True,
        POLICY,
        start=start,
        duration=dt.timedelta(hours=2),
        until=dt.datetime.max.replace(tzinfo=UTC),
        busy_ends=[near_max],
    )
    assert found and all(e <= END_OF_TIME for _s, e in found)
    buffered = Policy(slot_minutes=60, min_minutes=60, max_minutes=600, buffer_minutes=60)
    assert candidate_starts(
        buffered, after=start, until=dt.datetime.max.replace(tzinfo=UTC), busy_ends=[near_max]
    )


def test_availability_sweeps_stop_at_the_end_of_time():
    hi = dt.datetime.max.replace(tzinfo=UTC)
    lo = END_OF_TIME - dt.timedelta(days=1)
    assert slot_starts(POLICY, lo, hi, dt.timedelta(hours=1))
    steps = timeline([1], {1: [(lo, hi)]}, lo, hi)
    assert steps and steps[0][2] == 0
