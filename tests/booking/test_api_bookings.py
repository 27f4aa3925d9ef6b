"""The bookings REST contract (API.md) through DRF's test client."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from booking.models import Booking
from booking.services.allocation import booking_allocate
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware, make_pool

pytestmark = pytest.mark.django_db
NOW = aware(2026, 12, 1, 8, 0)


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


def body(**over):
    data = {
        "resource": "HC-PSG",
        "quantity": 1,
        "start": "2026-12-02T10:00:00+09:00",
        "end": "2026-12-02T11:00:00+09:00",
        "purpose": "수면 연구",
    }
    data.update(over)
    return data


def test_it_creates_a_pending_booking(api, member, lab):
    response = api(member).post("/api/v1/bookings", body(), format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == "pending"
    assert (
        data["organization"] == "acme" and data["user"] == "member" and data["resource"] == "HC-PSG"
    )
    assert data["start"] == "2026-12-02T10:00:00+09:00"
    assert data["rejection"] is None and data["allocations"] == []
    assert response["Location"] == f"/api/v1/bookings/{data['id']}"


def test_it_shows_the_decision_with_allocations(api, member, lab):
    booking_id = api(member).post("/api/v1/bookings", body(), format="json").json()["id"]
    booking_allocate(booking_id=booking_id)
    data = api(member).get(f"/api/v1/bookings/{booking_id}").json()
    assert data["status"] == "confirmed"
    assert data["allocations"] == [
        {"unit": "HC-PSG-01", "node": None, "device": None, "device_index": None}
    ]


def test_it_refuses_naive_times_naming_the_field(api, member, lab):
    response = api(member).post(
        "/api/v1/bookings", body(start="2026-12-02T10:00:00"), format="json"
    )
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    problem = response.json()
    assert "start" in problem["errors"] and "offset" in problem["errors"]["start"][0]
    assert Booking.objects.count() == 0


@pytest.mark.parametrize(
    ("over", "code", "field"),
    [
        ({"end": "2026-12-02T14:00:00+09:00"}, "too_long", "end"),
        (
            {"start": "2026-12-02T07:00:00+09:00", "end": "2026-12-02T08:00:00+09:00"},
            "outside_hours",
            "start",
        ),
        ({"resource": "NOPE"}, "invalid", "resource"),
        ({"quantity": 2}, "capacity", "quantity"),
        ({"unit": "HC-PSG-99"}, "invalid", "unit"),
    ],
)
def test_it_refuses_policy_breaking_requests_with_a_stable_code(
    api, member, lab, over, code, field
):
    response = api(member).post("/api/v1/bookings", body(**over), format="json")
    assert response.status_code == 400, response.content
    problem = response.json()
    assert problem["code"] == code and field in problem["errors"], problem
    assert problem["detail"] and problem["type"].endswith(code)
    assert Booking.objects.count() == 0


def test_it_honours_idempotency_keys(api, member, lab):
    client = api(member)
    first = client.post("/api/v1/bookings", body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post("/api/v1/bookings", body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert Booking.objects.count() == 1
    clash = client.post(
        "/api/v1/bookings", body(purpose="other"), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert clash.status_code == 422 and clash.json()["code"] == "idempotency_conflict"


def test_it_answers_pending_when_no_decision_comes_within_prefer_wait(api, member, lab):
    response = api(member).post("/api/v1/bookings", body(), format="json", HTTP_PREFER="wait=0.2")
    assert response.status_code == 201
    assert response.json()["status"] == "pending"
    assert response["Preference-Applied"] == "wait=0.2"


def test_a_committed_booking_answers_pending_when_its_decision_cannot_be_read(
    api, member, lab, monkeypatch
):
    """The database or Redis going away after the commit: 201 pending, never an error that
    would make a client without an Idempotency-Key book twice (found by bench/faults)."""
    from django.db import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    from booking.api import views

    for failure in (OperationalError("server closed the connection"), RedisConnectionError("x")):

        def broken(*args, failure=failure, **kwargs):
            raise failure

        monkeypatch.setattr(views, "decision_await", broken)
        response = api(member).post("/api/v1/bookings", body(), format="json", HTTP_PREFER="wait=2")
        assert response.status_code == 201, response.content
        assert response.json()["status"] == "pending"
        Booking.objects.filter(pk=response.json()["id"]).delete()


def test_it_hides_other_organisations_bookings(api, member, outsider, lab):
    booking_id = api(member).post("/api/v1/bookings", body(), format="json").json()["id"]
    assert api(outsider).get(f"/api/v1/bookings/{booking_id}").status_code == 404
    assert api(outsider).get("/api/v1/bookings").json()["count"] == 0
    assert (
        api(outsider)
        .post(f"/api/v1/bookings/{booking_id}/cancel", {"reason": "x"}, format="json")
        .status_code
        == 404
    )
    assert api(member).get("/api/v1/bookings").json()["count"] == 1


def test_it_filters_bookings(api, member, operator, lab):
    pool = make_pool(nodes=1, per_node=8)
    client = api(member)
    client.post("/api/v1/bookings", body(), format="json")
    client.post(
        "/api/v1/bookings",
        body(
            resource=pool.code,
            quantity=2,
            start="2026-12-03T00:00:00+09:00",
            end="2026-12-03T02:00:00+09:00",
        ),
        format="json",
    )
    assert client.get("/api/v1/bookings", {"resource": pool.code}).json()["count"] == 1
    assert client.get("/api/v1/bookings", {"status": "pending"}).json()["count"] == 2
    assert (
        client.get("/api/v1/bookings", {"start": "2026-12-02T12:00:00+09:00"}).json()["count"] == 1
    )
    assert client.get("/api/v1/bookings", {"start": "2026-12-02T12:00:00"}).status_code == 400
    assert api(operator).get("/api/v1/bookings", {"organization": "acme"}).json()["count"] == 2


def test_it_runs_the_lifecycle_through_the_api(api, member, operator, lab):
    lab.requires_approval = True
    lab.save()
    client = api(member)
    booking_id = client.post(
        "/api/v1/bookings",
        body(start="2026-12-01T09:00:00+09:00", end="2026-12-01T10:00:00+09:00"),
        format="json",
    ).json()["id"]
    booking_allocate(booking_id=booking_id)
    assert client.post(f"/api/v1/bookings/{booking_id}/approve").status_code == 403
    response = api(operator).post(f"/api/v1/bookings/{booking_id}/approve")
    assert response.status_code == 200 and response.json()["status"] == "confirmed"
    with time_machine.travel(aware(2026, 12, 1, 9, 0), tick=False):
        assert client.post(f"/api/v1/bookings/{booking_id}/check-in").json()["status"] == "active"
        again = client.post(f"/api/v1/bookings/{booking_id}/check-in")
        assert again.status_code == 409 and again.json()["code"] == "invalid_state"
    with time_machine.travel(aware(2026, 12, 1, 9, 40), tick=False):
        done = client.post(f"/api/v1/bookings/{booking_id}/check-out").json()
    assert done["status"] == "completed" and done["actual_end"] == "2026-12-01T09:40:00+09:00"
    no_reason = client.post(f"/api/v1/bookings/{booking_id}/cancel", {}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["errors"]


def test_it_reports_availability_from_allocations(api, member, lab):
    booking_id = api(member).post("/api/v1/bookings", body(), format="json").json()["id"]
    booking_allocate(booking_id=booking_id)
    response = api(member).get(
        "/api/v1/availability",
        {
            "resource": "HC-PSG",
            "start": "2026-12-02T09:00:00+09:00",
            "end": "2026-12-02T13:00:00+09:00",
            "duration_minutes": 60,
        },
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["capacity"] == 1
    assert data["timeline"] == [
        {"start": "2026-12-02T09:00:00+09:00", "end": "2026-12-02T10:00:00+09:00", "free": 1},
        {"start": "2026-12-02T10:00:00+09:00", "end": "2026-12-02T11:00:00+09:00", "free": 0},
        {"start": "2026-12-02T11:00:00+09:00", "end": "2026-12-02T13:00:00+09:00", "free": 1},
    ]
    starts = [f["start"][11:16] for f in data["fits"]]
    assert "10:00" not in starts and "09:00" in starts and "11:00" in starts and "12:00" in starts
    assert (
        api(member)
        .get(
            "/api/v1/availability",
            {
                "resource": "HC-PSG",
                "start": "2026-12-02T09:00:00",
                "end": "2026-12-02T13:00:00+09:00",
            },
        )
        .status_code
        == 400
    )


def test_it_answers_availability_for_a_week_of_a_128_device_pool_in_few_queries(
    api, member, django_assert_max_num_queries
):
    pool = make_pool(nodes=16, per_node=8)
    client = api(member)
    with django_assert_max_num_queries(12):
        response = client.get(
            "/api/v1/availability",
            {
                "resource": pool.code,
                "start": "2026-12-07T00:00:00+09:00",
                "end": "2026-12-14T00:00:00+09:00",
                "quantity": 8,
                "duration_minutes": 240,
            },
        )
    assert response.status_code == 200
    assert response.json()["capacity"] == 128


def test_it_exports_the_bookings_list_as_csv_and_xlsx(api, member, outsider, lab):
    import csv
    import io

    from openpyxl import load_workbook

    booking_id = api(member).post("/api/v1/bookings", body(), format="json").json()["id"]
    booking_allocate(booking_id=booking_id)
    response = api(member).get("/api/v1/bookings", {"format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [(r["id"], r["resource"], r["status"], r["allocated"]) for r in rows] == [
        (str(booking_id), "HC-PSG", "confirmed", "HC-PSG-01")
    ]
    assert rows[0]["start"] == "2026-12-02T10:00:00+09:00"
    sheet = load_workbook(
        io.BytesIO(api(member).get("/api/v1/bookings", {"format": "xlsx"}).content)
    ).active
    assert [c.value for c in sheet[1]][:4] == ["id", "organization", "user", "resource"]
    assert sheet.max_row == 2
    outsider_csv = (
        api(outsider).get("/api/v1/bookings", {"format": "csv"}).content.decode("utf-8-sig")
    )
    assert len(list(csv.DictReader(io.StringIO(outsider_csv)))) == 0


def test_the_fast_booking_representation_matches_drfs_generic_one(api, member, operator, lab):
    """BookingSerializer writes its JSON by hand for speed: it must equal what DRF would build."""
    from rest_framework import serializers

    from booking.api.serializers import BookingSerializer
    from booking.selectors import booking_list
    from equipment.models import MaintenanceWindow

    pool = make_pool(nodes=1, per_node=8)
    client = api(member)
    ids = [
        client.post("/api/v1/bookings", body(), format="json").json()["id"],  # confirmed
        client.post("/api/v1/bookings", body(), format="json").json()["id"],  # rejected
        client.post(
            "/api/v1/bookings",
            body(
                resource=pool.code,
                quantity=2,
                start="2026-12-03T00:00:00+09:00",
                end="2026-12-03T02:00:00+09:00",
            ),
            format="json",
        ).json()["id"],  # confirmed on devices
    ]
    for booking_id in ids:
        booking_allocate(booking_id=booking_id)
    ids.append(
        client.post(
            "/api/v1/bookings",
            body(start="2026-12-04T10:00:00+09:00", end="2026-12-04T11:00:00+09:00"),
            format="json",
        ).json()["id"]  # stays pending
    )
    window = MaintenanceWindow.objects.create(
        equipment_type=lab, start=aware(2026, 12, 2, 1), end=aware(2026, 12, 2, 2), reason="점검"
    )
    Booking.objects.filter(pk=ids[0]).update(
        affected_by_maintenance=window,
        actual_start=aware(2026, 12, 2, 1, 5),
        actual_end=aware(2026, 12, 2, 1, 50),
        final_price_krw=12345,
        idle_flagged_at=aware(2026, 12, 2, 1, 20),
        reclaimed_at=aware(2026, 12, 2, 1, 30),
        cancel_reason="테스트",
    )
    rows = list(booking_list(user=operator).filter(pk__in=ids).order_by("pk"))
    assert {b.status for b in rows} == {"confirmed", "rejected", "pending"}
    for booking in rows:
        fast = BookingSerializer(booking).data
        generic = serializers.ModelSerializer.to_representation(BookingSerializer(booking), booking)
        assert dict(fast) == dict(generic), booking.status
        assert list(fast) == list(generic)  # same keys in the same order
    assert rows[1].status == "rejected" and BookingSerializer(rows[1]).data["rejection"]["code"]
    assert BookingSerializer(rows[2]).data["allocations"][0]["device_index"] is not None
