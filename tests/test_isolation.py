"""The tenant boundary, generated from the URL conf: every API route × every kind of caller.

ROUTES below is the specification: for each (route name, method), the rule that decides who may
use it. The test discovers the routes from the URL conf, so a new endpoint fails
`test_it_has_a_rule_for_every_route` until someone writes down who may use it, and then every
persona is tried against it. Each call runs in a savepoint that is rolled back, so the callers
never see each other's changes.

Personas: an operator; a manager and a member of organisation A (acme); a manager and a member
of organisation B (globex); an API key of A for each scope; a key of B with every scope; nobody.
The objects named in paths (booking, grant, key, round, ...) all belong to A.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from booking.models import Allocation, Booking, ContestedRound, Invitation, QuotaGrant
from booking.services.api_keys import api_key_create
from equipment.models import MaintenanceWindow
from integrations.calendars.services import calendar_feed_create
from integrations.webhooks.models import WebhookDelivery, WebhookEndpoint
from testbed.choices import KeyScope
from tests.conftest import client_for
from tests.factories import (
    EquipmentTypeFactory,
    EquipmentUnitFactory,
    UserFactory,
    add_member,
    aware,
    make_pool,
)

pytestmark = pytest.mark.django_db

OK = "ok"  # access granted: anything but 401, 403 and 404 (a 400 for an empty body is fine)
HIDDEN = "hidden"  # 404: A's thing does not exist for this caller
FORBIDDEN = "forbidden"  # 403 (or 404)
PUBLIC = "public"
NODE = "node"  # node agents' own key only
ANON = "anonymous"

PEOPLE = ("operator", "manager", "member", "outsider_manager", "outsider_member")
A_KEYS = tuple(f"key:{scope}" for scope in KeyScope.values)
PERSONAS = (*PEOPLE, *A_KEYS, "outsider_key", ANON)


def _key_scope(persona: str) -> str | None:
    return persona.split(":", 1)[1] if persona.startswith("key:") else None


# --- rules: persona → expectation ----------------------------------------------------------------


def catalog_read(p: str) -> str:
    if p in PEOPLE or p == "outsider_key":
        return OK
    return OK if _key_scope(p) == KeyScope.CATALOG_READ else FORBIDDEN


def operator_only(p: str) -> str:
    return OK if p == "operator" else FORBIDDEN


def people_only(p: str) -> str:
    return OK if p in PEOPLE else FORBIDDEN


def list_with_scope(scope: str):
    """A list every caller may ask for (it is filtered to what they see); keys need the scope."""

    def rule(p: str) -> str:
        if p in PEOPLE or p == "outsider_key":
            return OK
        return OK if _key_scope(p) == scope else FORBIDDEN

    return rule


def a_object(scope: str | None, *, member: bool = True, manager: bool = True, booker=False):
    """One of A's things: operators; A's people as given; A's keys with the scope; outsiders 404."""

    def rule(p: str) -> str:
        if p == "operator":
            return OK
        if p == "outsider_key" and scope is None:
            return FORBIDDEN  # closed to every key before any organisation is looked at
        if p.startswith("outsider"):
            return HIDDEN
        if p == "manager":
            return OK if manager else FORBIDDEN
        if p == "member":
            return OK if (member or booker) else FORBIDDEN
        # A's keys: the scope, but never on a booking that a person made (booker rules)
        if scope is None or booker:
            return FORBIDDEN
        return OK if _key_scope(p) == scope else FORBIDDEN

    return rule


def org_profile(p: str) -> str:
    if p.startswith("outsider"):
        return HIDDEN
    return OK  # A's people, every A key (its own profile), the operator


def org_edit(p: str) -> str:
    if p in ("operator", "manager"):
        return OK
    if p in ("outsider_manager", "outsider_member"):
        return HIDDEN
    return FORBIDDEN  # A's member; every key (the outsider's too: keys never edit)


def booking_create(p: str) -> str:
    if p in PEOPLE or p == "outsider_key":
        return OK  # each for their own organisation; operators for the one they name
    return OK if _key_scope(p) == KeyScope.BOOKINGS_WRITE else FORBIDDEN


def webhook_create(p: str) -> str:
    """Each manager (and key with the scope) for their own organisation; operators read only."""
    if p in ("manager", "outsider_manager", "outsider_key"):
        return OK
    return OK if _key_scope(p) == KeyScope.WEBHOOKS_MANAGE else FORBIDDEN


def webhook_list(p: str) -> str:
    """Managers (their organisations'), operators (all), keys with the scope; members are refused
    as on one endpoint, not answered with an empty list."""
    if p in ("member", "outsider_member"):
        return FORBIDDEN
    return list_with_scope(KeyScope.WEBHOOKS_MANAGE)(p)


def webhook_write(p: str) -> str:
    """A's endpoint: A's managers and A's keys with `webhooks:manage`; operators only read."""
    if p == "operator":
        return FORBIDDEN
    return a_object(KeyScope.WEBHOOKS_MANAGE, member=False)(p)


def own_calendar_feed(p: str) -> str:
    """A's member's own calendar feed: only they reach it; other people (operators too) find
    nothing; keys never manage feeds."""
    if p == "member":
        return OK
    return HIDDEN if p in PEOPLE else FORBIDDEN


def invitation_answer(p: str) -> str:
    # The invitation is addressed to somebody else: nobody here may answer it.
    return HIDDEN if p in PEOPLE else FORBIDDEN


ROUTES = {
    ("auth-token", "POST"): lambda p: PUBLIC,
    ("auth-logout", "POST"): people_only,  # a key is revoked by its manager, not by itself
    ("auth-logout-all", "POST"): people_only,
    ("center-list", "GET"): catalog_read,
    ("center-list", "POST"): operator_only,
    ("center-detail", "GET"): catalog_read,
    ("center-detail", "PUT"): operator_only,
    ("center-detail", "PATCH"): operator_only,
    ("center-detail", "DELETE"): operator_only,
    ("equipment-type-list", "GET"): catalog_read,
    ("equipment-type-list", "POST"): operator_only,
    ("equipment-type-detail", "GET"): catalog_read,
    ("equipment-type-detail", "PUT"): operator_only,
    ("equipment-type-detail", "PATCH"): operator_only,
    ("equipment-type-detail", "DELETE"): operator_only,
    ("pool-list", "GET"): catalog_read,
    ("pool-list", "POST"): operator_only,
    ("pool-detail", "GET"): catalog_read,
    ("pool-detail", "PUT"): operator_only,
    ("pool-detail", "PATCH"): operator_only,
    ("pool-detail", "DELETE"): operator_only,
    ("availability", "GET"): catalog_read,
    ("usage", "GET"): list_with_scope(KeyScope.USAGE_READ),
    ("utilisation-report", "GET"): operator_only,
    ("telemetry", "POST"): lambda p: NODE,
    ("booking-list", "GET"): list_with_scope(KeyScope.BOOKINGS_READ),
    ("booking-list", "POST"): booking_create,
    ("booking-detail", "GET"): a_object(KeyScope.BOOKINGS_READ),
    ("booking-approve", "POST"): operator_only,
    ("booking-reject", "POST"): operator_only,
    # The booking was made by A's member: they, A's manager and operators cancel it; check-in
    # and check-out are the booker's and operators'. None of A's keys made it.
    ("booking-cancel", "POST"): a_object(KeyScope.BOOKINGS_WRITE, booker=True),
    ("booking-move", "POST"): a_object(KeyScope.BOOKINGS_WRITE, booker=True),
    ("booking-check-in", "POST"): a_object(KeyScope.BOOKINGS_WRITE, manager=False, booker=True),
    ("booking-check-out", "POST"): a_object(KeyScope.BOOKINGS_WRITE, manager=False, booker=True),
    ("organization-list", "GET"): lambda p: OK,
    ("organization-list", "POST"): operator_only,
    ("organization-detail", "GET"): org_profile,
    ("organization-detail", "PUT"): org_edit,
    ("organization-detail", "PATCH"): org_edit,
    ("organization-members", "GET"): a_object(KeyScope.MEMBERS_MANAGE, member=False),
    ("organization-members", "POST"): a_object(KeyScope.MEMBERS_MANAGE, member=False),
    ("organization-api-keys", "GET"): a_object(None, member=False),
    ("organization-api-keys", "POST"): a_object(None, member=False),
    ("organization-revoke-api-key", "POST"): a_object(None, member=False),
    ("quota-grant-list", "GET"): list_with_scope(KeyScope.USAGE_READ),
    ("quota-grant-list", "POST"): operator_only,
    ("quota-grant-detail", "GET"): a_object(KeyScope.USAGE_READ),
    ("quota-grant-detail", "PATCH"): operator_only,
    ("quota-grant-adjust", "POST"): operator_only,
    ("quota-grant-ledger", "GET"): a_object(KeyScope.USAGE_READ),
    ("maintenance-window-list", "GET"): operator_only,
    ("maintenance-window-list", "POST"): operator_only,
    ("maintenance-window-detail", "GET"): operator_only,
    ("maintenance-window-detail", "DELETE"): operator_only,
    ("round-list", "GET"): list_with_scope(KeyScope.BOOKINGS_READ),
    ("round-detail", "GET"): a_object(KeyScope.BOOKINGS_READ),
    ("invitation-list", "GET"): people_only,
    ("invitation-accept", "POST"): invitation_answer,
    ("invitation-decline", "POST"): invitation_answer,
    ("calendar-feed-list", "GET"): people_only,  # each person's own feeds
    ("calendar-feed-list", "POST"): people_only,
    ("calendar-feed-detail", "GET"): own_calendar_feed,
    ("calendar-feed-detail", "PATCH"): own_calendar_feed,
    ("calendar-feed-detail", "DELETE"): own_calendar_feed,
    ("calendar-feed-regenerate", "POST"): own_calendar_feed,
    ("webhook-endpoint-list", "GET"): webhook_list,
    ("webhook-endpoint-list", "POST"): webhook_create,
    ("webhook-endpoint-detail", "GET"): a_object(KeyScope.WEBHOOKS_MANAGE, member=False),
    ("webhook-endpoint-detail", "PATCH"): webhook_write,
    ("webhook-endpoint-detail", "DELETE"): webhook_write,
    ("webhook-endpoint-rotate-secret", "POST"): webhook_write,
    ("webhook-endpoint-test", "POST"): webhook_write,
    ("webhook-endpoint-deliveries", "GET"): a_object(KeyScope.WEBHOOKS_MANAGE, member=False),
    ("webhook-endpoint-delivery", "GET"): a_object(KeyScope.WEBHOOKS_MANAGE, member=False),
    ("webhook-endpoint-redeliver", "POST"): webhook_write,
}


# --- discovering the routes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    pattern: str
    view: type


def _walk(patterns, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        else:
            yield prefix + str(p.pattern), p


def api_routes() -> list[Route]:
    routes: dict[tuple[str, str], Route] = {}
    for pattern, p in _walk(get_resolver().url_patterns):
        if not pattern.startswith("api/v1/"):
            continue
        view = p.callback.cls  # type: ignore[attr-defined]
        allowed = {m.upper() for m in view.http_method_names} - {"HEAD", "OPTIONS", "TRACE"}
        actions = getattr(p.callback, "actions", None)
        if actions:
            methods = {m.upper() for m in actions}
        else:
            methods = {
                m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)
            }
        for method in sorted(methods & allowed):
            routes[(p.name, method)] = Route(p.name, method, pattern, view)
    return sorted(routes.values(), key=lambda r: (r.name, r.method))


def test_it_has_a_rule_for_every_route():
    found = {(r.name, r.method) for r in api_routes()}
    missing = sorted(found - set(ROUTES))
    stale = sorted(set(ROUTES) - found)
    assert not missing, f"Routes with no access rule in tests/test_isolation.py: {missing}"
    assert not stale, f"Rules for routes that no longer exist: {stale}"


def test_every_api_view_keeps_the_key_scope_check():
    """A view that replaces the default permissions must keep the key-scope check."""
    from testbed.api.permissions import KeyScopes

    for route in api_routes():
        view = route.view
        if not getattr(view, "authentication_classes", True):
            continue  # no Bearer authentication at all (the token and telemetry endpoints)
        groups = [list(view.permission_classes)]
        for name in dir(view):
            method = getattr(view, name, None)
            if hasattr(method, "mapping"):  # a @action with its own permission_classes
                groups.append(list(method.kwargs.get("permission_classes", [])))
        for group in groups:
            if group:
                assert KeyScopes in group, f"{view.__name__} ({route.name}): {group}"


# --- the world -----------------------------------------------------------------------------------


@pytest.fixture
def world(operator, org, other_org, manager, member):
    outsider_manager = UserFactory(username="globex-manager")
    add_member(other_org, outsider_manager, "manager")
    outsider_member = UserFactory(username="globex-member")
    add_member(other_org, outsider_member, "member")
    etype = EquipmentTypeFactory(code="HC-PSG", max_lead_days=365)
    unit = EquipmentUnitFactory(equipment_type=etype, code="HC-PSG-01")
    pool = make_pool(nodes=1, per_node=8, code="POOL-A", max_lead_days=365)
    start = aware(2027, 3, 2, 10)
    booking = Booking.objects.create(
        organization=org,
        user=member,
        equipment_type=etype,
        start=start,
        end=start + dt.timedelta(hours=1),
        status="confirmed",
        purpose="acme secret purpose",
    )
    Allocation.objects.create(booking=booking, unit=unit, start=booking.start, end=booking.end)
    round_ = ContestedRound.objects.create(
        pool=pool,
        window_start=aware(2027, 4, 5),
        window_end=aware(2027, 4, 12),
        cutoff_at=aware(2027, 4, 1),
    )
    Booking.objects.create(
        organization=org,
        user=member,
        pool=pool,
        quantity=2,
        start=aware(2027, 4, 6, 10),
        end=aware(2027, 4, 6, 12),
        status="pending",
        round=round_,
    )
    grant = QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2027, 1, 1),
        period_end=dt.date(2027, 12, 31),
        limit_hours=100,
    )
    window = MaintenanceWindow.objects.create(
        unit=unit, start=aware(2027, 5, 1, 9), end=aware(2027, 5, 1, 18), reason="점검"
    )
    hook = WebhookEndpoint.objects.create(
        organization=org, url="https://hooks.acme.example/testbed", secret="whsec_" + "A" * 44,
        event_types=["booking.confirmed"], description="acme secret purpose",
    )  # fmt: skip
    hook_delivery = WebhookDelivery.objects.create(
        endpoint=hook, event_id="evt_isolation", event_type="booking.confirmed", body="{}"
    )
    calendar_feed, _raw = calendar_feed_create(actor=member, scope="user", channel="web")
    invitee = UserFactory(username="invitee")
    invitation = Invitation.objects.create(organization=org, user=invitee, invited_by=manager)
    keys = {}
    for scope in KeyScope.values:
        _key, raw = api_key_create(
            actor=manager, organization=org, name=scope, scopes=[scope], channel="api"
        )
        keys[f"key:{scope}"] = raw
    some_key, _raw = api_key_create(
        actor=manager, organization=org, name="revoke me", scopes=["catalog:read"], channel="api"
    )
    _key, keys["outsider_key"] = api_key_create(
        actor=outsider_manager,
        organization=other_org,
        name="globex all",
        scopes=list(KeyScope.values),
        channel="api",
    )
    people = {
        "operator": operator,
        "manager": manager,
        "member": member,
        "outsider_manager": outsider_manager,
        "outsider_member": outsider_member,
    }
    clients = {name: client_for(user) for name, user in people.items()}
    for name, raw in keys.items():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        clients[name] = client
    clients[ANON] = APIClient()
    kwargs = {
        "code": {"center": etype.center.code, "equipment-type": etype.code, "pool": pool.code},
        "pk": {
            "booking": booking.pk,
            "quota-grant": grant.pk,
            "maintenance-window": window.pk,
            "round": round_.pk,
            "invitation": invitation.pk,
            "calendar-feed": calendar_feed.pk,
            "webhook-endpoint": hook.pk,
        },
        "delivery_id": hook_delivery.pk,
        "slug": org.slug,
        "key_id": some_key.pk,
    }
    # What an outsider must never read (the slug they typed may be echoed back in a 404).
    secrets = [org.name, member.email, manager.email, "acme secret purpose"]
    return clients, kwargs, secrets


BASES = ("booking", "quota-grant", "maintenance-window", "round", "invitation")
BASES += ("center", "equipment-type", "pool", "organization")
BASES += ("calendar-feed",)
BASES += ("webhook-endpoint",)


def _path(route: Route, kwargs: dict) -> str:
    path = route.pattern.replace("^", "").replace("/?$", "").replace("$", "")
    base = next(b for b in BASES + (route.name,) if route.name.startswith(b))

    def fill(match: re.Match) -> str:
        value = kwargs[match.group(1)]
        return str(value[base] if isinstance(value, dict) else value)

    return "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", fill, path)


def _call(client: APIClient, method: str, path: str):
    with transaction.atomic():
        response = getattr(client, method.lower())(path, {}, format="json")
        transaction.set_rollback(True)
    return response


def _problem(persona: str, expected: str, status: int, body: str) -> str | None:
    if status >= 500:
        return f"{persona}: {status} server error"
    if expected == ANON and status != 401:
        return f"{persona}: {status}, expected 401"
    if expected == PUBLIC and status in (401, 403):
        return f"{persona}: {status} on a public route"
    if expected == NODE and status not in (401, 403):
        return f"{persona}: {status}, only a node key may use this"
    if expected == OK and status in (401, 403, 404):
        return f"{persona}: {status}, expected access: {body[:200]}"
    if expected == HIDDEN and status != 404:
        return f"{persona}: {status}, expected 404 (A's thing is private): {body[:120]}"
    if expected == FORBIDDEN and status not in (403, 404):
        return f"{persona}: {status}, expected 403: {body[:200]}"
    return None


@pytest.mark.parametrize("route", api_routes(), ids=lambda r: f"{r.method} {r.name}")
def test_the_route_keeps_every_caller_within_their_rights(route, world):
    clients, kwargs, secrets = world
    rule = ROUTES[(route.name, route.method)]
    path = _path(route, kwargs)
    problems = []
    for persona in PERSONAS:
        response = _call(clients[persona], route.method, path)
        status = response.status_code
        expected = rule(persona)
        if persona == ANON and expected not in (PUBLIC, NODE):
            expected = ANON
        body = response.content.decode(errors="replace")
        problem = _problem(persona, expected, status, body)
        if problem:
            problems.append(problem)
        if persona.startswith("outsider") or persona == ANON:
            leaked = [s for s in secrets if s in body]
            if leaked:
                problems.append(f"{persona}: response shows A's {leaked}")
        if status in (401, 403, 404) and not response["Content-Type"].startswith(
            "application/problem+json"
        ):
            problems.append(f"{persona}: {status} is not problem+json")
    assert not problems, f"{route.method} {path}:\n  " + "\n  ".join(problems)
