"""Bad input never gives a 500 or breaks a later read: 4xx problem+json naming the field, nothing changed."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import IntegrityError
from django.test import RequestFactory
from rest_framework.test import APIClient

from booking.models import Booking, QuotaGrant
from equipment.models import AcceleratorPool, Center, EquipmentType, MaintenanceWindow
from testbed.api.errors import API_CODES, api_handler404, api_handler500, problem_exception_handler
from testbed.api.parsers import MAX_JSON_DEPTH, json_depth
from tests.conftest import client_for
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware, make_pool

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = "application/problem+json"


def assert_problem(response, status: int, field: str | None = None, code: str | None = None):
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith(PROBLEM), response["Content-Type"]
    body = json.loads(response.content)
    assert body["code"] in API_CODES, body
    if field is not None:
        assert field in body["errors"], body
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture
def pool():
    return make_pool(nodes=1, per_node=4, code="GPU-H100")


@pytest.fixture
def grant(org):
    return QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=100,
    )


# --- dates and durations: bounded before any arithmetic ---------------------------------------


@pytest.mark.parametrize(
    "start, end",
    [
        ("9999-12-31T15:00:00Z", "9999-12-31T16:00:00Z"),
        ("0001-01-01T00:00:00+14:00", "0001-01-01T01:00:00+14:00"),
        ("2199-01-01T09:00:00+09:00", "2199-01-01T10:00:00+09:00"),
        ("2045-01-01T09:00:00+09:00", "2045-01-01T10:00:00+09:00"),  # past the horizon
    ],
)
def test_it_refuses_a_booking_at_the_edge_of_the_calendar(api, member, pool, start, end):
    response = api(member).post(
        "/api/v1/bookings", {"resource": pool.code, "start": start, "end": end}, format="json"
    )

    assert_problem(response, 400, field="start", code="invalid")
    assert not Booking.objects.exists()


def test_it_answers_a_naive_time_with_a_documented_code(api, member, pool):
    response = api(member).post(
        "/api/v1/bookings",
        {"resource": pool.code, "start": "2026-12-10T09:00:00", "end": "2026-12-10T10:00:00"},
        format="json",
    )

    body = assert_problem(response, 400, field="start", code="invalid")
    assert "offset" in body["errors"]["start"][0]


@pytest.mark.parametrize(
    "query",
    [
        {"start": "9999-12-31T00:00:00Z", "end": "9999-12-31T10:00:00Z"},
        {
            "start": "2026-12-10T00:00:00+09:00",
            "end": "2026-12-11T00:00:00+09:00",
            "duration_minutes": 10**12,
        },
    ],
)
def test_it_refuses_availability_past_the_horizon(api, member, pool, query):
    response = api(member).get("/api/v1/availability", {"resource": pool.code, **query})

    assert_problem(response, 400, code="invalid")


def test_it_refuses_a_bookings_filter_past_the_calendar(api, member):
    response = api(member).get("/api/v1/bookings", {"start": "9999-12-31T23:59:59-14:00"})

    assert_problem(response, 400, field="start")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"start": "9999-12-31T00:00:00Z", "end": "9999-12-31T10:00:00Z"}, "start"),
        ({"start": "2026-12-10T00:00:00+09:00", "end": "2026-12-09T00:00:00+09:00"}, "end"),
        ({"start": "2026-12-10T00:00:00+09:00", "end": "2028-12-10T00:00:00+09:00"}, "end"),
        (
            {
                "start": "2026-12-10T00:00:00+09:00",
                "end": "2026-12-10T01:00:00+09:00",
                "reason": "x" * 301,
            },
            "reason",
        ),
    ],
)
def test_it_refuses_a_maintenance_window_out_of_bounds(api, operator, pool, body, field):
    payload = {"resource": pool.code, "reason": "PM", **body}

    response = api(operator).post("/api/v1/maintenance-windows", payload, format="json")

    assert_problem(response, 400, field=field)
    assert not MaintenanceWindow.objects.exists()


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_lead_days", 10**6),
        ("max_lead_days", 2**31),
        ("slot_minutes", 0),
        ("min_lead_minutes", 10**8),
        ("buffer_minutes", -1),
        ("max_minutes", 10**9),
        ("hourly_rate", 10**15),
        ("opens_at", "25:00"),
    ],
)
def test_it_refuses_a_catalogue_number_that_later_arithmetic_would_choke_on(
    api, operator, field, value
):
    equipment = EquipmentTypeFactory(code="HC-MRI")
    before = EquipmentType.objects.values().get(pk=equipment.pk)

    response = api(operator).patch(
        f"/api/v1/equipment-types/{equipment.code}", {field: value}, format="json"
    )

    assert_problem(response, 400, field=field, code="invalid")
    assert EquipmentType.objects.values().get(pk=equipment.pk) == before


def test_it_sends_opening_hours_as_the_schema_says(api, member):
    EquipmentTypeFactory(code="HC-MRI", opens_at=dt.time(9), closes_at=dt.time(18))

    body = api(member).get("/api/v1/equipment-types/HC-MRI").json()

    assert (body["opens_at"], body["closes_at"]) == ("09:00", "18:00")


def test_it_refuses_a_time_zone_that_later_reads_could_not_use(api, operator):
    response = api(operator).post(
        "/api/v1/centers",
        {
            "code": "gj",
            "name": "광주",
            "name_en": "Gwangju",
            "field": "healthcare",
            "timezone": "Mars/Olympus",
        },
        format="json",
    )

    assert_problem(response, 400, field="timezone")
    assert not Center.objects.filter(code="gj").exists()


# --- database rules are checked by the code first --------------------------------------------


@pytest.mark.parametrize(
    "body, field",
    [
        ({"limit_hours": -5}, "limit_hours"),
        ({"limit_hours": "1e20"}, "limit_hours"),
        ({"period_end": "2026-11-01"}, "period_end"),
        ({"period_end": "9999-12-31"}, "period_end"),
        ({"period_start": "0001-01-01"}, "period_start"),
        ({"notes": "x" * 301}, "notes"),
        ({"notes": "nul \x00 byte"}, "notes"),
    ],
)
def test_it_refuses_a_quota_grant_change_the_database_would_refuse(
    api, operator, grant, body, field
):
    response = api(operator).patch(f"/api/v1/quota-grants/{grant.pk}", body, format="json")

    assert_problem(response, 400, field=field, code="invalid")
    grant.refresh_from_db()
    assert (grant.limit_hours, grant.period_end, grant.notes) == (
        Decimal("100.00"),
        dt.date(2026, 12, 31),
        "",
    )


def test_it_refuses_a_grant_period_longer_than_the_horizon(api, operator, org):
    response = api(operator).post(
        "/api/v1/quota-grants",
        {
            "organization": org.slug,
            "scope": "*",
            "period_start": "2026-01-01",
            "period_end": "2035-12-31",
            "limit_hours": "10",
        },
        format="json",
    )

    assert_problem(response, 400, field="period_end")
    assert not QuotaGrant.objects.exists()


def test_it_answers_409_naming_what_still_refers_to_a_centre(api, operator):
    equipment = EquipmentTypeFactory(code="HC-MRI")

    response = api(operator).delete(f"/api/v1/centers/{equipment.center.code}")

    body = assert_problem(response, 409, code="protected")
    assert "equipment types" in body["detail"]
    assert Center.objects.filter(pk=equipment.center_id).exists()


@pytest.mark.parametrize("kind", ["equipment-types", "pools"])
def test_it_answers_409_for_a_resource_with_units_or_nodes(api, operator, kind):
    if kind == "pools":
        code = make_pool(nodes=1, per_node=2, code="GPU-A100").code
        model = AcceleratorPool
    else:
        code = EquipmentUnitFactory(
            equipment_type=EquipmentTypeFactory(code="HC-CT")
        ).equipment_type.code
        model = EquipmentType

    response = api(operator).delete(f"/api/v1/{kind}/{code}")

    assert_problem(response, 409, code="protected")
    assert model.objects.filter(code=code).exists()


def test_it_answers_409_for_a_code_already_taken(api, operator):
    EquipmentTypeFactory(code="HC-MRI")
    center = Center.objects.get()

    response = api(operator).post(
        "/api/v1/equipment-types",
        {
            "code": "HC-MRI",
            "name": "MRI",
            "name_en": "MRI",
            "center": center.code,
            "field": "healthcare",
        },
        format="json",
    )

    assert_problem(response, 409, field="code", code="conflict")


def test_the_safety_net_answers_a_database_refusal_as_a_4xx():
    class UniqueViolation(Exception):
        pass

    exc = IntegrityError("duplicate key")
    exc.__cause__ = UniqueViolation()
    response = problem_exception_handler(exc, {})

    assert response.status_code == 409
    assert response.data["code"] == "conflict"
    assert (
        problem_exception_handler(OverflowError("date value out of range"), {}).status_code == 400
    )


# --- bodies: nesting, size, and Django's own error pages -------------------------------------


def test_it_refuses_json_nested_too_deep_as_a_parse_error(api, member):
    body = "[" * 1000 + "]" * 1000

    response = api(member).post("/api/v1/bookings", body, content_type="application/json")

    assert_problem(response, 400, field="body", code="parse_error")


def test_it_reads_json_nested_within_the_limit(api, operator, grant):
    deep = {"a": [[[["x"]]]]}

    response = api(operator).patch(
        f"/api/v1/quota-grants/{grant.pk}", {"notes": "fine", "extra": deep}, format="json"
    )

    assert response.status_code == 200, response.content


def test_json_depth_skips_brackets_inside_strings():
    assert json_depth(b'{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert json_depth(b'"\\"[["') == 0
    assert json_depth(b"[" * (MAX_JSON_DEPTH + 1)) == MAX_JSON_DEPTH + 1


def test_it_answers_an_oversized_body_with_413_problem_json(member, settings):
    settings.TESTBED_MAX_BODY_BYTES = 10_000
    body = json.dumps({"purpose": "x" * 20_000})

    response = client_for(member).post("/api/v1/bookings", body, content_type="application/json")

    assert_problem(response, 413, field="body", code="too_large")


def test_it_answers_a_malformed_body_as_a_parse_error(api, member):
    response = api(member).post("/api/v1/bookings", "{not json", content_type="application/json")

    assert_problem(response, 400, field="body", code="parse_error")


def test_it_answers_an_unknown_api_path_with_problem_json():
    response = APIClient().get("/api/v1/no-such-thing")

    assert_problem(response, 404, code="not_found")


def test_a_server_error_under_the_api_is_problem_json_too():
    request = RequestFactory().get("/api/v1/bookings")

    response = api_handler500(request)

    assert response.status_code == 500
    assert response["Content-Type"] == PROBLEM
    assert json.loads(response.content)["code"] == "server_error"
    assert api_handler404(RequestFactory().get("/nowhere"), None)["Content-Type"].startswith(
        "text/html"
    )


# --- error codes: every one the code can answer is documented --------------------------------


def test_every_code_the_services_raise_is_a_documented_api_code():
    pattern = re.compile(r"""\bcode=["']([a-z_]+)["']""")
    refusal = re.compile(r"""Refusal\(\s*["']([a-z_]+)["']""")
    found: dict[str, str] = {}
    for folder in ("booking", "equipment", "testbed"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts or "agent" in path.parts:
                continue
            text = path.read_text()
            for match in [*pattern.finditer(text), *refusal.finditer(text)]:
                found.setdefault(match.group(1), str(path.relative_to(ROOT)))

    undocumented = {code: where for code, where in found.items() if code not in API_CODES}
    assert not undocumented, f"codes missing from testbed.api.errors.API_CODES: {undocumented}"


# --- every datetime in a response is in the facility's zone ----------------------------------


ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def datetimes_in(value, path="$"):
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from datetimes_in(sub, f"{path}.{key}")
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            yield from datetimes_in(sub, f"{path}[{index}]")
    elif isinstance(value, str) and ISO_DATETIME.match(value):
        yield path, value


def test_every_datetime_in_responses_is_in_plus_nine(api, operator, member, org, pool, grant):
    from booking.services.bookings import booking_request
    from booking.services.quotas import quota_grant_adjust

    booking = booking_request(
        actor=member,
        organization=org,
        resource_code=pool.code,
        quantity=1,
        start=aware(2026, 12, 10, 9),
        end=aware(2026, 12, 10, 12),
    )
    window = MaintenanceWindow.objects.create(
        pool=pool,
        start=dt.datetime(2026, 12, 10, 0, tzinfo=dt.UTC),
        end=dt.datetime(2026, 12, 10, 1, tzinfo=dt.UTC),
        reason="PM",
    )
    Booking.objects.filter(pk=booking.pk).update(
        affected_by_maintenance=window,
        idle_flagged_at=dt.datetime(2026, 12, 10, 1, tzinfo=dt.UTC),
        alternatives=[{"start": "2026-12-11T00:00:00+00:00", "end": "2026-12-11T03:00:00+00:00"}],
    )
    quota_grant_adjust(actor=operator, grant=grant, channel="api", hours=Decimal("1"), reason="x")
    client = api(operator)
    urls = [
        f"/api/v1/bookings/{booking.pk}",
        "/api/v1/bookings",
        "/api/v1/maintenance-windows",
        f"/api/v1/quota-grants/{grant.pk}/ledger",
        "/api/v1/quota-grants",
        "/api/v1/organizations",
        f"/api/v1/availability?resource={pool.code}&start=2026-12-10T00:00:00%2B00:00&end=2026-12-11T00:00:00%2B00:00",
    ]

    seen = []
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, (url, response.content[:300])
        seen += list(datetimes_in(response.json(), url))

    assert len(seen) > 10
    assert [(path, value) for path, value in seen if not value.endswith("+09:00")] == []
