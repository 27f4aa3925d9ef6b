"""Periodic sweeps isolate each booking: one that raises is rolled back alone, the rest go on."""

from __future__ import annotations

import datetime as dt

import pytest

from booking.models import Allocation, Booking
from booking.services import bookings as booking_services
from booking.services.expiry import bookings_expire_unapproved
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware

pytestmark = pytest.mark.django_db


def _booking(org, user, unit, start, status="confirmed") -> Booking:
    booking = Booking.objects.create(
        organization=org,
        user=user,
        equipment_type=unit.equipment_type,
        start=start,
        end=start + dt.timedelta(hours=1),
        status=status,
    )
    Allocation.objects.create(booking=booking, unit=unit, start=booking.start, end=booking.end)
    return booking


@pytest.fixture
def two_units(db):
    etype = EquipmentTypeFactory(code="HC-EEG")
    return [EquipmentUnitFactory(equipment_type=etype, code=f"HC-EEG-0{i}") for i in (1, 2)]


def test_a_no_show_sweep_goes_on_past_a_booking_that_raises(
    org, member, two_units, monkeypatch, caplog
):
    start = aware(2026, 12, 2, 10)
    bad, good = (_booking(org, member, unit, start) for unit in two_units)
    real_settle = booking_services._settle

    def settle(booking, charge, now):
        if booking.pk == bad.pk:
            raise RuntimeError("corrupt row")
        return real_settle(booking, charge, now)

    monkeypatch.setattr(booking_services, "_settle", settle)
    done = booking_services.bookings_mark_no_shows(now=start + dt.timedelta(hours=2))
    assert done == 1
    assert Booking.objects.get(pk=good.pk).status == "no_show"
    assert Booking.objects.get(pk=bad.pk).status == "confirmed"  # its step rolled back whole
    assert Allocation.objects.get(booking=bad).active
    assert "corrupt row" in caplog.text


def test_the_expiry_sweep_goes_on_past_a_booking_that_raises(org, member, two_units, monkeypatch):
    import booking.services.expiry as expiry

    start = aware(2026, 12, 2, 10)
    bad, good = (
        _booking(org, member, unit, start, status="awaiting_approval") for unit in two_units
    )
    real_release = expiry.quota_release

    def release(*, booking, **kwargs):
        if booking.pk == bad.pk:
            raise RuntimeError("corrupt grant")
        return real_release(booking=booking, **kwargs)

    monkeypatch.setattr(expiry, "quota_release", release)
    assert bookings_expire_unapproved(now=start + dt.timedelta(minutes=1)) == 1
    assert Booking.objects.get(pk=good.pk).rejection_code == "expired"
    assert Booking.objects.get(pk=bad.pk).status == "awaiting_approval"


def test_the_worker_expires_a_request_it_reaches_only_after_its_start(org, member, two_units):
    """A backlogged worker must not confirm a booking whose start has passed (a no-show bill for
    time nobody could use): it expires, as the expiry sweep would make it."""
    import time_machine

    from booking.services.allocation import booking_allocate

    start = aware(2026, 12, 2, 10)
    booking = Booking.objects.create(
        organization=org,
        user=member,
        equipment_type=two_units[0].equipment_type,
        start=start,
        end=start + dt.timedelta(hours=1),
    )
    with time_machine.travel(start + dt.timedelta(minutes=3), tick=False):
        booking_allocate(booking_id=booking.pk)
    booking.refresh_from_db()
    assert (booking.status, booking.rejection_code) == ("rejected", "expired")
    assert not Allocation.objects.filter(booking=booking, active=True).exists()
