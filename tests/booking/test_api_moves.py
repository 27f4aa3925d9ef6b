"""POST /api/v1/bookings/{id}/move: 202 with the new pending booking; the old one holds till then."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from rest_framework.test import APIClient

from booking.models import Booking
from booking.services.allocation import booking_allocate
from booking.services.api_keys import api_key_create
from testbed.models import AuditEntry
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware

pytestmark = pytest.mark.django_db
NOW = aware(2026, 12, 1, 8, 0)
NEW = {"start": "2026-12-03T14:00:00+09:00", "end": "2026-12-03T15:00:00+09:00"}


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def lab():
    t = EquipmentTypeFactory(
        code="HC-PSG", opens_at=dt.time(9), closes_at=dt.time(18), max_minutes=120
    )
    EquipmentUnitFactory(equipment_type=t, code="HC-PSG-01")
    return t


def booked(client) -> int:
    response = client.post(
        "/api/v1/bookings",
        {
            "resource": "HC-PSG",
            "start": "2026-12-02T10:00:00+09:00",
            "end": "2026-12-02T11:00:00+09:00",
            "purpose": "수면 연구",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    booking_id = response.json()["id"]
    booking_allocate(booking_id=booking_id)
    return booking_id


def key_client(manager, org, scopes) -> APIClient:
    _key, raw = api_key_create(
        actor=manager, organization=org, name="ci", scopes=scopes, channel="api"
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_it_answers_202_with_the_new_pending_booking(api, member, lab):
    client = api(member)
    old_id = booked(client)
    response = client.post(f"/api/v1/bookings/{old_id}/move", NEW, format="json")
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["status"] == "pending" and data["id"] != old_id
    assert data["start"] == NEW["start"] and data["end"] == NEW["end"]
    assert data["resource"] == "HC-PSG" and data["user"] == "member"
    assert response["Location"] == f"/api/v1/bookings/{data['id']}"
    assert client.get(f"/api/v1/bookings/{old_id}").json()["status"] == "confirmed"

    booking_allocate(booking_id=data["id"])
    assert client.get(f"/api/v1/bookings/{data['id']}").json()["status"] == "confirmed"
    assert client.get(f"/api/v1/bookings/{old_id}").json()["status"] == "cancelled"


def test_it_answers_pending_when_no_decision_comes_within_prefer_wait(api, member, lab):
    client = api(member)
    old_id = booked(client)
    response = client.post(
        f"/api/v1/bookings/{old_id}/move", NEW, format="json", HTTP_PREFER="wait=0.2"
    )
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert response["Preference-Applied"] == "wait=0.2"


def test_it_refuses_a_second_pending_move_with_409(api, member, lab):
    client = api(member)
    old_id = booked(client)
    assert client.post(f"/api/v1/bookings/{old_id}/move", NEW, format="json").status_code == 202
    again = client.post(
        f"/api/v1/bookings/{old_id}/move",
        {"start": "2026-12-04T14:00:00+09:00", "end": "2026-12-04T15:00:00+09:00"},
        format="json",
    )
    assert again.status_code == 409 and again.json()["code"] == "invalid_state"
    assert Booking.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"end": NEW["end"]}, "start"),
        ({"start": "2026-12-03T14:00:00", "end": NEW["end"]}, "start"),  # naive
        ({"start": "2026-12-03T19:00:00+09:00", "end": "2026-12-03T20:00:00+09:00"}, "start"),
        ({"start": NEW["start"], "end": "2026-12-03T13:00:00+09:00"}, "end"),
    ],
)
def test_it_refuses_bad_windows_naming_the_field_and_changes_nothing(api, member, lab, body, field):
    client = api(member)
    old_id = booked(client)
    before = Booking.objects.count(), AuditEntry.objects.count()
    response = client.post(f"/api/v1/bookings/{old_id}/move", body, format="json")
    assert response.status_code == 400, response.content
    problem = response.json()
    assert response["Content-Type"].startswith("application/problem+json")
    assert field in problem.get("errors", {}) or problem.get("field") == field, problem
    assert (Booking.objects.count(), AuditEntry.objects.count()) == before
    assert client.get(f"/api/v1/bookings/{old_id}").json()["status"] == "confirmed"


def test_another_organisation_gets_404_and_changes_nothing(api, member, outsider, lab):
    old_id = booked(api(member))
    response = api(outsider).post(f"/api/v1/bookings/{old_id}/move", NEW, format="json")
    assert response.status_code == 404
    assert Booking.objects.count() == 1


def test_another_organisations_key_gets_404(api, member, outsider, other_org, lab):
    old_id = booked(api(member))
    client = key_client(outsider, other_org, ["bookings:write", "bookings:read"])
    assert client.post(f"/api/v1/bookings/{old_id}/move", NEW, format="json").status_code == 404


def test_keys_need_the_write_scope_and_move_only_their_own_bookings(api, manager, member, org, lab):
    EquipmentUnitFactory(equipment_type=lab, code="HC-PSG-02")
    reader = key_client(manager, org, ["bookings:read"])
    writer = key_client(manager, org, ["bookings:read", "bookings:write"])
    persons = booked(api(member))
    response = reader.post(f"/api/v1/bookings/{persons}/move", NEW, format="json")
    assert response.status_code == 403
    response = writer.post(f"/api/v1/bookings/{persons}/move", NEW, format="json")
    assert response.status_code == 403, "a key moves only the bookings it made"
    own = booked(writer)
    response = writer.post(f"/api/v1/bookings/{own}/move", NEW, format="json")
    assert response.status_code == 202, response.content
    assert reader.post(f"/api/v1/bookings/{own}/move", NEW, format="json").status_code == 403


def test_the_permission_is_checked_before_the_body(api, member, lab):
    from tests.factories import UserFactory, add_member

    old_id = booked(api(member))
    colleague = UserFactory(username="colleague")
    add_member(member.memberships.first().organization, colleague, "member")
    response = api(colleague).post(f"/api/v1/bookings/{old_id}/move", {}, format="json")
    assert response.status_code == 403


def test_a_manager_moves_a_members_booking_and_it_stays_theirs(api, member, manager, lab):
    old_id = booked(api(member))
    response = api(manager).post(f"/api/v1/bookings/{old_id}/move", NEW, format="json")
    assert response.status_code == 202
    assert response.json()["user"] == "member"
    entry = AuditEntry.objects.get(action="booking.move_request")
    assert entry.actor == manager and entry.data["to"] == response.json()["id"]
