"""Domain events (booking/events.py): each change announces itself once, after commit, to its organisation."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import transaction

from booking import events
from booking.models import Booking, DiscountRule, QuotaGrant
from booking.services.allocation import booking_allocate
from booking.services.bookings import (
    booking_approve,
    booking_cancel,
    booking_request,
    bookings_mark_no_shows,
)
from booking.services.maintenance import maintenance_window_create
from booking.services.moves import booking_move
from booking.services.reminders import quota_reminders_send
from equipment.models import MaintenanceWindow
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware

pytestmark = pytest.mark.django_db

NOW = aware(2026, 12, 1, 8, 0)


@pytest.fixture(autouse=True)
def frozen():
    DiscountRule.objects.all().delete()
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def heard():
    got: list[events.DomainEvent] = []

    def receiver(sender, event, **kwargs):
        got.append(event)

    events.event_published.connect(receiver, dispatch_uid="test-heard")
    yield got
    events.event_published.disconnect(dispatch_uid="test-heard")


@pytest.fixture
def lab():
    t = EquipmentTypeFactory(
        code="HC-EEG",
        opens_at=dt.time(9),
        closes_at=dt.time(18),
        open_weekdays="01234",
        max_minutes=120,
        buffer_minutes=0,
    )
    EquipmentUnitFactory(equipment_type=t, code="HC-EEG-01")
    return t


def book(actor, org, code, start, end):
    booking = booking_request(
        actor=actor, organization=org, resource_code=code, quantity=1, start=start, end=end
    )
    booking_allocate(booking_id=booking.pk)
    booking.refresh_from_db()
    return booking


def types(got):
    return [(e.type, e.data.get("booking", {}).get("id")) for e in got]


def test_decisions_and_transitions_are_announced_after_commit_only(
    lab, org, member, manager, django_capture_on_commit_callbacks, heard
):
    s = aware(2026, 12, 2, 10)
    with django_capture_on_commit_callbacks(execute=True):
        first = book(member, org, "HC-EEG", s, s + dt.timedelta(hours=1))
        second = book(member, org, "HC-EEG", s, s + dt.timedelta(hours=1))
    assert types(heard) == [("booking.confirmed", first.pk), ("booking.rejected", second.pk)]
    body = heard[0].data["booking"]
    assert body["organization"] == "acme" and body["resource"] == {
        "kind": "equipment",
        "code": "HC-EEG",
    }
    assert body["status"] == "confirmed" and body["start"].startswith("2026-12-02T10:00:00+09:00")
    assert heard[1].data["booking"]["rejection_code"] == "unavailable"
    assert {e.organization_id for e in heard} == {org.pk}
    assert heard[0].id != heard[1].id and heard[0].id.startswith("evt_")

    heard.clear()
    # A rolled-back change is never announced.
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            booking_cancel(actor=manager, booking=first, reason="x", channel="api")
            raise RuntimeError("roll back")
    assert heard == []
    with django_capture_on_commit_callbacks(execute=True):
        booking_cancel(actor=manager, booking=first, reason="plans changed", channel="api")
    assert types(heard) == [("booking.cancelled", first.pk)]


def test_moves_no_shows_and_approvals_have_their_own_events(
    lab, org, member, operator, django_capture_on_commit_callbacks, heard
):
    with django_capture_on_commit_callbacks(execute=True):
        old = book(member, org, "HC-EEG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
        new = booking_move(
            actor=member,
            booking=old,
            start=aware(2026, 12, 3, 10),
            end=aware(2026, 12, 3, 11),
            channel="api",
        )
        booking_allocate(booking_id=new.pk)
    assert types(heard)[-2:] == [("booking.moved", new.pk), ("booking.cancelled", old.pk)]
    assert heard[-2].data["moved_from"] == old.pk and heard[-1].data["moved_to"] == new.pk
    assert heard[-1].data["booking"]["status"] == "cancelled"
    assert Booking.objects.get(pk=old.pk).status == "cancelled"

    heard.clear()
    with django_capture_on_commit_callbacks(execute=True):
        today = book(member, org, "HC-EEG", aware(2026, 12, 1, 9), aware(2026, 12, 1, 10))
    with time_machine.travel(aware(2026, 12, 1, 9, 40), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert bookings_mark_no_shows() == 1
    assert types(heard) == [("booking.confirmed", today.pk), ("booking.no_show", today.pk)]

    heard.clear()
    lab.requires_approval = True
    lab.save()
    with django_capture_on_commit_callbacks(execute=True):
        asked = book(member, org, "HC-EEG", aware(2026, 12, 4, 10), aware(2026, 12, 4, 11))
        booking_approve(actor=operator, booking=asked, channel="api")
    assert types(heard) == [("approval.requested", asked.pk), ("booking.confirmed", asked.pk)]


def test_maintenance_is_told_to_each_affected_organisation_and_changes_are_internal(
    lab, org, member, other_org, outsider, operator, django_capture_on_commit_callbacks, heard
):
    EquipmentUnitFactory(equipment_type=lab, code="HC-EEG-02")
    with django_capture_on_commit_callbacks(execute=True):
        ours = book(member, org, "HC-EEG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
        theirs = book(outsider, other_org, "HC-EEG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    heard.clear()
    with django_capture_on_commit_callbacks(execute=True):
        window, affected = maintenance_window_create(
            actor=operator,
            target=lab,
            start=aware(2026, 12, 2, 9),
            end=aware(2026, 12, 2, 12),
            reason="정기 점검",
            channel="api",
        )
    scheduled = [e for e in heard if e.type == "maintenance.scheduled"]
    assert {e.organization_id: e.data["affected_bookings"] for e in scheduled} == {
        org.pk: [ours.pk],
        other_org.pk: [theirs.pk],
    }
    assert scheduled[0].data["maintenance"]["target"]["kind"] == "equipment_type"
    changed = [e for e in heard if e.type == "maintenance.changed"]
    assert len(changed) == 1 and changed[0].organization_id is None
    assert "maintenance.changed" not in events.PUBLIC_EVENTS

    heard.clear()
    with django_capture_on_commit_callbacks(execute=True):
        MaintenanceWindow.objects.filter(pk=window.pk).get().delete()
    assert [(e.type, e.data["deleted"]) for e in heard] == [("maintenance.changed", True)]


def test_quota_threshold_is_told_once(lab, org, member, django_capture_on_commit_callbacks, heard):
    QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=1,
        enforcement="soft",
    )
    with django_capture_on_commit_callbacks(execute=True):
        book(member, org, "HC-EEG", aware(2026, 12, 2, 10), aware(2026, 12, 2, 11))
    heard.clear()
    with django_capture_on_commit_callbacks(execute=True):
        quota_reminders_send()
        quota_reminders_send()
    assert [(e.type, e.organization_id, e.data["threshold_percent"]) for e in heard] == [
        ("quota.threshold", org.pk, 100)
    ]
