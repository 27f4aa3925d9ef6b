"""Organisations, members, API keys, quota grants and maintenance windows over the API."""

from __future__ import annotations

import pytest
import time_machine

from booking.models import ApiKey, Membership, QuotaGrant
from booking.services.allocation import booking_allocate
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware, make_pool

pytestmark = pytest.mark.django_db


def test_it_lets_operators_create_organisations_with_a_valid_business_number(api, operator, member):
    good = {
        "slug": "newco",
        "name": "뉴코",
        "business_number": "1208147521",
        "category": "startup",
        "region": "gwangju",
    }
    assert api(member).post("/api/v1/organizations", good, format="json").status_code == 403
    response = api(operator).post("/api/v1/organizations", good, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["business_number"] == "120-81-47521"
    bad = api(operator).post(
        "/api/v1/organizations",
        {**good, "slug": "bad", "business_number": "1208147522"},
        format="json",
    )
    assert bad.status_code == 400 and "business_number" in bad.json()["errors"]


def test_it_lists_only_own_organisations(api, member, outsider, operator):
    assert [o["slug"] for o in api(member).get("/api/v1/organizations").json()["results"]] == [
        "acme"
    ]
    assert api(outsider).get("/api/v1/organizations/acme").status_code == 404
    assert api(operator).get("/api/v1/organizations").json()["count"] == 2


def test_it_lets_managers_add_members(api, manager, member):
    response = api(manager).post(
        "/api/v1/organizations/acme/members",
        {"username": "newbie", "email": "n@acme.kr", "role": "member"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert Membership.objects.filter(organization__slug="acme", user__username="newbie").exists()
    denied = api(member).post(
        "/api/v1/organizations/acme/members", {"username": "x", "email": "x@acme.kr"}, format="json"
    )
    assert denied.status_code == 403
    # Members' emails are for managers (API.md): a member is refused the list.
    assert api(member).get("/api/v1/organizations/acme/members").status_code == 403
    listed = api(manager).get("/api/v1/organizations/acme/members").json()
    assert {m["username"] for m in listed["results"]} == {"manager", "member", "newbie"}


def test_it_issues_scoped_revocable_api_keys(api, manager, member):
    EquipmentUnitFactory(equipment_type=EquipmentTypeFactory(code="EN-ESS"), code="EN-ESS-01")
    made = api(manager).post(
        "/api/v1/organizations/acme/api-keys", {"name": "ERP", "scopes": ["read"]}, format="json"
    )
    assert made.status_code == 201, made.content
    raw = made.json()["key"]
    assert raw.startswith("tbk_") and not ApiKey.objects.filter(key_hash=raw).exists()
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/bookings").status_code == 200
    refused = client.post("/api/v1/bookings", {"resource": "EN-ESS"}, format="json")
    assert refused.status_code == 403
    assert (
        api(member)
        .post(
            "/api/v1/organizations/acme/api-keys", {"name": "x", "scopes": ["read"]}, format="json"
        )
        .status_code
        == 403
    )
    key_id = made.json()["id"]
    assert (
        api(manager).post(f"/api/v1/organizations/acme/api-keys/{key_id}/revoke").status_code == 200
    )
    revoked = client.get("/api/v1/bookings")
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


def test_it_shows_quota_balances_to_the_organisation_only(api, operator, member, outsider, org):
    pool = make_pool(nodes=1, per_node=8)
    response = api(operator).post(
        "/api/v1/quota-grants",
        {
            "organization": "acme",
            "scope": pool.code,
            "period_start": "2026-12-01",
            "period_end": "2026-12-31",
            "limit_hours": "100",
            "enforcement": "hard",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    grant_id = response.json()["id"]
    assert api(member).post("/api/v1/quota-grants", {}, format="json").status_code == 403
    bad_scope = api(operator).post(
        "/api/v1/quota-grants",
        {
            "organization": "acme",
            "scope": "NOPE",
            "period_start": "2026-12-01",
            "period_end": "2026-12-31",
            "limit_hours": "1",
        },
        format="json",
    )
    assert bad_scope.status_code == 400 and "scope" in bad_scope.json()["errors"]
    with time_machine.travel(aware(2026, 12, 1, 8), tick=False):
        booking = (
            api(member)
            .post(
                "/api/v1/bookings",
                {
                    "resource": pool.code,
                    "quantity": 4,
                    "start": "2026-12-02T00:00:00+09:00",
                    "end": "2026-12-02T05:00:00+09:00",
                },
                format="json",
            )
            .json()
        )
        booking_allocate(booking_id=booking["id"])
    grant = api(member).get(f"/api/v1/quota-grants/{grant_id}").json()
    assert (grant["held_hours"], grant["consumed_hours"], grant["remaining_hours"]) == (
        "20.00",
        "0.00",
        "80.00",
    )
    assert api(outsider).get(f"/api/v1/quota-grants/{grant_id}").status_code == 404
    patched = api(operator).patch(
        f"/api/v1/quota-grants/{grant_id}", {"limit_hours": "150"}, format="json"
    )
    assert patched.json()["remaining_hours"] == "130.00"
    assert QuotaGrant.objects.get(pk=grant_id).limit_hours == 150


def test_it_lets_operators_declare_maintenance(api, operator, member):
    t = EquipmentTypeFactory(code="AU-SIM")
    EquipmentUnitFactory(equipment_type=t, code="AU-SIM-01")
    window = {
        "resource": "AU-SIM-01",
        "start": "2026-12-10T09:00:00+09:00",
        "end": "2026-12-10T18:00:00+09:00",
        "reason": "정기 점검",
    }
    assert api(member).post("/api/v1/maintenance-windows", window, format="json").status_code == 403
    response = api(operator).post("/api/v1/maintenance-windows", window, format="json")
    assert response.status_code == 201, response.content
    assert (
        response.json()["resource"] == "AU-SIM-01"
        and response.json()["resource_kind"] == "equipmentunit"
    )
    unknown = api(operator).post(
        "/api/v1/maintenance-windows", {**window, "resource": "NOPE"}, format="json"
    )
    assert unknown.status_code == 400 and "resource" in unknown.json()["errors"]
    with time_machine.travel(aware(2026, 12, 1, 8), tick=False):
        refused = api(member).post(
            "/api/v1/bookings",
            {
                "resource": "AU-SIM",
                "start": "2026-12-10T10:00:00+09:00",
                "end": "2026-12-10T11:00:00+09:00",
            },
            format="json",
        )
    booking = refused.json()
    booking_allocate(booking_id=booking["id"])
    assert (
        api(member).get(f"/api/v1/bookings/{booking['id']}").json()["rejection"]["code"]
        == "unavailable"
    )


def test_it_lets_operators_adjust_a_grant_with_a_reason(api, operator, member, org):
    pool = make_pool(nodes=1, per_node=8)
    grant = QuotaGrant.objects.create(
        organization=org,
        scope=pool.code,
        period_start="2026-01-01",
        period_end="2026-12-31",
        limit_hours=100,
    )
    url = f"/api/v1/quota-grants/{grant.pk}/adjust"
    assert api(member).post(url, {"hours": "5", "reason": "x"}, format="json").status_code == 403
    no_reason = api(operator).post(url, {"hours": "5", "reason": ""}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["errors"]
    done = api(operator).post(
        url, {"hours": "-12.5", "reason": "장애 보상 / outage credit"}, format="json"
    )
    assert done.status_code == 200 and done.json()["remaining_hours"] == "112.50"
    ledger = api(member).get(f"/api/v1/quota-grants/{grant.pk}/ledger").json()["results"]
    assert [(e["kind"], e["hours"], e["actor"]) for e in ledger] == [
        ("adjust", "-12.5000", "operator")
    ]
