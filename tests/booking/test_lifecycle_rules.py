"""The lifecycle charges the same non-use the same way (issue 8, section 6).

One rule set (booking/lifecycle.py) decides what each transition charges, and quota and price
follow it identically; use counts from max(check-in, start) to min(check-out, end) in quota,
price and every report; ended bookings are history; unapproved requests expire at their start.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core import mail

from booking.choices import LedgerKind
from booking.lifecycle import cancellation_charge, used_span
from booking.models import Allocation, Booking, BookingUsage, DiscountRule, QuotaGrant
from booking.reports import usage_report
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
    bookings_start_pool_sessions,
)
from booking.services.emails import booking_email_send
from booking.services.expiry import bookings_expire_unapproved
from booking.services.quotas import grant_balances
from booking.services.usage import usage_rollup_bookings, usage_rollup_days
from booking.utilisation import utilisation_report
from testbed.errors import ServiceError
from testbed.models import AuditEntry
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware, make_pool

pytestmark = pytest.mark.django_db

NOW = aware(2026, 12, 1, 7, 0)  # a Tuesday, 07:00 KST
RATE = 20000


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def list_prices():
    """The default discount rules (migration 0004) would halve the test org's prices."""
    DiscountRule.objects.all().delete()


@pytest.fixture
def lab():
    """A weekday 09–18 lab type, three units, 60 min free cancellation, 15 min no-show grace."""
    t = EquipmentTypeFactory(
        code="HC-EMG",
        opens_at=dt.time(9),
        closes_at=dt.time(18),
        open_weekdays="01234",
        max_minutes=120,
        hourly_rate=RATE,
        cancel_free_minutes=60,
        no_show_grace_minutes=15,
    )
    for n in range(1, 4):
        EquipmentUnitFactory(equipment_type=t, code=f"HC-EMG-0{n}")
    return t


@pytest.fixture
def grant(org):
    return QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=Decimal("100"),
    )


def book(member, org, code, start, end, quantity=1):
    booking = booking_request(
        actor=member,
        organization=org,
        resource_code=code,
        quantity=quantity,
        start=start,
        end=end,
        channel="api",
    )
    booking_allocate(booking_id=booking.pk)
    booking.refresh_from_db()
    return booking


def consumed(booking) -> Decimal:
    return sum(
        booking.ledger.filter(kind=LedgerKind.CONSUME).values_list("hours", flat=True),
        Decimal(0),
    )


def held(booking) -> Decimal:
    return sum(
        booking.ledger.filter(kind__in=[LedgerKind.HOLD, LedgerKind.RELEASE]).values_list(
            "hours", flat=True
        ),
        Decimal(0),
    )


# --- ended bookings are history -------------------------------------------------------------


def test_it_refuses_to_cancel_a_booking_whose_end_has_passed(api, lab, org, member, grant):
    booking = book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    assert booking.status == "confirmed" and held(booking) == Decimal("1")
    with time_machine.travel(aware(2026, 12, 1, 10, 30), tick=False):  # no sweeper has run
        response = api(member).post(
            f"/api/v1/bookings/{booking.pk}/cancel", {"reason": "forgot"}, format="json"
        )
    assert response.status_code == 409, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "invalid_state" and "history" in body["detail"]
    booking.refresh_from_db()
    assert booking.status == "confirmed" and held(booking) == Decimal("1")
    assert not AuditEntry.objects.filter(action="booking.cancel").exists()
    # The no-show sweep settles it as a no-show, as it would have without the attempt.
    with time_machine.travel(aware(2026, 12, 1, 10, 31), tick=False):
        assert bookings_mark_no_shows() == 1
    booking.refresh_from_db()
    assert booking.status == "no_show" and consumed(booking) == Decimal("1")


def test_it_refuses_every_lifecycle_action_after_the_end(lab, org, member, operator):
    lab.requires_approval = True
    lab.save()
    awaiting = book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    assert awaiting.status == "awaiting_approval"
    lab.requires_approval = False
    lab.save()
    confirmed = book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    after = aware(2026, 12, 1, 10, 0)
    attempts = [
        lambda: booking_approve(actor=operator, booking=awaiting, channel="api", now=after),
        lambda: booking_reject(
            actor=operator, booking=awaiting, reason="late", channel="api", now=after
        ),
        lambda: booking_check_in(actor=member, booking=confirmed, channel="api", now=after),
        lambda: booking_cancel(
            actor=member, booking=confirmed, reason="late", channel="api", now=after
        ),
    ]
    for attempt in attempts:
        with pytest.raises(ServiceError) as exc:
            attempt()
        assert exc.value.status == 409 and exc.value.code == "invalid_state", exc.value.message
    awaiting.refresh_from_db()
    confirmed.refresh_from_db()
    assert (awaiting.status, confirmed.status) == ("awaiting_approval", "confirmed")


def test_it_refuses_to_cancel_a_checked_in_booking_and_says_to_check_out(lab, org, member):
    booking = book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    booking_check_in(actor=member, booking=booking, channel="api", now=aware(2026, 12, 1, 9))
    with pytest.raises(ServiceError) as exc:
        booking_cancel(
            actor=member, booking=booking, reason="x", channel="api", now=aware(2026, 12, 1, 9, 5)
        )
    assert exc.value.status == 409 and "check out" in exc.value.message


# --- cancelling after the start counts like a no-show -----------------------------------------


def test_a_cancellation_after_the_start_is_charged_like_a_no_show(lab, org, member, grant):
    s, e = aware(2026, 12, 1, 9), aware(2026, 12, 1, 10)
    cancelled = book(member, org, "HC-EMG", s, e)
    no_show = book(member, org, "HC-EMG", s, e)
    booking_cancel(
        actor=member,
        booking=cancelled,
        reason="ran late",
        channel="api",
        now=s + dt.timedelta(minutes=5),
    )
    with time_machine.travel(aware(2026, 12, 1, 9, 20), tick=False):
        assert bookings_mark_no_shows() == 1
    cancelled.refresh_from_db()
    no_show.refresh_from_db()
    assert (cancelled.status, no_show.status) == ("cancelled", "no_show")
    assert consumed(cancelled) == consumed(no_show) == Decimal("1")
    assert held(cancelled) == held(no_show) == Decimal("0")
    assert cancelled.final_price_krw == no_show.final_price_krw == RATE
    assert not Allocation.objects.filter(booking=cancelled, active=True).exists()
    assert grant_balances([grant.pk])[grant.pk].remaining == Decimal("98")


def test_a_late_cancellation_before_the_start_charges_quota_as_its_fee(lab, org, member, grant):
    s, e = aware(2026, 12, 1, 10), aware(2026, 12, 1, 11)
    in_time = book(member, org, "HC-EMG", s, e)
    late = book(member, org, "HC-EMG", s, e)
    booking_cancel(
        actor=member, booking=in_time, reason="x", channel="api", now=aware(2026, 12, 1, 8, 59)
    )
    booking_cancel(
        actor=member, booking=late, reason="x", channel="api", now=aware(2026, 12, 1, 9, 30)
    )
    in_time.refresh_from_db()
    late.refresh_from_db()
    assert (consumed(in_time), in_time.final_price_krw) == (Decimal("0"), 0)
    assert (consumed(late), late.final_price_krw) == (Decimal("1"), RATE)
    assert held(in_time) == held(late) == Decimal("0")


def test_requests_never_confirmed_cancel_free_at_any_time(lab, org, member, grant):
    lab.requires_approval = True
    lab.save()
    awaiting = book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    assert held(awaiting) == Decimal("1")
    booking_cancel(
        actor=member, booking=awaiting, reason="x", channel="api", now=aware(2026, 12, 1, 8, 50)
    )
    awaiting.refresh_from_db()
    assert awaiting.status == "cancelled"
    assert (consumed(awaiting), held(awaiting), awaiting.final_price_krw) == (0, 0, 0)


def test_the_rule_is_one_function_for_quota_and_price():
    s, e = aware(2026, 12, 1, 9), aware(2026, 12, 1, 10)
    free = cancellation_charge(
        was_confirmed=True, start=s, end=e, at=aware(2026, 12, 1, 7, 59), free_minutes=60
    )
    late = cancellation_charge(
        was_confirmed=True, start=s, end=e, at=aware(2026, 12, 1, 8, 30), free_minutes=60
    )
    after = cancellation_charge(
        was_confirmed=True, start=s, end=e, at=aware(2026, 12, 1, 9, 5), free_minutes=0
    )
    unconfirmed = cancellation_charge(
        was_confirmed=False, start=s, end=e, at=aware(2026, 12, 1, 9, 5), free_minutes=60
    )
    assert free.span is None and unconfirmed.span is None
    assert late.span == after.span == (s, e)
    assert used_span(
        start=s, end=e, actual_start=aware(2026, 12, 1, 8, 30), actual_end=aware(2026, 12, 1, 11)
    ) == (s, e)
    assert (
        used_span(
            start=s,
            end=e,
            actual_start=aware(2026, 12, 1, 8, 30),
            actual_end=s - dt.timedelta(minutes=1),
        )
        is None
    )


# --- requests awaiting approval expire at their start ----------------------------------------


def test_requests_awaiting_approval_expire_at_their_start(
    lab, org, member, manager, operator, grant, django_capture_on_commit_callbacks, monkeypatch
):
    lab.requires_approval = True
    lab.save()
    booking = book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    later = book(member, org, "HC-EMG", aware(2026, 12, 1, 11), aware(2026, 12, 1, 12))
    assert booking.status == later.status == "awaiting_approval"
    assert grant_balances([grant.pk])[grant.pk].remaining == Decimal("98")
    told: list[tuple[int, str]] = []
    monkeypatch.setattr(
        "booking.services.notifications.booking_changed",
        lambda booking_id, event: told.append((booking_id, event)),
    )
    with time_machine.travel(aware(2026, 12, 1, 8, 59), tick=False):
        assert bookings_expire_unapproved() == 0
    with django_capture_on_commit_callbacks(execute=True):
        with time_machine.travel(aware(2026, 12, 1, 9, 0), tick=False):
            assert bookings_expire_unapproved() == 1
            assert bookings_expire_unapproved() == 0  # idempotent
    booking.refresh_from_db()
    later.refresh_from_db()
    assert (booking.status, booking.rejection_code) == ("rejected", "expired")
    assert "approv" in booking.rejection_detail
    assert later.status == "awaiting_approval"
    assert not Allocation.objects.filter(booking=booking, active=True).exists()
    assert (held(booking), consumed(booking)) == (0, 0)
    assert not booking.final_price_krw  # a rejection is never billed
    assert grant_balances([grant.pk])[grant.pk].remaining == Decimal("99")
    entry = AuditEntry.objects.get(action="booking.expire")
    assert (entry.from_state, entry.to_state, entry.actor) == (
        "awaiting_approval",
        "rejected",
        None,
    )
    assert told == [(booking.pk, "expired")]
    mail.outbox.clear()
    assert booking_email_send(booking_id=booking.pk, event="expired") == 1
    assert set(mail.outbox[0].to) >= {member.email, manager.email}
    assert "expired" in mail.outbox[0].subject
    # Too late to approve or reject: a clear 409, nothing changes.
    for act in (
        lambda b: booking_approve(actor=operator, booking=b, channel="api"),
        lambda b: booking_reject(actor=operator, booking=b, reason="no", channel="api"),
    ):
        with time_machine.travel(aware(2026, 12, 1, 9, 0), tick=False):
            with pytest.raises(ServiceError) as exc:
                act(booking)
        assert exc.value.status == 409 and exc.value.code == "invalid_state"


def test_a_late_approval_is_refused_before_the_sweep_runs(lab, org, member, operator, grant):
    lab.requires_approval = True
    lab.save()
    booking = book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    with time_machine.travel(aware(2026, 12, 1, 9, 5), tick=False):
        with pytest.raises(ServiceError) as exc:
            booking_approve(actor=operator, booking=booking, channel="api")
    assert exc.value.status == 409 and exc.value.code == "invalid_state"
    assert "start" in exc.value.message
    booking.refresh_from_db()
    assert booking.status == "awaiting_approval"
    with time_machine.travel(aware(2026, 12, 1, 9, 20), tick=False):
        bookings_mark_no_shows()
        bookings_expire_unapproved()
    booking.refresh_from_db()
    assert booking.status == "rejected" and booking.final_price_krw in (None, 0)
    assert consumed(booking) == 0


# --- use counts from the later of check-in and the start -------------------------------------


def test_early_check_in_on_a_pool_counts_from_the_slot_in_quota_price_and_reports(
    org, member, grant
):
    """The issue's example: A 08–10, B 10–12 on one 8-device node; B checks in 09:30, out 11:00."""
    pool = make_pool(nodes=1, per_node=8, hourly_rate=100)
    a = book(member, org, pool.code, aware(2026, 12, 1, 8), aware(2026, 12, 1, 10), quantity=8)
    b = book(member, org, pool.code, aware(2026, 12, 1, 10), aware(2026, 12, 1, 12), quantity=8)
    assert a.status == b.status == "confirmed"
    with time_machine.travel(aware(2026, 12, 1, 8), tick=False):
        assert bookings_start_pool_sessions() == 1
    with time_machine.travel(aware(2026, 12, 1, 9, 30), tick=False):
        booking_check_in(actor=member, booking=b, channel="api")
    with time_machine.travel(aware(2026, 12, 1, 10), tick=False):
        assert bookings_complete_ended() == 1
    with time_machine.travel(aware(2026, 12, 1, 11), tick=False):
        b = booking_check_out(actor=member, booking=b, channel="api")
    a.refresh_from_db()
    assert (a.status, b.status) == ("completed", "completed")
    assert consumed(a) == Decimal("16") and a.final_price_krw == 16 * 100
    # Quota and price agree: 1 h × 8 devices.
    assert consumed(b) == Decimal("8")
    assert b.final_price_krw == 8 * 100
    # The node has 8 devices: over 08–11 at most 24 device-hours can have been used.
    util = utilisation_report(start=aware(2026, 12, 1, 8), end=aware(2026, 12, 1, 11))
    (row,) = [r for r in util.rows if r["resource"] == pool.code]
    assert row["used_hours"] == 24.0 and row["booked_hours"] == 24.0
    report = usage_report(
        scope_q=None,
        start=aware(2026, 12, 1),
        end=aware(2026, 12, 2),
        group_by="resource",
        today=dt.date(2026, 12, 1),
    )
    (usage,) = report.rows
    assert usage["used_hours"] == 24.0 and usage["unit_hours"] == 24.0
    assert usage["charge_krw"] == 24 * 100
    # The rollups (daily, then read back as whole past days; and per booking) say the same.
    usage_rollup_days(start_day=dt.date(2026, 12, 1), end_day=dt.date(2026, 12, 1))
    usage_rollup_bookings()
    rolled = usage_report(
        scope_q=None,
        start=aware(2026, 12, 1),
        end=aware(2026, 12, 2),
        group_by="resource",
        today=dt.date(2026, 12, 5),
    )
    assert rolled.rows[0]["used_hours"] == 24.0
    assert BookingUsage.objects.get(booking=b).used_unit_hours == Decimal("8")


def test_early_check_in_and_late_check_out_on_equipment_count_only_the_slot(
    lab, org, member, grant
):
    booking = book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    booking_check_in(actor=member, booking=booking, channel="api", now=aware(2026, 12, 1, 8, 40))
    booking.refresh_from_db()
    assert booking.actual_start == aware(2026, 12, 1, 8, 40)  # the record keeps the real moment
    booking = booking_check_out(
        actor=member, booking=booking, channel="api", now=aware(2026, 12, 1, 9, 30)
    )
    assert consumed(booking) == Decimal("0.5") and booking.final_price_krw == RATE // 2
    usage_rollup_bookings()
    assert BookingUsage.objects.get(booking=booking).used_unit_hours == Decimal("0.5")
    report = usage_report(
        scope_q=None,
        start=aware(2026, 12, 1),
        end=aware(2026, 12, 2),
        group_by="resource",
        today=dt.date(2026, 12, 1),
    )
    assert report.rows[0]["used_hours"] == 0.5 and report.rows[0]["unit_hours"] == 0.5


def test_a_booking_checked_out_before_its_start_used_nothing(lab, org, member, grant):
    booking = book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    booking_check_in(actor=member, booking=booking, channel="api", now=aware(2026, 12, 1, 8, 40))
    booking = booking_check_out(
        actor=member, booking=booking, channel="api", now=aware(2026, 12, 1, 8, 50)
    )
    assert booking.status == "completed"
    assert (consumed(booking), held(booking), booking.final_price_krw) == (0, 0, 0)
    usage_rollup_bookings()
    assert BookingUsage.objects.get(booking=booking).used_unit_hours == 0
    assert Booking.objects.get(pk=booking.pk).status == "completed"


def test_the_expiry_runs_every_minute_from_beat(settings, lab, org, member):
    from booking.tasks import expire_unapproved

    entry = settings.CELERY_BEAT_SCHEDULE["expire-unapproved"]
    assert entry["task"] == expire_unapproved.name and entry["schedule"] <= 60
    lab.requires_approval = True
    lab.save()
    booking = book(member, org, "HC-EMG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    with time_machine.travel(aware(2026, 12, 1, 9, 1), tick=False):
        assert expire_unapproved() == 1
    booking.refresh_from_db()
    assert (booking.status, booking.rejection_code) == ("rejected", "expired")
