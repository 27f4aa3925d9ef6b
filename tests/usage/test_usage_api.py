"""GET /api/v1/usage (API.md) as JSON, CSV and XLSX, and GET /api/v1/reports/utilisation."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest
import time_machine
from rest_framework.test import APIClient

from booking.reports import usage_report
from booking.services.api_keys import api_key_create
from tests.factories import UserFactory, aware
from tests.usage.test_rollups import build_month, roll_up_all

pytestmark = pytest.mark.django_db

TODAY = aware(2027, 1, 15, 9)  # November is in the past: the report reads DailyUsage
NOVEMBER = {"start": "2026-11-01T00:00:00+09:00", "end": "2026-12-01T00:00:00+09:00"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
INTEGER_COLUMNS = {"bookings", "cancelled", "no_shows", "charge_krw"}
HOUR_COLUMNS = {"booked_hours", "used_hours", "unit_hours"}


@pytest.fixture
def month(org, other_org, member, outsider):
    built = build_month(org=org, other_org=other_org, member=member, outsider=outsider)
    roll_up_all()
    return built


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(TODAY, tick=False):
        yield


def usage(client, **params):
    return client.get("/api/v1/usage", {**NOVEMBER, **params})


def typed(column: str, text: str):
    if column in INTEGER_COLUMNS:
        return int(text)
    if column in HOUR_COLUMNS:
        return float(text)
    return text


def test_it_reports_usage_as_json_with_totals(api, operator, month):
    response = usage(api(operator))

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["start"] == NOVEMBER["start"] and data["end"] == NOVEMBER["end"]
    assert data["group_by"] == ["organization", "resource"]
    assert data["columns"][:3] == ["organization", "organization_name", "resource"]
    assert {(r["organization"], r["resource"]) for r in data["rows"]} == {
        ("acme", "HC-EMG"),
        ("acme", "POOL-H"),
        ("globex", "HC-EMG"),
        ("globex", "POOL-H"),
    }
    for row in data["rows"]:
        assert set(row) == set(data["columns"])
        for name in (
            "bookings",
            "booked_hours",
            "used_hours",
            "unit_hours",
            "cancelled",
            "no_shows",
            "charge_krw",
        ):
            assert name in row
    # 10:00–10:40 used (the 09:55 check-in counts from the start) and the late cancellation's
    # booked hour consumed (tests/usage/test_rollups.py).
    assert data["totals"]["unit_hours"] == 92.6667
    assert data["totals"]["booked_hours"] == sum(r["booked_hours"] for r in data["rows"])
    expected = usage_report(
        scope_q=None, start=aware(2026, 11, 1), end=aware(2026, 12, 1), group_by=None
    )
    assert data["rows"] == expected.rows


@pytest.mark.parametrize("how", ["query", "accept"])
def test_it_answers_csv_that_parses_back_to_the_json_rows(api, operator, month, how):
    client = api(operator)
    params = {"group_by": "organization,resource,day"}
    json_rows = usage(client, **params).json()["rows"]
    if how == "query":
        response = usage(client, format="csv", **params)
    else:
        response = client.get("/api/v1/usage", {**NOVEMBER, **params}, HTTP_ACCEPT="text/csv")

    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="usage-20261101-20261130.csv"'
    reader = csv.reader(io.StringIO(response.content.decode("utf-8-sig")))
    header, *lines = list(reader)
    assert header == [
        "organization",
        "organization_name",
        "resource",
        "day",
        "bookings",
        "booked_hours",
        "used_hours",
        "unit_hours",
        "cancelled",
        "no_shows",
        "charge_krw",
    ]
    parsed = [{c: typed(c, v) for c, v in zip(header, line, strict=True)} for line in lines]
    assert parsed == json_rows
    assert len(parsed) > 4


@pytest.mark.parametrize("how", ["query", "accept"])
def test_it_answers_xlsx_that_parses_back_to_the_json_rows(api, operator, month, how):
    client = api(operator)
    json_rows = usage(client, group_by="month,center").json()["rows"]
    if how == "query":
        response = usage(client, format="xlsx", group_by="month,center")
    else:
        response = client.get(
            "/api/v1/usage", {**NOVEMBER, "group_by": "month,center"}, HTTP_ACCEPT=XLSX
        )

    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith(XLSX)
    assert response["Content-Disposition"] == 'attachment; filename="usage-20261101-20261130.xlsx"'
    workbook = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True)
    assert len(workbook.sheetnames) == 1
    header, *lines = list(workbook.active.iter_rows(values_only=True))
    assert list(header) == [
        "month",
        "center",
        "bookings",
        "booked_hours",
        "used_hours",
        "unit_hours",
        "cancelled",
        "no_shows",
        "charge_krw",
    ]
    parsed = [dict(zip(header, line, strict=True)) for line in lines]
    assert parsed == json_rows
    assert all(
        isinstance(row["charge_krw"], int) and isinstance(row["booked_hours"], int | float)
        for row in parsed
    )


def test_it_shows_members_only_their_organisation(api, member, outsider, month):
    mine = usage(api(member)).json()
    theirs = usage(api(outsider)).json()

    assert {r["organization"] for r in mine["rows"]} == {"acme"}
    assert {r["organization"] for r in theirs["rows"]} == {"globex"}
    assert mine["totals"]["unit_hours"] + theirs["totals"]["unit_hours"] == pytest.approx(92.6667)


def test_it_shows_a_user_of_no_organisation_nothing(api, month):
    data = usage(api(UserFactory(username="lonely"))).json()
    assert data["rows"] == [] and data["totals"]["bookings"] == 0


def test_it_hides_other_organisations_when_asked_by_name(api, member, operator, month):
    response = usage(api(member), organization="globex")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    filtered = usage(api(operator), organization="globex").json()
    assert {r["organization"] for r in filtered["rows"]} == {"globex"}


def test_it_scopes_an_api_key_to_its_organisation(manager, org, month):
    _key, raw = api_key_create(
        actor=manager, organization=org, name="ERP", scopes=["read"], channel="api"
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    data = usage(client).json()
    assert {r["organization"] for r in data["rows"]} == {"acme"}
    assert usage(client, organization="globex").status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": None}, "start"),
        ({"start": "2026-11-01T00:00:00"}, "start"),
        ({"end": "2026-10-01T00:00:00+09:00"}, "end"),
        ({"end": "2028-11-01T00:00:00+09:00"}, "end"),
        ({"group_by": "organization,colour"}, "group_by"),
        ({"group_by": "day,month"}, "group_by"),
        ({"format": "pdf"}, "format"),
    ],
)
def test_it_refuses_bad_parameters_naming_the_field(api, member, params, field):
    query = {k: v for k, v in {**NOVEMBER, **params}.items() if v is not None}
    response = api(member).get("/api/v1/usage", query)

    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert field in response.json()["errors"]


def test_it_keeps_errors_as_problem_json_when_csv_was_asked(api, member):
    response = api(member).get(
        "/api/v1/usage",
        {"start": "2026-11-01T00:00:00", "end": NOVEMBER["end"]},
        HTTP_ACCEPT="text/csv",
    )
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    assert "start" in response.json()["errors"]


def test_it_refuses_anonymous_callers(api):
    response = api(None).get("/api/v1/usage", NOVEMBER)
    assert response.status_code == 401


def test_it_reads_a_month_with_few_queries(api, operator, month, django_assert_max_num_queries):
    client = api(operator)
    with django_assert_max_num_queries(4):  # token, daily usage, organisation names (+ slack)
        assert usage(client).status_code == 200


# --- utilisation ---------------------------------------------------------------------------------------

MONDAY = {"start": "2026-11-02T00:00:00+09:00", "end": "2026-11-03T00:00:00+09:00"}


def test_it_reports_utilisation_per_resource_to_operators(api, operator, month):
    response = api(operator).get("/api/v1/reports/utilisation", MONDAY)

    assert response.status_code == 200, response.content
    rows = {r["resource"]: r for r in response.json()["rows"]}
    lab = rows["HC-EMG"]
    assert lab["capacity_units"] == 2 and lab["capacity_hours"] == 18  # 2 units × 09–18
    # used: 10:00–10:40 (checked in at 09:55, but use counts from the start)
    assert lab["booked_hours"] == 4 and lab["used_hours"] == 0.6667 and lab["no_show_hours"] == 3
    assert lab["idle_hours"] == 3.3333
    assert lab["booked_pct"] == 22.22 and lab["used_pct"] == 3.7 and lab["no_show_pct"] == 75.0
    pool = rows["POOL-H"]
    assert pool["capacity_units"] == 16 and pool["capacity_hours"] == 16 * 24
    assert pool["booked_hours"] == 8 and pool["used_hours"] == 8  # 22:00–24:00 of the ×4 booking
    assert pool["idle_pct"] == 0.0


def test_it_answers_utilisation_as_csv(api, operator, month):
    response = api(operator).get("/api/v1/reports/utilisation", {**MONDAY, "format": "csv"})
    assert response.status_code == 200
    header, *lines = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert header[:3] == ["resource", "resource_kind", "center"]
    assert {line[0] for line in lines} == {"HC-EMG", "POOL-H"}
    assert (
        response["Content-Disposition"]
        == 'attachment; filename="utilisation-20261102-20261102.csv"'
    )


def test_it_keeps_utilisation_for_operators(api, member, manager, month):
    for user in (member, manager):
        assert api(user).get("/api/v1/reports/utilisation", MONDAY).status_code == 403


def test_it_documents_the_report_endpoints(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    paths = {p.rstrip("/"): v for p, v in schema["paths"].items()}
    usage_get = paths["/api/v1/usage"]["get"]
    assert {"text/csv", XLSX, "application/json"} <= set(usage_get["responses"]["200"]["content"])
    assert {"start", "end", "group_by", "organization", "format"} <= {
        p["name"] for p in usage_get["parameters"]
    }
    assert "get" in paths["/api/v1/reports/utilisation"]
