"""Operators change bookings from the admin through the same services (channel admin)."""

from __future__ import annotations

import pytest
import time_machine

from booking.services.allocation import booking_allocate
from booking.services.bookings import booking_request
from testbed.models import AuditEntry
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware

pytestmark = pytest.mark.django_db


@pytest.fixture
def awaiting(org, member):
    t = EquipmentTypeFactory(code="HC-XRAY", requires_approval=True)
    EquipmentUnitFactory(equipment_type=t)
    with time_machine.travel(aware(2026, 12, 1, 8), tick=False):
        booking = booking_request(
            actor=member,
            organization=org,
            resource_code="HC-XRAY",
            quantity=1,
            start=aware(2026, 12, 2, 10),
            end=aware(2026, 12, 2, 11),
        )
    booking_allocate(booking_id=booking.pk)
    return booking


def test_it_approves_from_the_admin_with_an_audit_entry(admin_client, awaiting):
    response = admin_client.post(
        "/admin/booking/booking/",
        {"action": "approve_selected", "_selected_action": [awaiting.pk]},
        follow=True,
    )
    assert response.status_code == 200
    awaiting.refresh_from_db()
    assert awaiting.status == "confirmed"
    assert AuditEntry.objects.get(action="booking.approve").channel == "admin"


def test_it_reports_bookings_it_could_not_change(admin_client, awaiting):
    admin_client.post(
        "/admin/booking/booking/", {"action": "cancel_selected", "_selected_action": [awaiting.pk]}
    )
    response = admin_client.post(
        "/admin/booking/booking/",
        {"action": "approve_selected", "_selected_action": [awaiting.pk]},
        follow=True,
    )
    awaiting.refresh_from_db()
    assert awaiting.status == "cancelled"
    assert "cannot be approved (only when awaiting_approval)" in response.content.decode()
    assert f"#{awaiting.pk}" in response.content.decode()
