"""/calendars/: a person's calendar subscriptions in the portal, and the links that lead there.

Personas (tests/conftest.py): manager and member of acme, outsider (manager of globex), operator.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from integrations.calendars.models import CalendarFeed
from integrations.calendars.services import calendar_feed_create, feed_path
from testbed.choices import Channel

pytestmark = pytest.mark.django_db

PAGE = "/calendars/"
ADDRESS = re.compile(r'value="(http://testserver/calendar/tbc_[^"]+\.ics)"')


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def shown_address(response) -> str:
    match = ADDRESS.search(response.content.decode())
    assert match, response.content.decode()[:500]
    return match.group(1).removeprefix("http://testserver")


def test_it_needs_a_sign_in():
    response = Client().get(PAGE)

    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_making_a_personal_feed_shows_its_address_once(member):
    client = signed_in(member)

    made = client.post("/calendars/new/", {"scope": "user", "language": "ko"})

    # Post/redirect/get: a reload of the page shown next never makes a second feed.
    assert made.status_code == 302 and made["Location"] == PAGE
    assert "tbc_" not in made.content.decode()
    shown = client.get(PAGE)
    assert shown.status_code == 200
    assert "no-store" in shown["Cache-Control"]
    path = shown_address(shown)
    assert 'href="webcal://testserver/calendar/tbc_' in shown.content.decode()
    assert Client().get(path).status_code == 200
    page = client.get(PAGE).content.decode()
    assert "testbed · 내 예약 (member)" in page
    assert path.removeprefix("/calendar/").removesuffix(".ics") not in page  # never shown again
    feed = CalendarFeed.objects.get(owner=member)
    assert f"tbc_{feed.token_prefix}_…" in page


def test_english_pages_make_english_feeds(member):
    client = signed_in(member)
    client.cookies["django_language"] = "en"

    made = client.post("/calendars/new/", {"scope": "user"}, follow=True)

    assert made.redirect_chain == [(PAGE, 302)]
    assert "This address is shown only now." in made.content.decode()
    assert CalendarFeed.objects.get(owner=member).language == "en"


def test_regenerate_shows_a_new_address_and_the_old_stops(member):
    feed, raw = calendar_feed_create(actor=member, scope="user", channel=Channel.WEB)
    client = signed_in(member)

    again = client.post(f"/calendars/{feed.pk}/regenerate/", follow=True)

    # The browser leaves /calendars/<id>/regenerate/: a reload regenerates nothing.
    assert again.redirect_chain == [(PAGE, 302)]
    assert "no-store" in again["Cache-Control"]
    assert "예전 주소는 이미 막혔습니다" in again.content.decode()
    assert Client().get(feed_path(raw)).status_code == 404
    assert Client().get(shown_address(again)).status_code == 200
    assert "예전 주소는 이미 막혔습니다" not in client.get(PAGE).content.decode()  # shown once


def test_delete_stops_the_address(member):
    feed, raw = calendar_feed_create(actor=member, scope="user", channel=Channel.WEB)

    response = signed_in(member).post(f"/calendars/{feed.pk}/delete/", follow=True)

    assert response.status_code == 200
    assert "구독 주소를 삭제했습니다" in response.content.decode()
    assert not CalendarFeed.objects.filter(pk=feed.pk).exists()
    assert Client().get(feed_path(raw)).status_code == 404


def test_nobody_else_regenerates_or_deletes_my_feed(member, manager, operator):
    feed, raw = calendar_feed_create(actor=member, scope="user", channel=Channel.WEB)

    for person in (manager, operator):
        client = signed_in(person)
        assert client.post(f"/calendars/{feed.pk}/regenerate/").status_code == 404
        assert client.post(f"/calendars/{feed.pk}/delete/").status_code == 404

    assert Client().get(feed_path(raw)).status_code == 200


def test_a_member_follows_their_organisation_and_is_told_about_a_duplicate(member, other_org):
    client = signed_in(member)
    page = client.get(PAGE + "?org=acme").content.decode()
    assert '<option value="acme" selected>' in page
    assert 'value="globex"' not in page

    assert (
        client.post(
            "/calendars/new/", {"scope": "organization", "organization": "acme"}
        ).status_code
        == 302
    )
    again = client.post("/calendars/new/", {"scope": "organization", "organization": "acme"})
    assert again.status_code == 409
    assert "이미 같은 캘린더 구독 주소가 있습니다" in again.content.decode()

    other = client.post("/calendars/new/", {"scope": "organization", "organization": "globex"})
    assert other.status_code == 404
    assert CalendarFeed.objects.filter(owner=member).count() == 1


def test_only_operators_see_and_use_the_resource_form(member, operator, catalogue):
    assert 'id="resource"' not in signed_in(member).get(PAGE).content.decode()
    refused = signed_in(member).post("/calendars/new/", {"scope": "resource", "resource": "H100"})
    assert refused.status_code == 403

    client = signed_in(operator)
    page = client.get(PAGE + "?resource=H100").content.decode()
    assert 'id="resource-code" name="resource" value="H100"' in page
    assert (
        client.post("/calendars/new/", {"scope": "resource", "resource": "H100"}).status_code == 302
    )
    unknown = client.post("/calendars/new/", {"scope": "resource", "resource": "NOPE"})
    assert unknown.status_code == 400
    assert "그런 장비 또는 풀 코드가 없습니다" in unknown.content.decode()


def test_the_pages_link_to_the_subscriptions(member, operator, catalogue):
    bookings = signed_in(member).get("/bookings/").content.decode()
    assert 'href="/calendars/#personal"' in bookings
    organization = signed_in(member).get("/organization/").content.decode()
    assert 'href="/calendars/?org=acme#organization"' in organization
    resource_for_member = signed_in(member).get("/resources/H100/").content.decode()
    assert "/calendars/?resource=" not in resource_for_member
    resource_for_operator = signed_in(operator).get("/resources/H100/").content.decode()
    assert 'href="/calendars/?resource=H100#resource"' in resource_for_operator


def test_a_stopped_feed_says_so(member, org):
    calendar_feed_create(
        actor=member, scope="organization", organization="acme", channel=Channel.WEB
    )
    org.memberships.filter(user=member).delete()

    page = signed_in(member).get(PAGE).content.decode()

    assert "멈춤: 이 범위를 볼 권한이 없어졌습니다" in page
