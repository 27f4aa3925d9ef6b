"""GET /calendar/<token>.ics: the feeds parsed back with icalendar.

Events, times in Asia/Seoul, status mapping, Korean and English titles, location (room or node
names), cancelled bookings as CANCELLED, the tenant boundary of organisation feeds, revoked and
wrong tokens, owners who lost their rights, and a constant number of queries.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.test import Client
from icalendar import Calendar

from booking.models import Membership
from integrations.calendars.models import CalendarFeed
from integrations.calendars.services import (
    calendar_feed_create,
    calendar_feed_delete,
    calendar_feed_regenerate,
    feed_path,
)
from testbed.choices import Channel
from tests.factories import UserFactory, add_member, aware
from tests.integrations.calendars.conftest import NOW, book

pytestmark = pytest.mark.django_db

SEOUL = zoneinfo.ZoneInfo("Asia/Seoul")


def make_feed(user, scope="user", **kwargs) -> tuple[CalendarFeed, str]:
    feed, raw = calendar_feed_create(actor=user, scope=scope, channel=Channel.WEB, **kwargs)
    return feed, feed_path(raw)


def fetch(path: str, **headers):
    return Client().get(path, **headers)


def parse(response) -> Calendar:
    assert response.status_code == 200, response.content[:300]
    return Calendar.from_ical(response.content)


def events(calendar: Calendar) -> dict[str, dict]:
    """UID → the event's properties (decoded)."""
    found = {}
    for event in calendar.walk("VEVENT"):
        found[str(event["UID"])] = {
            "summary": str(event["SUMMARY"]),
            "status": str(event["STATUS"]),
            "start": event.decoded("DTSTART"),
            "end": event.decoded("DTEND"),
            "location": str(event.get("LOCATION", "")),
            "description": str(event.get("DESCRIPTION", "")),
            "url": str(event.get("URL", "")),
            "transp": str(event.get("TRANSP", "")),
        }
    return found


def uid(booking) -> str:
    return f"booking-{booking.pk}@testserver"


# --- the document --------------------------------------------------------------------------------


def test_it_lists_my_bookings_as_events_in_seoul_time(frozen, catalogue, org, member):
    booking = book(
        organization=org,
        user=member,
        resource=catalogue.etype,
        start=aware(2026, 6, 2, 10),
        purpose="수면 연구 파일럿",
        unit=catalogue.unit,
    )
    _feed, path = make_feed(member)

    response = fetch(path)

    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    assert response["Cache-Control"] == "private, max-age=300"
    assert response["ETag"]
    calendar = parse(response)
    assert str(calendar["VERSION"]) == "2.0"
    assert "testbed" in str(calendar["PRODID"])
    assert str(calendar["X-WR-TIMEZONE"]) == "Asia/Seoul"
    assert str(calendar["X-WR-CALNAME"]) == "testbed · 내 예약 (member)"
    assert [str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")] == ["Asia/Seoul"]
    event = events(calendar)[uid(booking)]
    assert event["start"] == booking.start and event["end"] == booking.end
    assert event["start"].tzinfo.key == "Asia/Seoul"
    assert b"DTSTART;TZID=Asia/Seoul:20260602T100000" in response.content
    assert b"DTEND;TZID=Asia/Seoul:20260602T120000" in response.content
    assert event["summary"] == "[확정] 수면다원검사기"
    assert event["status"] == "CONFIRMED"
    assert event["location"] == "광주 헬스케어 실증센터 · 3층 301호 (HC-PSG-01)"
    assert event["url"] == f"http://testserver/bookings/{booking.pk}/"
    assert "기관: 주식회사 에이크미" in event["description"]
    assert "예약한 사람: member" in event["description"]
    assert "사용 목적: 수면 연구 파일럿" in event["description"]
    assert "수량: 1" in event["description"]


def test_the_uid_host_and_links_follow_public_url(frozen, catalogue, org, member, settings):
    settings.TESTBED_PUBLIC_URL = "https://testbed.example.kr"
    booking = book(
        organization=org, user=member, resource=catalogue.etype, start=aware(2026, 6, 2, 10)
    )
    _feed, path = make_feed(member)

    event = events(parse(fetch(path)))[f"booking-{booking.pk}@testbed.example.kr"]

    assert event["url"] == f"https://testbed.example.kr/bookings/{booking.pk}/"


@pytest.mark.parametrize(
    ("status", "expected", "title"),
    [
        ("pending", "TENTATIVE", "배정 중"),
        ("awaiting_approval", "TENTATIVE", "승인 대기"),
        ("confirmed", "CONFIRMED", "확정"),
        ("active", "CONFIRMED", "사용 중"),
        ("completed", "CONFIRMED", "완료"),
        ("cancelled", "CANCELLED", "취소됨"),
        ("rejected", "CANCELLED", "거절됨"),
        ("no_show", "CANCELLED", "미사용"),
    ],
)
def test_it_maps_each_status(frozen, catalogue, org, member, status, expected, title):
    booking = book(
        organization=org,
        user=member,
        resource=catalogue.etype,
        start=aware(2026, 5, 30, 10) if status in ("completed", "no_show") else NOW,
        status=status,
        unit=catalogue.unit,
    )
    _feed, path = make_feed(member)

    event = events(parse(fetch(path)))[uid(booking)]

    assert event["status"] == expected
    assert event["summary"].startswith(f"[{title}] ")
    assert event["transp"] == ("TRANSPARENT" if expected == "CANCELLED" else "OPAQUE")


def test_a_cancelled_booking_stays_a_month_as_cancelled_then_drops_out(
    frozen, catalogue, org, member
):
    booking = book(
        organization=org,
        user=member,
        resource=catalogue.etype,
        start=aware(2026, 7, 1, 10),
        unit=catalogue.unit,
    )
    _feed, path = make_feed(member)
    assert events(parse(fetch(path)))[uid(booking)]["status"] == "CONFIRMED"

    booking.status = "cancelled"
    booking.cancel_reason = "일정 변경"
    booking.save(update_fields=["status", "cancel_reason", "updated_at"])
    event = events(parse(fetch(path)))[uid(booking)]
    assert event["status"] == "CANCELLED"
    assert "취소 사유: 일정 변경" in event["description"]

    frozen.shift(dt.timedelta(days=31))
    assert uid(booking) not in events(parse(fetch(path)))


def test_it_keeps_to_its_window(frozen, catalogue, org, member):
    old = book(
        organization=org, user=member, resource=catalogue.etype, start=NOW - dt.timedelta(days=91)
    )
    recent = book(
        organization=org, user=member, resource=catalogue.etype, start=NOW - dt.timedelta(days=89)
    )
    ahead = book(
        organization=org, user=member, resource=catalogue.etype, start=NOW + dt.timedelta(days=360)
    )
    too_far = book(
        organization=org, user=member, resource=catalogue.etype, start=NOW + dt.timedelta(days=400)
    )
    _feed, path = make_feed(member)

    found = events(parse(fetch(path)))

    assert set(found) == {uid(recent), uid(ahead)}
    assert uid(old) not in found and uid(too_far) not in found


def test_english_titles_by_parameter_or_by_the_feeds_language(frozen, catalogue, org, member):
    booking = book(
        organization=org,
        user=member,
        resource=catalogue.pool,
        start=aware(2026, 6, 3, 9),
        quantity=4,
        status="awaiting_approval",
        devices=list(catalogue.pool.nodes.first().devices.all()[:4]),
    )
    feed, path = make_feed(member)

    english = parse(fetch(path + "?lang=en"))
    event = events(english)[uid(booking)]
    assert event["summary"] == "[Awaiting approval] H100 GPUs ×4"
    assert event["location"] == "National AI Data Centre · h100-n00"
    assert "Booked by: member" in event["description"]
    assert str(english["X-WR-CALNAME"]) == "testbed · My bookings (member)"

    korean = events(parse(fetch(path)))[uid(booking)]
    assert korean["summary"] == "[승인 대기] H100 GPU ×4"

    feed.language = "en"
    feed.save(update_fields=["language"])
    assert events(parse(fetch(path)))[uid(booking)]["summary"].startswith("[Awaiting approval]")
    assert events(parse(fetch(path + "?lang=ko")))[uid(booking)]["summary"].startswith("[승인")


def test_a_bad_language_is_refused_with_the_fix(frozen, member):
    _feed, path = make_feed(member)

    response = fetch(path + "?lang=fr")

    assert response.status_code == 400
    assert b"lang must be ko or en" in response.content


def test_a_pool_booking_names_its_nodes(frozen, catalogue, org, member):
    nodes = list(catalogue.pool.nodes.order_by("hostname"))
    devices = [*nodes[0].devices.all(), *nodes[1].devices.all()]
    booking = book(
        organization=org,
        user=member,
        resource=catalogue.pool,
        start=aware(2026, 6, 3, 9),
        quantity=16,
        devices=devices,
    )
    _feed, path = make_feed(member)

    event = events(parse(fetch(path)))[uid(booking)]

    assert event["location"] == "국가AI데이터센터 · h100-n00, h100-n01"
    assert "노드: h100-n00, h100-n01" in event["description"]
    assert event["summary"] == "[확정] H100 GPU ×16"


def test_the_document_is_the_same_until_something_changes(frozen, catalogue, org, member):
    booking = book(
        organization=org, user=member, resource=catalogue.etype, start=aware(2026, 6, 2, 10)
    )
    _feed, path = make_feed(member)
    first = fetch(path)

    again = fetch(path, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    assert again["ETag"] == first["ETag"]

    frozen.shift(dt.timedelta(minutes=5))
    booking.status = "cancelled"
    booking.save(update_fields=["status", "updated_at"])
    changed = fetch(path, HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200
    assert changed["ETag"] != first["ETag"]


# --- whose bookings ------------------------------------------------------------------------------


def test_an_organisation_feed_lists_its_members_bookings_and_no_other_organisations(
    frozen, catalogue, org, other_org, manager, member, outsider
):
    mine = book(organization=org, user=manager, resource=catalogue.etype, start=NOW)
    colleague = book(
        organization=org,
        user=member,
        resource=catalogue.pool,
        start=NOW,
        purpose="acme 내부 과제",
    )
    theirs = book(
        organization=other_org,
        user=outsider,
        resource=catalogue.etype,
        start=NOW + dt.timedelta(hours=3),
        purpose="globex secret",
    )
    _feed, path = make_feed(member, scope="organization", organization="acme")

    response = fetch(path)
    found = events(parse(response))

    assert set(found) == {uid(mine), uid(colleague)}
    assert uid(theirs) not in found
    assert b"globex" not in response.content.lower()
    assert found[uid(colleague)]["summary"] == "[확정] H100 GPU ×1 · member"


def test_a_personal_feed_lists_only_my_bookings(frozen, catalogue, org, manager, member):
    mine = book(organization=org, user=member, resource=catalogue.etype, start=NOW)
    book(organization=org, user=manager, resource=catalogue.etype, start=NOW)
    _feed, path = make_feed(member)

    assert set(events(parse(fetch(path)))) == {uid(mine)}


def test_a_resource_feed_lists_every_organisations_bookings_of_it(
    frozen, catalogue, org, other_org, operator, member, outsider
):
    acme = book(organization=org, user=member, resource=catalogue.etype, start=NOW)
    globex = book(
        organization=other_org,
        user=outsider,
        resource=catalogue.etype,
        start=NOW + dt.timedelta(hours=3),
    )
    book(organization=org, user=member, resource=catalogue.pool, start=NOW)
    _feed, path = make_feed(operator, scope="resource", resource="HC-PSG")

    calendar = parse(fetch(path))
    found = events(calendar)

    assert set(found) == {uid(acme), uid(globex)}
    assert found[uid(globex)]["summary"] == "[확정] 수면다원검사기 · 글로벡스"
    assert str(calendar["X-WR-CALNAME"]) == "testbed · 수면다원검사기 예약 (운영)"


# --- addresses that stop working -----------------------------------------------------------------


def test_a_regenerated_token_revokes_the_old_address_at_once(frozen, member):
    feed, old_path = make_feed(member)
    assert fetch(old_path).status_code == 200

    _feed, raw = calendar_feed_regenerate(actor=member, feed=feed, channel=Channel.WEB)

    gone = fetch(old_path)
    assert gone.status_code == 404
    assert gone["Content-Type"].startswith("text/plain")
    assert fetch(feed_path(raw)).status_code == 200


def test_wrong_and_deleted_tokens_answer_404_alike(frozen, member):
    feed, path = make_feed(member)
    prefix = feed.token_prefix
    forged = f"/calendar/tbc_{prefix}_{'A' * 43}.ics"
    answers = [fetch(p) for p in (forged, "/calendar/nonsense.ics", "/calendar/tbc__x.ics")]
    calendar_feed_delete(actor=member, feed=feed, channel=Channel.WEB)
    answers.append(fetch(path))

    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert len({a.content for a in answers}) == 1  # nothing tells a wrong secret from no feed


def test_a_deactivated_owner_s_feeds_answer_404(frozen, member):
    _feed, path = make_feed(member, scope="organization", organization="acme")
    _personal, personal_path = make_feed(member)

    member.is_active = False
    member.save(update_fields=["is_active"])

    assert fetch(path).status_code == 404
    assert fetch(personal_path).status_code == 404


def test_leaving_the_organisation_stops_its_feed_and_hides_its_bookings(
    frozen, catalogue, org, other_org, member
):
    add_member(other_org, member)
    acme = book(organization=org, user=member, resource=catalogue.etype, start=NOW)
    globex = book(
        organization=other_org,
        user=member,
        resource=catalogue.etype,
        start=NOW + dt.timedelta(hours=3),
    )
    _org_feed, org_path = make_feed(member, scope="organization", organization="acme")
    _personal, personal_path = make_feed(member)
    assert fetch(org_path).status_code == 200

    Membership.objects.filter(user=member, organization=org).delete()

    assert fetch(org_path).status_code == 404
    assert set(events(parse(fetch(personal_path)))) == {uid(globex)}
    assert uid(acme) not in events(parse(fetch(personal_path)))


def test_an_operator_who_loses_operator_rights_loses_the_resource_feed(frozen, catalogue):
    staff = UserFactory(username="former-operator", is_staff=True)
    _feed, path = make_feed(staff, scope="resource", resource="H100")
    assert fetch(path).status_code == 200

    staff.is_staff = False
    staff.save(update_fields=["is_staff"])

    assert fetch(path).status_code == 404


def test_fetching_records_when_the_address_was_last_used(frozen, member):
    feed, path = make_feed(member)
    assert feed.last_used_at is None

    fetch(path)

    feed.refresh_from_db()
    assert feed.last_used_at == NOW


# --- cost ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["user", "organization", "resource"])
def test_the_query_count_does_not_grow_with_the_bookings(
    frozen, catalogue, org, member, operator, scope, django_assert_num_queries
):
    owner = operator if scope == "resource" else member
    kwargs = {"organization": "acme"} if scope == "organization" else {}
    if scope == "resource":
        kwargs = {"resource": "H100"}
    _feed, path = make_feed(owner, scope=scope, **kwargs)
    devices = list(catalogue.pool.nodes.first().devices.all())
    # feed + (membership, organisation feeds) + bookings + allocations + last-used UPDATE
    expected = 5 if scope == "organization" else 4

    book(organization=org, user=member, resource=catalogue.pool, start=NOW, devices=devices[:1])
    with django_assert_num_queries(expected):
        assert len(events(parse(fetch(path)))) == 1

    for day in range(1, 31):
        book(
            organization=org,
            user=member,
            resource=catalogue.pool,
            start=NOW + dt.timedelta(days=day),
            quantity=8,
            devices=devices,
        )
    with django_assert_num_queries(expected):
        assert len(events(parse(fetch(path)))) == 31
