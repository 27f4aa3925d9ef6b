"""/api/v1/calendar-feeds: list, create, regenerate, change language, delete — people only.

Personas (tests/conftest.py): manager and member of acme, outsider (manager of globex), operator.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.test import Client

from booking.services.api_keys import api_key_create
from integrations.calendars.models import CalendarFeed
from testbed.models import AuditEntry
from tests.factories import UserFactory, add_member

pytestmark = pytest.mark.django_db

URL = "/api/v1/calendar-feeds"


def create(client, **body):
    return client.post(URL, body, format="json")


def feed_of(response) -> str:
    """The path of the secret address an answer showed."""
    return urlsplit(response.json()["url"]).path


def test_it_makes_a_personal_feed_and_shows_its_address_once(api, member):
    client = api(member)

    response = create(client, scope="user")

    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Cache-Control"].startswith("no-store")
    assert body["scope"] == "user" and body["organization"] is None and body["resource"] is None
    assert body["language"] == "ko"
    assert body["live"] is True
    assert body["url"].startswith("http://testserver/calendar/tbc_")
    assert body["url"].endswith(".ics")
    assert body["webcal_url"] == "webcal://" + body["url"].removeprefix("http://")
    assert Client().get(feed_of(response)).status_code == 200
    feed = CalendarFeed.objects.get(pk=body["id"])
    secret = feed_of(response).removeprefix("/calendar/").removesuffix(".ics")
    assert secret not in feed.token_hash and feed.token_prefix in secret
    listed = client.get(URL).json()["results"]
    assert [f["id"] for f in listed] == [body["id"]]
    assert "url" not in listed[0] and secret not in str(listed)
    assert listed[0]["address_hint"].endswith(f"/calendar/tbc_{feed.token_prefix}_….ics")
    assert AuditEntry.objects.filter(action="calendar_feed.create", object_id=str(feed.pk)).exists()


def test_the_language_defaults_to_the_requests_and_can_be_changed(api, member):
    client = api(member)

    response = client.post(URL, {"scope": "user"}, format="json", HTTP_ACCEPT_LANGUAGE="en")
    assert response.json()["language"] == "en"
    assert response.json()["name"] == "testbed · My bookings (member)"

    changed = client.patch(f"{URL}/{response.json()['id']}", {"language": "ko"}, format="json")
    assert changed.status_code == 200
    assert changed.json()["language"] == "ko"
    bad = client.patch(f"{URL}/{response.json()['id']}", {"language": "fr"}, format="json")
    assert bad.status_code == 400
    assert "language" in bad.json()["errors"]


def test_a_member_follows_their_organisation_but_not_another(api, member):
    client = api(member)

    mine = create(client, scope="organization", organization="acme")
    other = create(client, scope="organization", organization="globex")

    assert mine.status_code == 201 and mine.json()["organization"] == "acme"
    assert other.status_code == 404
    assert other["Content-Type"].startswith("application/problem+json")


def test_only_operators_follow_a_resource(api, member, operator, catalogue):
    refused = create(api(member), scope="resource", resource="HC-PSG")
    assert refused.status_code == 403
    assert "scope" in refused.json()["errors"]

    made = create(api(operator), scope="resource", resource="H100")
    assert made.status_code == 201
    assert made.json()["resource"] == "H100" and made.json()["resource_kind"] == "pool"

    unknown = create(api(operator), scope="resource", resource="NOPE")
    assert unknown.status_code == 400 and "resource" in unknown.json()["errors"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "team"}, "scope"),
        ({"scope": "organization"}, "organization"),
        ({"scope": "user", "organization": "acme"}, "organization"),
        ({"scope": "organization", "organization": "acme", "resource": "X"}, "resource"),
        ({"scope": "resource"}, "resource"),
        ({"scope": "user", "language": "fr"}, "language"),
    ],
)
def test_bad_input_is_refused_naming_the_field(api, operator, org, body, field):
    response = create(api(operator), **body)

    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert field in response.json()["errors"], response.json()


def test_a_second_feed_of_the_same_thing_is_a_conflict(api, member):
    client = api(member)
    assert create(client, scope="user").status_code == 201

    again = create(client, scope="user")

    assert again.status_code == 409
    assert "regenerate" in again.json()["detail"]
    assert CalendarFeed.objects.filter(owner=member).count() == 1


def test_regenerate_gives_a_new_address_and_revokes_the_old(api, member):
    client = api(member)
    made = create(client, scope="user")
    old = feed_of(made)

    again = client.post(f"{URL}/{made.json()['id']}/regenerate")

    assert again.status_code == 200
    assert again["Cache-Control"].startswith("no-store")
    assert feed_of(again) != old
    assert Client().get(old).status_code == 404
    assert Client().get(feed_of(again)).status_code == 200
    assert AuditEntry.objects.filter(action="calendar_feed.regenerate").count() == 1


def test_delete_stops_the_address(api, member):
    client = api(member)
    made = create(client, scope="user")

    gone = client.delete(f"{URL}/{made.json()['id']}")

    assert gone.status_code == 204
    assert Client().get(feed_of(made)).status_code == 404
    assert client.get(URL).json()["count"] == 0


def test_nobody_else_reaches_my_feed(api, member, manager, operator, outsider):
    made = create(api(member), scope="user")
    feed_id = made.json()["id"]

    for person in (manager, operator, outsider):
        client = api(person)
        assert client.get(f"{URL}/{feed_id}").status_code == 404
        assert client.post(f"{URL}/{feed_id}/regenerate").status_code == 404
        assert client.delete(f"{URL}/{feed_id}").status_code == 404
        assert client.get(URL).json()["count"] == 0
    assert Client().get(feed_of(made)).status_code == 200


def test_api_keys_cannot_make_feeds(api, manager, org):
    _key, raw = api_key_create(
        actor=manager,
        organization=org,
        name="all",
        scopes=["catalog:read", "bookings:read", "bookings:write", "usage:read"],
        channel="api",
    )
    client = api(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    response = create(client, scope="organization", organization="acme")

    assert response.status_code == 403
    assert "calendar feeds" in response.json()["detail"]
    assert client.get(URL).status_code == 403


def test_the_list_says_when_a_feed_has_stopped(api, member, org):
    client = api(member)
    create(client, scope="organization", organization="acme")
    other = UserFactory(username="other-manager")
    add_member(org, other, "manager")

    org.memberships.filter(user=member).delete()

    [feed] = client.get(URL).json()["results"]
    assert feed["live"] is False


def test_a_patch_is_partial_and_refuses_the_scope_naming_it(api, member):
    client = api(member)
    made = create(client, scope="user", language="en").json()

    scope = client.patch(f"{URL}/{made['id']}", {"scope": "organization"}, format="json")
    empty = client.patch(f"{URL}/{made['id']}", {}, format="json")

    assert scope.status_code == 400, scope.content
    assert list(scope.json()["errors"]) == ["scope"] and "new feed" in scope.json()["detail"]
    assert empty.status_code == 200 and empty.json()["language"] == "en"
    assert CalendarFeed.objects.get().scope == "user"
