"""Issue 8, sections 1 and 2: keys act as their organisation with exactly their scopes; roles.

Each test is one of the smallest inputs that went wrong before (named in its docstring); the
route-by-persona matrix is tests/test_isolation.py.
"""

from __future__ import annotations

import pytest
import time_machine
from rest_framework.test import APIClient

from booking.models import ApiKey, Booking, Invitation, Membership, Organization, QuotaGrant
from booking.services.api_keys import api_key_create
from equipment.models import Center, MaintenanceWindow
from tests.factories import (
    EquipmentTypeFactory,
    EquipmentUnitFactory,
    OrganizationFactory,
    UserFactory,
    add_member,
    aware,
)

pytestmark = pytest.mark.django_db

NOW = aware(2026, 12, 1, 9)


def key_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def make_key(actor, org, scopes) -> str:
    return api_key_create(actor=actor, organization=org, name="ci", scopes=scopes, channel="api")[1]


@pytest.fixture
def equipment(db):
    etype = EquipmentTypeFactory(code="EN-ESS", max_lead_days=60)
    EquipmentUnitFactory(equipment_type=etype, code="EN-ESS-01")
    return etype


def booking_body(**extra) -> dict:
    return {
        "resource": "EN-ESS",
        "start": "2026-12-02T10:00:00+09:00",
        "end": "2026-12-02T11:00:00+09:00",
        **extra,
    }


# --- 1. keys are an organisation's, never a person's rights ----------------------------------


def test_a_key_made_by_a_manager_of_two_organisations_reaches_only_its_own(org, other_org):
    """Before: a key for A listed B's members, renamed B and created a manager of B."""
    both = UserFactory(username="both")
    add_member(org, both, "manager")
    add_member(other_org, both, "manager")
    client = key_client(make_key(both, org, ["members:manage", "bookings:read"]))
    assert client.get("/api/v1/organizations/globex/members").status_code == 404
    assert client.patch("/api/v1/organizations/globex", {"name": "x"}).status_code in (403, 404)
    made = client.post(
        "/api/v1/organizations/globex/members",
        {"username": "mole", "email": "m@x.kr", "role": "manager"},
        format="json",
    )
    assert made.status_code == 404
    assert other_org.name == Organization.objects.get(slug="globex").name
    assert not Membership.objects.filter(organization=other_org, user__username="mole").exists()
    # ... and its own organisation's members, with the scope
    assert client.get("/api/v1/organizations/acme/members").status_code == 200


def test_a_key_an_operator_made_has_no_operator_rights(operator, org, other_org):
    """Before: an operator's `read` key could create centres, windows, organisations and grants."""
    add_member(org, operator, "manager")
    client = key_client(make_key(operator, org, ["read"]))
    unit = EquipmentUnitFactory(code="U-1")
    attempts = {
        "/api/v1/centers": {"code": "x", "name": "x", "name_en": "x", "field": "energy"},
        "/api/v1/organizations": {
            "slug": "evil",
            "name": "x",
            "category": "sme",
            "region": "seoul",
        },
        "/api/v1/maintenance-windows": {
            "resource": unit.code,
            "start": "2026-12-10T09:00:00+09:00",
            "end": "2026-12-10T10:00:00+09:00",
            "reason": "x",
        },
        "/api/v1/quota-grants": {
            "organization": "globex",
            "scope": "*",
            "period_start": "2026-12-01",
            "period_end": "2026-12-31",
            "limit_hours": 1000,
        },
    }
    for path, body in attempts.items():
        response = client.post(path, body, format="json")
        assert response.status_code == 403, (path, response.content)
        assert response["Content-Type"].startswith("application/problem+json")
    assert client.get("/api/v1/organizations/globex").status_code == 404
    assert client.get("/api/v1/reports/utilisation").status_code == 403
    assert not Center.objects.filter(code="x").exists()
    assert not Organization.objects.filter(slug="evil").exists()
    assert not MaintenanceWindow.objects.exists() and not QuotaGrant.objects.exists()


def test_each_scope_is_enforced(manager, org):
    """Before: a `read` key edited its organisation and added a manager; a `book` key read
    bookings, grants, usage and members."""
    reader = key_client(make_key(manager, org, ["read"]))
    assert reader.patch("/api/v1/organizations/acme", {"name": "hacked"}).status_code == 403
    added = reader.post(
        "/api/v1/organizations/acme/members",
        {
            "username": "boss",
            "email": "b@x.kr",
            "password": "Very-long-pass-2026",
            "role": "manager",
        },
        format="json",
    )
    assert added.status_code == 403
    assert not Membership.objects.filter(user__username="boss").exists()
    booker = key_client(make_key(manager, org, ["book"]))
    for path in (
        "/api/v1/bookings",
        "/api/v1/quota-grants",
        "/api/v1/usage?start=2026-12-01T00:00:00%2B09:00&end=2026-12-31T00:00:00%2B09:00",
        "/api/v1/organizations/acme/members",
        "/api/v1/rounds",
    ):
        response = booker.get(path)
        assert response.status_code == 403, path
        assert "scope" in response.json()["detail"]


def test_legacy_scope_names_expand_to_the_new_ones(manager, org):
    key, _raw = api_key_create(
        actor=manager, organization=org, name="old", scopes=["read", "book"], channel="api"
    )
    assert key.scopes == sorted(["catalog:read", "bookings:read", "usage:read", "bookings:write"])
    from tests.conftest import client_for

    response = client_for(manager).post(
        "/api/v1/organizations/acme/api-keys", {"name": "x", "scopes": ["admin"]}, format="json"
    )
    assert response.status_code == 400
    assert any(field.startswith("scopes") for field in response.json()["errors"])


def test_a_key_naming_another_organisation_on_a_booking_is_refused(
    equipment, manager, org, other_org
):
    """Before: a key of B sending `"organization": "a"` got 201 for B."""
    outsider = UserFactory(username="globex-boss")
    add_member(other_org, outsider, "manager")
    client = key_client(make_key(outsider, other_org, ["bookings:write"]))
    with time_machine.travel(NOW, tick=False):
        response = client.post("/api/v1/bookings", booking_body(organization="acme"), format="json")
        assert response.status_code == 404, response.content
        assert response.json()["errors"] == {"organization": [response.json()["detail"]]}
        assert not Booking.objects.exists()
        own = client.post("/api/v1/bookings", booking_body(organization="globex"), format="json")
    assert own.status_code == 201, own.content


def test_a_person_naming_an_organisation_they_are_not_in_is_refused(equipment, member):
    with time_machine.travel(NOW, tick=False):
        from tests.conftest import client_for

        OrganizationFactory(slug="globex")
        response = client_for(member).post(
            "/api/v1/bookings", booking_body(organization="globex"), format="json"
        )
    assert response.status_code == 404 and not Booking.objects.exists()


def test_a_key_books_through_its_own_account_and_survives_its_maker(equipment, manager, org):
    key, raw = api_key_create(
        actor=manager, organization=org, name="ERP", scopes=["bookings:write"], channel="api"
    )
    client = key_client(raw)
    with time_machine.travel(NOW, tick=False):
        response = client.post("/api/v1/bookings", booking_body(), format="json")
        assert response.status_code == 201, response.content
        booking = Booking.objects.get()
        assert booking.user == key.user and booking.user != manager
        assert response.json()["user"] == f"apikey-{key.prefix}"
        assert not key.user.is_staff and not key.user.has_usable_password()
        # the key made it, so the key may cancel it ...
        cancelled = client.post(
            f"/api/v1/bookings/{booking.pk}/cancel", {"reason": "ERP change"}, format="json"
        )
        assert cancelled.status_code == 200, cancelled.content
        # ... and it is the organisation's key: the maker leaving does not stop it
        manager.is_active = False
        manager.save()
        assert client.post("/api/v1/bookings", booking_body(), format="json").status_code == 201
        org.is_active = False
        org.save()
        refused = client.post("/api/v1/bookings", booking_body(), format="json")
    assert refused.status_code == 401 and "deactivated" in refused.json()["detail"]


def test_a_key_cannot_cancel_a_booking_a_person_made(equipment, manager, member, org):
    from tests.conftest import client_for

    with time_machine.travel(NOW, tick=False):
        made = client_for(member).post("/api/v1/bookings", booking_body(), format="json").json()
        client = key_client(make_key(manager, org, ["bookings:write", "bookings:read"]))
        refused = client.post(f"/api/v1/bookings/{made['id']}/cancel", {"reason": "x"})
    assert refused.status_code == 403
    assert Booking.objects.get(pk=made["id"]).status == "pending"


def test_the_organisation_filter_refuses_organisations_the_caller_cannot_see(member, org):
    from tests.conftest import client_for

    OrganizationFactory(slug="globex")
    client = client_for(member)
    for path in (
        "/api/v1/bookings?organization=globex",
        "/api/v1/quota-grants?organization=globex",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["errors"] == {"organization": [response.json()["detail"]]}
    assert client.get("/api/v1/bookings?organization=acme").status_code == 200


# --- 2. roles ------------------------------------------------------------------------------------


def test_adding_an_existing_account_only_invites_it(api, manager, org, other_org, operator):
    """Before: a manager added another company's member (or the operator) by username, who then
    could not book any more ("several organisations")."""
    theirs = UserFactory(username="globex-dev")
    add_member(other_org, theirs, "member")
    response = api(manager).post(
        "/api/v1/organizations/acme/members",
        {"username": "globex-dev", "email": "ignored@acme.kr", "role": "manager"},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "invited"
    assert not Membership.objects.filter(organization=org, user=theirs).exists()
    assert theirs.email != "ignored@acme.kr"
    again = api(manager).post(
        "/api/v1/organizations/acme/members",
        {"username": "globex-dev", "email": "x@acme.kr"},
        format="json",
    )
    assert again.status_code == 409
    # nobody but the invited person answers it
    invitation = Invitation.objects.get()
    assert api(manager).post(f"/api/v1/invitations/{invitation.pk}/accept").status_code == 404
    mine = api(theirs).get("/api/v1/invitations").json()["results"]
    assert [i["organization"] for i in mine] == ["acme"]
    accepted = api(theirs).post(f"/api/v1/invitations/{invitation.pk}/accept")
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert Membership.objects.get(organization=org, user=theirs).role == "manager"
    assert api(theirs).post(f"/api/v1/invitations/{invitation.pk}/decline").status_code == 409
    # operators and key accounts cannot be pulled into an organisation
    for username in ("operator",):
        refused = api(manager).post(
            "/api/v1/organizations/acme/members",
            {"username": username, "email": "o@x.kr"},
            format="json",
        )
        assert refused.status_code == 400 and "username" in refused.json()["errors"]
    reserved = api(manager).post(
        "/api/v1/organizations/acme/members",
        {"username": "apikey-1234abcd", "email": "o@x.kr"},
        format="json",
    )
    assert reserved.status_code == 400


def test_a_declined_invitation_changes_nothing(api, manager, org):
    person = UserFactory(username="free-agent")
    api(manager).post(
        "/api/v1/organizations/acme/members", {"username": "free-agent", "email": "f@x.kr"}
    )
    invitation = Invitation.objects.get()
    declined = api(person).post(f"/api/v1/invitations/{invitation.pk}/decline")
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    assert not Membership.objects.filter(user=person).exists()


@pytest.mark.parametrize(
    "field,value",
    [
        ("category", "startup"),
        ("youth_startup", True),
        ("region", "seoul"),
        ("business_number", "1208147521"),
        ("is_active", False),
        ("slug", "renamed"),
    ],
)
def test_price_and_rights_attributes_are_operator_only(api, manager, operator, org, field, value):
    """Before: a manager set `category: startup` / `youth_startup: true` and got 50% off."""
    before = Organization.objects.filter(pk=org.pk).values().get()
    response = api(manager).patch("/api/v1/organizations/acme", {field: value}, format="json")
    assert response.status_code == 403, response.content
    assert field in response.json()["errors"]
    assert Organization.objects.filter(pk=org.pk).values().get() == before
    # the manager may still rename, and resend unchanged values with it
    renamed = api(manager).patch(
        "/api/v1/organizations/acme", {"name": "새 이름", "category": org.category}, format="json"
    )
    assert renamed.status_code == 200, renamed.content
    by_operator = api(operator).patch("/api/v1/organizations/acme", {field: value}, format="json")
    assert by_operator.status_code == 200, by_operator.content


def test_only_managers_list_members_with_their_emails(api, manager, member):
    """Before: a member listed every member with their email."""
    assert api(member).get("/api/v1/organizations/acme/members").status_code == 403
    listed = api(manager).get("/api/v1/organizations/acme/members")
    assert {m["email"] for m in listed.json()["results"]} == {manager.email, member.email}


def test_only_the_booker_or_an_operator_checks_in(api, equipment, manager, member, operator):
    """Before: a manager could check in a member's booking."""
    with time_machine.travel(NOW, tick=False):
        made = api(member).post("/api/v1/bookings", booking_body(), format="json").json()
    Booking.objects.filter(pk=made["id"]).update(status="confirmed")
    with time_machine.travel(aware(2026, 12, 2, 10, 5), tick=False):
        refused = api(manager).post(f"/api/v1/bookings/{made['id']}/check-in")
        assert refused.status_code == 403
        assert Booking.objects.get(pk=made["id"]).status == "confirmed"
        done = api(member).post(f"/api/v1/bookings/{made['id']}/check-in")
    assert done.status_code == 200, done.content


def test_existing_keys_get_service_accounts_and_new_scopes(manager, org):
    """Migration 0007 gives keys made before it an account of their own and the new scopes."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("booking.migrations.0007_api_key_accounts_and_invitations")
    old = ApiKey.objects.create(
        organization=org,
        name="old",
        prefix="0ld0ld00",
        key_hash="x",
        scopes=["read"],
        created_by=manager,
    )
    migration.keys_act_as_their_organisation(apps, None)
    old.refresh_from_db()
    assert old.user.username == "apikey-0ld0ld00" and not old.user.has_usable_password()
    assert old.scopes == ["bookings:read", "catalog:read", "usage:read"]


# --- found by an outside tester (curl against a dev server) --------------------------------------


def test_a_members_key_adds_members_only(manager, member, org):
    """Before: a `members:manage` key made a manager (then keys, renames), and demoted the real one."""
    client = key_client(make_key(manager, org, ["members:manage"]))
    made = client.post(
        "/api/v1/organizations/acme/members",
        {"username": "keymade", "email": "k@x.kr", "role": "manager"},
        format="json",
    )
    assert made.status_code == 403 and "role" in made.json()["errors"]
    with_password = client.post(
        "/api/v1/organizations/acme/members",
        {"username": "keymade", "email": "k@x.kr", "password": "Long-enough-pass-2026"},
        format="json",
    )
    assert with_password.status_code == 403 and "password" in with_password.json()["errors"]
    demoted = client.post(
        "/api/v1/organizations/acme/members",
        {"username": "manager", "email": "m@x.kr", "role": "member"},
        format="json",
    )
    assert demoted.status_code == 403
    assert Membership.objects.get(user=manager).role == "manager"
    assert not Membership.objects.filter(user__username="keymade").exists()
    plain = client.post(
        "/api/v1/organizations/acme/members", {"username": "keymade", "email": "k@x.kr"}
    )
    assert plain.status_code == 201 and plain.json()["role"] == "member"


def test_the_last_manager_cannot_be_made_a_member(api, manager, member):
    response = api(manager).post(
        "/api/v1/organizations/acme/members",
        {"username": "manager", "email": "m@x.kr", "role": "member"},
        format="json",
    )
    assert response.status_code == 409 and response.json()["code"] == "last_manager"
    assert Membership.objects.get(user=manager).role == "manager"
    api(manager).post(
        "/api/v1/organizations/acme/members",
        {"username": "member", "email": "x@x.kr", "role": "manager"},
        format="json",
    )
    stepped_down = api(manager).post(
        "/api/v1/organizations/acme/members",
        {"username": "manager", "email": "m@x.kr", "role": "member"},
        format="json",
    )
    assert stepped_down.status_code == 201


def test_a_refused_field_does_not_reveal_whether_another_organisation_holds_it(api, manager):
    """Before: 409 (taken) vs 403 (free) told a manager whose business number exists."""
    OrganizationFactory(slug="globex", business_number="120-81-47521")
    response = api(manager).patch(
        "/api/v1/organizations/acme", {"business_number": "1208147521"}, format="json"
    )
    assert response.status_code == 403 and "business_number" in response.json()["errors"]


def test_a_missing_scope_is_insufficient_scope_naming_it(manager, org):
    response = key_client(make_key(manager, org, ["bookings:write"])).get("/api/v1/bookings")
    body = response.json()
    assert response.status_code == 403 and body["code"] == "insufficient_scope"
    assert "'bookings:read'" in body["detail"] and "KeyScope" not in body["detail"]


def test_errors_stay_problem_json_when_html_is_asked_for(api, member):
    response = api(member).get("/api/v1/bookings/999999", HTTP_ACCEPT="text/html")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["code"] == "not_found"


def test_an_unknown_api_path_or_format_says_so(api, member, settings):
    settings.DEBUG = True  # `make run`: Django's HTML 404 page would answer otherwise
    unknown = api(member).get("/api/v1/nonexistent")
    assert unknown.status_code == 404
    assert unknown["Content-Type"].startswith("application/problem+json")
    for path in ("/api/v1/bookings?format=pdf", "/api/v1/centers?format=csv"):
        response = api(member).get(path)
        assert response.status_code == 400, path
        assert "format" in response.json()["errors"]


def test_a_grant_keeps_its_organisation_and_scope_and_never_overlaps(api, operator, org):
    OrganizationFactory(slug="globex")
    body = {
        "organization": "acme",
        "scope": "*",
        "period_start": "2026-12-01",
        "period_end": "2026-12-31",
        "limit_hours": "10",
    }
    with time_machine.travel(NOW, tick=False):
        grant = api(operator).post("/api/v1/quota-grants", body, format="json").json()
        moved = api(operator).patch(
            f"/api/v1/quota-grants/{grant['id']}", {"organization": "globex"}, format="json"
        )
        assert moved.status_code == 400 and "organization" in moved.json()["errors"]
        overlap = api(operator).post(
            "/api/v1/quota-grants", {**body, "period_start": "2026-12-15"}, format="json"
        )
    assert overlap.status_code == 409 and "period_start" in overlap.json()["errors"]
    assert QuotaGrant.objects.get().organization == org


def test_booking_without_naming_an_organisation_says_what_to_do(api, equipment, member, operator):
    other = OrganizationFactory(slug="globex")
    add_member(other, member, "member")
    with time_machine.travel(NOW, tick=False):
        several = api(member).post("/api/v1/bookings", booking_body(), format="json")
        as_operator = api(operator).post("/api/v1/bookings", booking_body(), format="json")
    assert several.status_code == 400 and "organization" in several.json()["errors"]
    assert as_operator.status_code == 400 and "Operators" in as_operator.json()["detail"]


def test_a_member_of_a_deactivated_organisation_is_told_so(api, equipment, member, org):
    org.is_active = False
    org.save()
    with time_machine.travel(NOW, tick=False):
        response = api(member).post("/api/v1/bookings", booking_body(), format="json")
    assert response.status_code == 403 and "deactivated" in response.json()["detail"]


def test_another_auth_scheme_is_told_to_use_bearer(member):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token abc")
    response = client.get("/api/v1/bookings")
    assert response.status_code == 401 and "Bearer" in response.json()["detail"]
