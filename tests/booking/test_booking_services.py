"""Booking services against the real database (PostgreSQL under `make test`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from booking.models import (
    Allocation,
    Booking,
    DiscountRule,
    Qualification,
    QuotaGrant,
    QuotaLedgerEntry,
)
from booking.services.allocation import booking_allocate
from booking.services.bookings import (
    booking_approve,
    booking_cancel,
    booking_check_in,
    booking_check_out,
    booking_reject,
    booking_request,
    bookings_complete_ended,
    bookings_mark_no_shows,
    bookings_requeue_lost,
    bookings_start_pool_sessions,
)
from booking.services.maintenance import maintenance_window_create
from booking.services.quotas import grant_balances
from testbed.errors import ServiceError
from testbed.models import AuditEntry
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware, make_pool

pytestmark = pytest.mark.django_db

NOW = aware(2026, 12, 1, 8, 0)  # a Tuesday, 08:00 KST


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def list_prices():
    """The default discount rules (migration 0004) would halve the Gwangju test org's prices."""
    DiscountRule.objects.all().delete()


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
        hourly_rate=20000,
    )
    EquipmentUnitFactory(equipment_type=t, code="HC-EMG-01")
    EquipmentUnitFactory(equipment_type=t, code="HC-EMG-02")
    return t


def request(actor, org, code, start, end, quantity=1, **kw):
    return booking_request(
        actor=actor,
        organization=org,
        resource_code=code,
        quantity=quantity,
        start=start,
        end=end,
        **kw,
    )


def decide(booking):
    booking_allocate(booking_id=booking.pk)
    booking.refresh_from_db()
    return booking


def test_it_confirms_then_rejects_with_alternatives_when_units_run_out(lab, org, member):
    s, e = aware(2026, 12, 2, 10), aware(2026, 12, 2, 11)
    first, second, third = (decide(request(member, org, "HC-EMG", s, e)) for _ in range(3))
    assert [first.status, second.status, third.status] == ["confirmed", "confirmed", "rejected"]
    assert third.rejection_code == "unavailable"
    assert third.alternatives, "a rejection for capacity lists alternatives"
    assert len(third.alternatives) <= 5
    assert dt.datetime.fromisoformat(third.alternatives[0]["start"]) >= s
    units = set(Allocation.objects.filter(active=True).values_list("unit__code", flat=True))
    assert units == {"HC-EMG-01", "HC-EMG-02"}


def test_it_keeps_the_buffer_free_between_bookings(lab, org, member):
    EquipmentTypeFactory  # noqa: B018 - one unit only for this test
    lab.units.filter(code="HC-EMG-02").update(status="retired")
    decide(request(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11)))
    too_close = decide(
        request(member, org, "HC-EMG", aware(2026, 12, 2, 11), aware(2026, 12, 2, 12))
    )
    assert too_close.status == "rejected"
    after_buffer = too_close.alternatives[0]
    assert after_buffer["start"].startswith(
        "2026-12-02T11:30"
    )  # 11:00 + 15 min buffer, aligned to 30 min


def test_it_refuses_bad_requests_at_once_and_stores_nothing(lab, org, member):
    cases = [
        (aware(2026, 12, 2, 10), aware(2026, 12, 2, 9), "invalid"),
        (aware(2026, 11, 30, 10), aware(2026, 11, 30, 11), "lead_time"),
        (aware(2026, 12, 2, 10, 10), aware(2026, 12, 2, 11, 10), "not_aligned"),
        (aware(2026, 12, 2, 10), aware(2026, 12, 2, 14), "too_long"),
        (aware(2026, 12, 2, 17), aware(2026, 12, 2, 19), "outside_hours"),
        (aware(2026, 12, 5, 10), aware(2026, 12, 5, 11), "outside_hours"),  # Saturday
    ]
    for start, end, code in cases:
        with pytest.raises(ServiceError) as exc:
            request(member, org, "HC-EMG", start, end)
        assert exc.value.code == code, (start, end, exc.value.message)
        assert exc.value.field
    with pytest.raises(ServiceError) as exc:
        request(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11), quantity=3)
    assert exc.value.code == "capacity"
    with pytest.raises(ServiceError) as exc:
        request(member, org, "NOPE", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    assert exc.value.field == "resource"
    assert Booking.objects.count() == 0
    assert AuditEntry.objects.count() == 0


def test_it_refuses_outsiders_and_hides_the_organisation(lab, org, outsider):
    with pytest.raises(ServiceError) as exc:
        request(outsider, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    assert exc.value.status == 404


def test_it_requires_a_valid_qualification(lab, org, member):
    lab.requires_qualification = True
    lab.save()
    s, e = aware(2026, 12, 2, 10), aware(2026, 12, 2, 11)
    with pytest.raises(ServiceError) as exc:
        request(member, org, "HC-EMG", s, e)
    assert exc.value.code == "qualification_required" and exc.value.status == 403
    Qualification.objects.create(user=member, equipment_type=lab, valid_until=dt.date(2026, 12, 1))
    with pytest.raises(ServiceError) as exc:
        request(member, org, "HC-EMG", s, e)
    assert "expired on 2026-12-01" in exc.value.message
    Qualification.objects.filter(user=member).update(valid_until=dt.date(2027, 6, 30))
    assert request(member, org, "HC-EMG", s, e).status == "pending"


def test_it_decides_each_booking_once_even_when_asked_twice(lab, org, member):
    booking = request(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    assert booking_allocate(booking_id=booking.pk) == "confirmed"
    assert booking_allocate(booking_id=booking.pk) == "confirmed"
    assert Allocation.objects.filter(booking=booking).count() == 1
    assert AuditEntry.objects.filter(action="booking.allocate").count() == 1


def test_it_holds_the_slot_while_awaiting_approval_and_releases_it_on_reject(
    lab, org, member, operator
):
    lab.requires_approval = True
    lab.save()
    lab.units.filter(code="HC-EMG-02").update(status="retired")
    s, e = aware(2026, 12, 2, 10), aware(2026, 12, 2, 11)
    first = decide(request(member, org, "HC-EMG", s, e))
    assert first.status == "awaiting_approval"
    assert decide(request(member, org, "HC-EMG", s, e)).status == "rejected"
    with pytest.raises(ServiceError):
        booking_approve(actor=member, booking=first, channel="api")
    booking_reject(actor=operator, booking=first, reason="lab closed for audit", channel="api")
    assert not Allocation.objects.filter(booking=first, active=True).exists()
    assert decide(request(member, org, "HC-EMG", s, e)).status == "awaiting_approval"


def test_it_confirms_on_approval(lab, org, member, operator):
    lab.requires_approval = True
    lab.save()
    booking = decide(request(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11)))
    booking = booking_approve(actor=operator, booking=booking, channel="admin")
    assert booking.status == "confirmed"
    entry = AuditEntry.objects.get(action="booking.approve")
    assert (entry.from_state, entry.to_state, entry.channel, entry.actor) == (
        "awaiting_approval",
        "confirmed",
        "admin",
        operator,
    )


def test_it_releases_the_unit_on_cancel(lab, org, member, manager, outsider):
    lab.units.filter(code="HC-EMG-02").update(status="retired")
    s, e = aware(2026, 12, 2, 10), aware(2026, 12, 2, 11)
    booking = decide(request(member, org, "HC-EMG", s, e))
    with pytest.raises(ServiceError) as exc:
        booking_cancel(actor=outsider, booking=booking, reason="x", channel="api")
    assert exc.value.status == 404
    with pytest.raises(ServiceError) as exc:
        booking_cancel(actor=member, booking=booking, reason="  ", channel="api")
    assert exc.value.field == "reason"
    booking_cancel(actor=manager, booking=booking, reason="project moved", channel="api")
    booking.refresh_from_db()
    assert booking.status == "cancelled" and booking.final_price_krw == 0
    with pytest.raises(ServiceError) as exc:
        booking_cancel(actor=manager, booking=booking, reason="again", channel="api")
    assert exc.value.code == "invalid_state"
    assert decide(request(member, org, "HC-EMG", s, e)).status == "confirmed"


def test_it_bills_a_late_cancellation(lab, org, member):
    booking = decide(request(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10)))
    with time_machine.travel(
        aware(2026, 12, 1, 8, 30), tick=False
    ):  # 30 min before: inside the 60-min rule
        booking_cancel(actor=member, booking=booking, reason="sick", channel="api")
    booking.refresh_from_db()
    assert booking.final_price_krw == 20000


def test_it_checks_in_and_out_and_prices_actual_use_with_discount(lab, org, member):
    DiscountRule.objects.create(name="광주 소재 기업", region="gwangju", percent=Decimal("50"))
    booking = decide(request(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 11)))
    with time_machine.travel(aware(2026, 12, 1, 9, 5), tick=False):
        booking_check_in(actor=member, booking=booking, channel="web")
    with time_machine.travel(aware(2026, 12, 1, 10, 5), tick=False):
        booking = booking_check_out(actor=member, booking=booking, channel="web")
    assert booking.status == "completed"
    assert booking.final_price_krw == 10000  # 1 h used × 20,000 won × 50%
    alloc = Allocation.objects.get(booking=booking)
    assert alloc.end == aware(2026, 12, 1, 10, 20)  # the rest of the slot is released, buffer kept


def test_it_marks_no_shows_after_the_grace_period_and_releases_the_slot(lab, org, member):
    booking = decide(request(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10)))
    with time_machine.travel(aware(2026, 12, 1, 9, 10), tick=False):
        assert bookings_mark_no_shows() == 0
    with time_machine.travel(aware(2026, 12, 1, 9, 16), tick=False):
        assert bookings_mark_no_shows() == 1
        assert bookings_mark_no_shows() == 0
    booking.refresh_from_db()
    assert booking.status == "no_show" and booking.final_price_krw == 20000
    assert not Allocation.objects.filter(booking=booking, active=True).exists()


def test_it_starts_and_completes_pool_bookings(org, member):
    pool = make_pool(nodes=1, per_node=8)
    booking = decide(
        request(member, org, pool.code, aware(2026, 12, 1, 9), aware(2026, 12, 1, 12), quantity=2)
    )
    with time_machine.travel(aware(2026, 12, 1, 9, 1), tick=False):
        assert bookings_start_pool_sessions() == 1
    with time_machine.travel(aware(2026, 12, 1, 12, 1), tick=False):
        assert bookings_complete_ended() == 1
    booking.refresh_from_db()
    assert booking.status == "completed"
    assert booking.final_price_krw == 139 * 2 * 3


def test_it_packs_pool_requests_best_fit_and_takes_whole_nodes_for_big_ones(org, member):
    pool = make_pool(nodes=3, per_node=8)
    s, e = aware(2026, 12, 2, 0), aware(2026, 12, 2, 4)
    a = decide(request(member, org, pool.code, s, e, quantity=4))
    b = decide(request(member, org, pool.code, s, e, quantity=3))
    nodes = lambda bk: set(bk.allocations.values_list("node_id", flat=True))  # noqa: E731
    assert nodes(a) == nodes(b)  # the 3 go where 4 are left, keeping two nodes whole
    big = decide(request(member, org, pool.code, s, e, quantity=16))
    assert big.status == "confirmed" and len(nodes(big)) == 2
    with pytest.raises(ServiceError) as exc:
        request(member, org, pool.code, s, e, quantity=12)
    assert exc.value.code == "node_shape"


def test_it_refuses_over_a_hard_quota_and_flags_a_soft_one(org, member):
    pool = make_pool(nodes=1, per_node=8)
    grant = QuotaGrant.objects.create(
        organization=org,
        scope=pool.code,
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=Decimal("10"),
    )
    ok = decide(
        request(member, org, pool.code, aware(2026, 12, 2, 0), aware(2026, 12, 2, 4), quantity=2)
    )
    assert ok.status == "confirmed"
    assert grant_balances([grant.pk])[grant.pk].remaining == Decimal("2")
    over = decide(
        request(member, org, pool.code, aware(2026, 12, 3, 0), aware(2026, 12, 3, 2), quantity=2)
    )
    assert over.status == "rejected" and over.rejection_code == "quota_exceeded"
    assert "only 2 remain" in over.rejection_detail
    grant.enforcement = "soft"
    grant.save()
    soft = decide(
        request(member, org, pool.code, aware(2026, 12, 3, 0), aware(2026, 12, 3, 2), quantity=2)
    )
    assert soft.status == "confirmed" and soft.over_quota
    booking_cancel(actor=member, booking=ok, reason="done early", channel="api")
    assert grant_balances([grant.pk])[grant.pk].remaining == Decimal("6")


def test_it_charges_each_period_for_its_part_of_a_straddling_booking(org, member):
    pool = make_pool(nodes=1, per_node=8)
    nov = QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 12, 2),
        limit_hours=Decimal("100"),
    )
    dec = QuotaGrant.objects.create(
        organization=org,
        scope=pool.code,
        period_start=dt.date(2026, 12, 3),
        period_end=dt.date(2026, 12, 31),
        limit_hours=Decimal("100"),
    )
    decide(
        request(member, org, pool.code, aware(2026, 12, 2, 22), aware(2026, 12, 3, 3), quantity=1)
    )
    held = dict(QuotaLedgerEntry.objects.values_list("grant_id", "hours"))
    assert held == {nov.pk: Decimal("2.0000"), dec.pk: Decimal("3.0000")}


def test_it_marks_bookings_hit_by_maintenance_and_emails_them(
    lab, org, member, manager, operator, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = (
        True  # the email task runs inline here; workers are tested elsewhere
    )
    from testbed.celery import app

    app.conf.task_always_eager = True
    try:
        booking = decide(
            request(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
        )
        unit = Allocation.objects.get(booking=booking).unit
        mail.outbox.clear()
        with pytest.raises(ServiceError):
            maintenance_window_create(
                actor=operator,
                target=unit,
                start=aware(2026, 12, 2, 11),
                end=aware(2026, 12, 2, 10),
                reason="x",
                channel="api",
            )
        from django.db import transaction

        with transaction.atomic():
            window, affected = maintenance_window_create(
                actor=operator,
                target=unit,
                start=aware(2026, 12, 2, 9),
                end=aware(2026, 12, 2, 12),
                reason="센서 교정 / sensor calibration",
                channel="api",
            )
        assert affected == [booking.pk]
        booking.refresh_from_db()
        assert booking.affected_by_maintenance == window and booking.alternatives
    finally:
        app.conf.task_always_eager = False


def test_it_requeues_bookings_whose_task_was_lost(lab, org, member):
    booking = request(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    assert bookings_requeue_lost(older_than=dt.timedelta(minutes=1)) == []
    with time_machine.travel(NOW + dt.timedelta(minutes=2), tick=False):
        assert bookings_requeue_lost(older_than=dt.timedelta(minutes=1)) == [booking.pk]


def test_it_never_double_books_even_when_the_code_is_bypassed(lab, org, member):
    from django.db import IntegrityError, connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("the exclusion constraint exists on PostgreSQL only")
    booking = decide(request(member, org, "HC-EMG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11)))
    alloc = Allocation.objects.get(booking=booking)
    other = Booking.objects.create(
        organization=org,
        user=member,
        equipment_type=lab,
        quantity=1,
        start=aware(2026, 12, 2, 10, 30),
        end=aware(2026, 12, 2, 11, 30),
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Allocation.objects.create(booking=other, unit=alloc.unit, start=other.start, end=other.end)
    # back-to-back is fine: ranges are half-open
    Allocation.objects.create(
        booking=other, unit=alloc.unit, start=alloc.end, end=alloc.end + dt.timedelta(hours=1)
    )
    assert timezone.is_aware(alloc.start)


def test_one_task_decides_the_pending_queue_in_order_and_each_sees_the_ones_before(
    lab, org, member, django_assert_max_num_queries
):
    """Batching: the task of the first booking decides them all, oldest first, in one
    transaction; later bookings of the batch see the units and devices placed before them."""
    pool = make_pool(nodes=2, per_node=8)
    s, e = aware(2026, 12, 2, 10), aware(2026, 12, 2, 11)
    lab_bookings = [request(member, org, "HC-EMG", s, e) for _ in range(3)]
    # 11:00 is inside the 15-minute buffer after the 10:00 bookings on both units.
    too_close = request(member, org, "HC-EMG", aware(2026, 12, 2, 11), aware(2026, 12, 2, 12))
    gpu = [request(member, org, pool.code, s, e, quantity=q) for q in (4, 3, 8, 2)]
    with django_assert_max_num_queries(48):  # one at a time it took 13 per booking: 104
        assert booking_allocate(booking_id=lab_bookings[0].pk) == "confirmed"
    for b in [*lab_bookings, too_close, *gpu]:
        b.refresh_from_db()
    assert [b.status for b in lab_bookings] == ["confirmed", "confirmed", "rejected"]
    assert too_close.status == "rejected" and too_close.alternatives
    # Alternatives of a rejection made mid-batch count the units placed before it.
    assert too_close.alternatives[0]["start"].startswith("2026-12-02T11:30")
    assert lab_bookings[2].alternatives[0]["start"].startswith("2026-12-02T11:30")
    assert [b.status for b in gpu] == ["confirmed", "confirmed", "confirmed", "rejected"]
    node = lambda bk: set(bk.allocations.values_list("node_id", flat=True))  # noqa: E731
    assert node(gpu[0]) == node(gpu[1]) != node(gpu[2])  # best fit still packs the 3 with the 4
    held = list(
        Allocation.objects.filter(active=True, device__isnull=False).values_list(
            "device_id", flat=True
        )
    )
    assert len(held) == len(set(held)) == 4 + 3 + 8
    assert AuditEntry.objects.filter(action="booking.allocate").count() == 8
    # The other bookings' own tasks come later and change nothing.
    for b in [*lab_bookings, too_close, *gpu]:
        assert booking_allocate(booking_id=b.pk) == b.status
    assert AuditEntry.objects.filter(action="booking.allocate").count() == 8


def test_a_batch_of_one_decides_only_the_booking_asked_for(lab, org, member, settings):
    settings.TESTBED_ALLOCATION_BATCH = 1
    s, e = aware(2026, 12, 2, 10), aware(2026, 12, 2, 11)
    first, second = (request(member, org, "HC-EMG", s, e) for _ in range(2))
    assert booking_allocate(booking_id=second.pk) == "confirmed"
    first.refresh_from_db()
    assert first.status == "pending"


def test_a_batch_never_takes_bookings_waiting_for_a_contested_round(lab, org, member):
    s, e = aware(2026, 12, 2, 10), aware(2026, 12, 2, 11)
    waiting, asked = (request(member, org, "HC-EMG", s, e) for _ in range(2))
    from booking.models import ContestedRound

    pool = make_pool(nodes=1, per_node=8)
    contested = ContestedRound.objects.create(
        pool=pool,
        window_start=aware(2026, 12, 7, 0),
        window_end=aware(2026, 12, 14, 0),
        cutoff_at=aware(2026, 12, 3, 0),
    )
    Booking.objects.filter(pk=waiting.pk).update(round=contested)
    assert booking_allocate(booking_id=asked.pk) == "confirmed"
    waiting.refresh_from_db()
    assert waiting.status == "pending"
