"""Moving a booking: the old slot is kept until the new window is confirmed, then released free."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
import time_machine

from booking.models import Allocation, Booking, DiscountRule, QuotaGrant, QuotaLedgerEntry
from booking.services.allocation import booking_allocate
from booking.services.bookings import booking_cancel, booking_request
from booking.services.maintenance import maintenance_window_create
from booking.services.moves import booking_can_move, booking_move, pending_move_of
from booking.services.quotas import grant_balances
from testbed.errors import ServiceError
from testbed.models import AuditEntry
from tests.factories import (
    EquipmentTypeFactory,
    EquipmentUnitFactory,
    UserFactory,
    add_member,
    aware,
    make_pool,
)

pytestmark = pytest.mark.django_db

NOW = aware(2026, 12, 1, 8, 0)  # a Tuesday, 08:00 KST


@pytest.fixture(autouse=True)
def frozen(request):
    if request.node.get_closest_marker("redis"):  # the real worker runs on the real clock
        yield
        return
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def list_prices():
    DiscountRule.objects.all().delete()


@pytest.fixture
def lab():
    """One unit, weekdays 09–18, 30-minute slots, up to 2 h, 15-minute buffer."""
    t = EquipmentTypeFactory(
        code="HC-EMG",
        opens_at=dt.time(9),
        closes_at=dt.time(18),
        open_weekdays="01234",
        max_minutes=120,
        buffer_minutes=15,
        hourly_rate=20000,
    )
    EquipmentUnitFactory(equipment_type=t, code="HC-EMG-01")
    return t


@pytest.fixture
def gpus():
    return make_pool(nodes=1, per_node=4, code="GPU-H100")


def book(actor, org, code, start, end, quantity=1):
    booking = booking_request(
        actor=actor,
        organization=org,
        resource_code=code,
        quantity=quantity,
        start=start,
        end=end,
        purpose="연구",
    )
    return decide(booking)


def decide(booking):
    booking_allocate(booking_id=booking.pk)
    booking.refresh_from_db()
    return booking


def move(actor, booking, start, end):
    return booking_move(actor=actor, booking=booking, start=start, end=end, channel="api")


def held(booking) -> Decimal:
    return sum(
        QuotaLedgerEntry.objects.filter(booking=booking, kind__in=["hold", "release"]).values_list(
            "hours", flat=True
        ),
        Decimal(0),
    )


def test_it_keeps_the_old_slot_until_the_new_one_is_confirmed_then_releases_it_free(
    lab, org, member
):
    old = book(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    assert old.status == "confirmed"
    new = move(member, old, aware(2026, 12, 3, 14), aware(2026, 12, 3, 15))
    assert new.status == "pending" and new.replaces_id == old.pk
    old.refresh_from_db()
    assert old.status == "confirmed", "the old slot holds until the new one is confirmed"
    assert Allocation.objects.filter(booking=old, active=True).count() == 1

    new = decide(new)
    old.refresh_from_db()
    assert new.status == "confirmed"
    assert old.status == "cancelled"
    assert old.cancel_reason == f"Moved to booking #{new.pk}"
    assert old.final_price_krw == 0, "a move is never a late cancellation"
    assert not Allocation.objects.filter(booking=old, active=True).exists()
    assert Allocation.objects.filter(booking=new, active=True).count() == 1
    assert (new.purpose, new.quantity, new.user_id) == (old.purpose, old.quantity, old.user_id)


def test_it_moves_free_of_fee_even_inside_the_cancellation_limit(lab, org, member):
    old = book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    with time_machine.travel(aware(2026, 12, 1, 8, 30), tick=False):  # 30 min before the start
        new = decide(move(member, old, aware(2026, 12, 1, 14), aware(2026, 12, 1, 15)))
    old.refresh_from_db()
    assert new.status == "confirmed" and old.status == "cancelled"
    assert old.final_price_krw == 0
    assert not QuotaLedgerEntry.objects.filter(booking=old, kind="consume").exists()


def test_it_keeps_the_old_booking_when_the_new_window_is_taken(lab, org, member, manager):
    old = book(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    book(manager, org, "HC-EMG", aware(2026, 12, 3, 14), aware(2026, 12, 3, 15))
    new = decide(move(member, old, aware(2026, 12, 3, 14), aware(2026, 12, 3, 15)))
    old.refresh_from_db()
    assert new.status == "rejected" and new.rejection_code == "unavailable"
    assert new.alternatives, "the rejection offers the nearest windows that fit"
    assert old.status == "confirmed"
    assert Allocation.objects.filter(booking=old, active=True).count() == 1
    assert not AuditEntry.objects.filter(action="booking.move").exists()
    assert pending_move_of(old) is None
    # The booking can be moved again, to one of the alternatives.
    alt = new.alternatives[0]
    again = decide(
        move(
            member,
            old,
            dt.datetime.fromisoformat(alt["start"]),
            dt.datetime.fromisoformat(alt["end"]),
        )
    )
    assert again.status == "confirmed"


def test_it_moves_one_hour_later_on_the_same_unit(lab, org, member):
    """One unit: the new window overlaps the old one (and its buffer) on the very same unit."""
    old = book(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 12))
    new = decide(move(member, old, aware(2026, 12, 2, 11), aware(2026, 12, 2, 13)))
    old.refresh_from_db()
    assert new.status == "confirmed", new.rejection_detail
    assert old.status == "cancelled"
    unit = Allocation.objects.get(booking=new, active=True).unit
    assert unit.code == "HC-EMG-01"


def test_it_moves_one_hour_later_on_the_same_gpus(gpus, org, member):
    old = book(member, org, gpus.code, aware(2026, 12, 2, 10), aware(2026, 12, 2, 14), quantity=4)
    new = decide(move(member, old, aware(2026, 12, 2, 11), aware(2026, 12, 2, 15)))
    old.refresh_from_db()
    assert new.status == "confirmed", new.rejection_detail
    assert old.status == "cancelled"
    assert Allocation.objects.filter(booking=new, active=True).count() == 4


def test_the_released_slot_is_free_for_the_rest_of_the_batch(lab, org, member, manager):
    old = book(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    new = move(member, old, aware(2026, 12, 2, 14), aware(2026, 12, 2, 15))
    later = booking_request(
        actor=manager,
        organization=org,
        resource_code="HC-EMG",
        quantity=1,
        start=aware(2026, 12, 2, 10),
        end=aware(2026, 12, 2, 11),
    )
    booking_allocate(booking_id=new.pk)  # one batch decides both, the move first
    new.refresh_from_db()
    later.refresh_from_db()
    assert (new.status, later.status) == ("confirmed", "confirmed")


def test_at_the_quota_limit_a_move_of_the_same_size_succeeds(gpus, org, member):
    grant = QuotaGrant.objects.create(
        organization=org,
        scope=gpus.code,
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=Decimal("8"),
    )
    old = book(member, org, gpus.code, aware(2026, 12, 2, 10), aware(2026, 12, 2, 14), quantity=2)
    assert old.status == "confirmed"
    assert grant_balances([grant.pk])[grant.pk].remaining == Decimal("0")

    new = decide(move(member, old, aware(2026, 12, 4, 10), aware(2026, 12, 4, 14)))
    old.refresh_from_db()
    assert new.status == "confirmed", new.rejection_detail
    assert old.status == "cancelled"
    # The ledger balances: the old hold is released, the new one holds the same 8 unit-hours.
    assert held(old) == Decimal("0")
    assert held(new) == Decimal("8")
    assert grant_balances([grant.pk])[grant.pk].remaining == Decimal("0")
    assert not over_quota(new)


def over_quota(booking) -> bool:
    booking.refresh_from_db()
    return booking.over_quota


def test_a_bigger_move_over_a_hard_quota_is_rejected_and_the_old_booking_kept(gpus, org, member):
    grant = QuotaGrant.objects.create(
        organization=org,
        scope=gpus.code,
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=Decimal("8"),
    )
    old = book(member, org, gpus.code, aware(2026, 12, 2, 10), aware(2026, 12, 2, 14), quantity=2)
    new = decide(move(member, old, aware(2026, 12, 4, 10), aware(2026, 12, 4, 15)))
    old.refresh_from_db()
    assert new.status == "rejected" and new.rejection_code == "quota_exceeded"
    assert old.status == "confirmed"
    assert held(old) == Decimal("8")
    assert held(new) == Decimal("0")
    assert grant_balances([grant.pk])[grant.pk].remaining == Decimal("0")


def test_it_audits_the_request_and_the_move_naming_both_bookings(lab, org, member):
    old = book(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    new = decide(move(member, old, aware(2026, 12, 3, 14), aware(2026, 12, 3, 15)))
    asked = AuditEntry.objects.get(action="booking.move_request", object_id=str(old.pk))
    assert asked.actor == member and asked.channel == "api"
    assert asked.data["to"] == new.pk
    moved = AuditEntry.objects.get(action="booking.move", object_id=str(old.pk))
    assert (moved.from_state, moved.to_state) == ("confirmed", "cancelled")
    assert moved.data == {"from": old.pk, "to": new.pk}
    assert AuditEntry.objects.filter(
        action="booking.allocate", object_id=str(new.pk), to_state="confirmed"
    ).exists()


def test_it_refuses_a_second_pending_move_of_one_booking(lab, org, member):
    old = book(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    first = move(member, old, aware(2026, 12, 3, 14), aware(2026, 12, 3, 15))
    assert not booking_can_move(actor=member, booking=old)
    with pytest.raises(ServiceError) as exc:
        move(member, old, aware(2026, 12, 4, 14), aware(2026, 12, 4, 15))
    assert exc.value.status == 409 and exc.value.code == "invalid_state"
    assert f"#{first.pk}" in exc.value.message
    assert Booking.objects.filter(replaces=old).count() == 1
    # Cancelling the pending move (free) lets the booker ask for another window.
    booking_cancel(actor=member, booking=first, reason="다른 시간으로", channel="api")
    assert booking_can_move(actor=member, booking=old)
    assert move(member, old, aware(2026, 12, 4, 14), aware(2026, 12, 4, 15)).status == "pending"


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (aware(2026, 12, 2, 19), aware(2026, 12, 2, 20), "start"),  # after closing
        (aware(2026, 12, 2, 12), aware(2026, 12, 2, 11), "end"),  # ends before it starts
        (aware(2026, 12, 2, 10), aware(2026, 12, 2, 11), "start"),  # the same window
    ],
)
def test_it_refuses_a_bad_window_naming_the_field_and_changes_nothing(
    lab, org, member, start, end, field
):
    old = book(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    before = Booking.objects.count(), AuditEntry.objects.count()
    with pytest.raises(ServiceError) as exc:
        move(member, old, start, end)
    assert exc.value.field in (field, "start", "end")
    assert exc.value.status == 400
    assert (Booking.objects.count(), AuditEntry.objects.count()) == before
    old.refresh_from_db()
    assert old.status == "confirmed"


def test_only_confirmed_bookings_not_yet_started_move(lab, org, member):
    pending = booking_request(
        actor=member,
        organization=org,
        resource_code="HC-EMG",
        quantity=1,
        start=aware(2026, 12, 2, 10),
        end=aware(2026, 12, 2, 11),
    )
    with pytest.raises(ServiceError) as exc:
        move(member, pending, aware(2026, 12, 3, 10), aware(2026, 12, 3, 11))
    assert exc.value.code == "invalid_state"
    started = decide(pending)
    with time_machine.travel(aware(2026, 12, 2, 10, 5), tick=False):
        with pytest.raises(ServiceError) as exc:
            move(member, started, aware(2026, 12, 3, 10), aware(2026, 12, 3, 11))
    assert exc.value.code == "invalid_state" and "started" in exc.value.message


def test_who_may_move(lab, org, member, manager, outsider):
    colleague = UserFactory(username="colleague")
    add_member(org, colleague, "member")
    old = book(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    with pytest.raises(ServiceError) as exc:
        move(outsider, old, aware(2026, 12, 3, 10), aware(2026, 12, 3, 11))
    assert exc.value.status == 404
    with pytest.raises(ServiceError) as exc:
        move(colleague, old, aware(2026, 12, 3, 10), aware(2026, 12, 3, 11))
    assert exc.value.status == 403
    assert not booking_can_move(actor=colleague, booking=old)
    # A manager moves the member's booking: it stays the member's (they check in).
    new = move(manager, old, aware(2026, 12, 3, 10), aware(2026, 12, 3, 11))
    assert new.user_id == member.pk


def test_a_move_whose_booking_was_cancelled_meanwhile_is_rejected(lab, org, member):
    old = book(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    new = move(member, old, aware(2026, 12, 3, 14), aware(2026, 12, 3, 15))
    booking_cancel(actor=member, booking=old, reason="필요 없음", channel="api")
    new = decide(new)
    assert new.status == "rejected" and new.rejection_code == "move_obsolete"
    assert not Allocation.objects.filter(booking=new).exists()


def test_a_move_into_maintenance_is_rejected_and_the_old_booking_kept(lab, org, member, operator):
    old = book(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    new = move(member, old, aware(2026, 12, 3, 14), aware(2026, 12, 3, 15))
    maintenance_window_create(
        actor=operator,
        target=lab,
        start=aware(2026, 12, 3, 13),
        end=aware(2026, 12, 3, 16),
        reason="점검",
        channel="api",
    )
    new = decide(new)
    old.refresh_from_db()
    assert new.status == "rejected" and new.rejection_code == "maintenance"
    assert old.status == "confirmed"


def test_a_pinned_unit_stays_pinned(org, member):
    t = EquipmentTypeFactory(code="HC-MRI", max_minutes=120)
    EquipmentUnitFactory(equipment_type=t, code="MRI-A")
    EquipmentUnitFactory(equipment_type=t, code="MRI-B")
    old = booking_request(
        actor=member,
        organization=org,
        resource_code="HC-MRI",
        quantity=1,
        start=aware(2026, 12, 2, 10),
        end=aware(2026, 12, 2, 11),
        unit_code="MRI-B",
    )
    old = decide(old)
    new = decide(move(member, old, aware(2026, 12, 2, 10, 30), aware(2026, 12, 2, 11, 30)))
    assert new.status == "confirmed"
    assert Allocation.objects.get(booking=new).unit.code == "MRI-B"


def test_resources_needing_approval_are_not_moved(org, member):
    t = EquipmentTypeFactory(code="HC-CT", requires_approval=True)
    EquipmentUnitFactory(equipment_type=t)
    old = Booking.objects.create(
        organization=org,
        user=member,
        equipment_type=t,
        start=aware(2026, 12, 2, 10),
        end=aware(2026, 12, 2, 11),
        status="confirmed",
    )
    with pytest.raises(ServiceError) as exc:
        move(member, old, aware(2026, 12, 3, 10), aware(2026, 12, 3, 11))
    assert exc.value.code == "invalid_state"


@pytest.mark.postgres
def test_two_concurrent_moves_of_one_booking_leave_one_pending_move(
    transactional_db, lab, org, member, monkeypatch
):
    import threading

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    monkeypatch.setattr("booking.services.requests._enqueue_allocation", lambda booking: None)
    old = book(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt(day: int) -> None:
        from django.db import connection as own

        try:
            barrier.wait()
            move(member, old, aware(2026, 12, day, 14), aware(2026, 12, day, 15))
            outcomes.append("moved")
        except ServiceError as exc:
            outcomes.append(exc.code)
        finally:
            own.close()

    threads = [threading.Thread(target=attempt, args=(day,)) for day in (3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["invalid_state", "moved"]
    assert Booking.objects.filter(replaces=old).count() == 1


# --- with the real worker ----------------------------------------------------------------------


def _wait_decided(booking: Booking, seconds: float = 30) -> Booking:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        booking.refresh_from_db()
        if booking.status != "pending":
            return booking
        time.sleep(0.1)
    raise AssertionError(f"booking {booking.pk} still pending after {seconds} s")


@pytest.mark.redis
@pytest.mark.postgres
def test_the_worker_moves_a_booking_and_keeps_it_when_the_window_is_taken(
    transactional_db, celery_worker
):
    from tests.factories import OrganizationFactory

    # No frozen clock here: the worker runs in its own process, on real time.
    org = OrganizationFactory(slug="acme-w")
    member = UserFactory(username="member-w")
    add_member(org, member, "member")
    pool = make_pool(nodes=1, per_node=2, code="GPU-W")
    day = (dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=3)).astimezone(NOW.tzinfo)
    at = day.replace(hour=10, minute=0, second=0, microsecond=0)
    old = _wait_decided(
        booking_request(
            actor=member,
            organization=org,
            resource_code=pool.code,
            quantity=2,
            start=at,
            end=at + dt.timedelta(hours=2),
        )
    )
    assert old.status == "confirmed"
    moved = _wait_decided(move(member, old, at + dt.timedelta(hours=1), at + dt.timedelta(hours=3)))
    old.refresh_from_db()
    assert (moved.status, old.status) == ("confirmed", "cancelled")

    blocker = _wait_decided(
        booking_request(
            actor=member,
            organization=org,
            resource_code=pool.code,
            quantity=2,
            start=at + dt.timedelta(hours=5),
            end=at + dt.timedelta(hours=6),
        )
    )
    assert blocker.status == "confirmed"
    taken = _wait_decided(
        move(member, moved, at + dt.timedelta(hours=5), at + dt.timedelta(hours=6))
    )
    moved.refresh_from_db()
    assert taken.status == "rejected" and taken.alternatives
    assert moved.status == "confirmed"
    celery_worker.drain()
