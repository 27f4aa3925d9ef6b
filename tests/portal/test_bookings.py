"""The booking pages: /book/, /bookings/, /bookings/<id>/ (Django test client).

Persona fixtures (tests/conftest.py): member and manager of acme, outsider (manager of globex),
operator. Decisions are taken by calling the allocation service, as the worker would.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.test import Client

from booking.models import Booking, DiscountRule, QuotaGrant
from booking.services.allocation import booking_allocate
from booking.services.bookings import booking_cancel
from booking.services.requests import booking_check, booking_request
from testbed.errors import ServiceError
from testbed.models import AuditEntry
from tests.factories import OrganizationFactory, add_member, aware, make_pool

pytestmark = pytest.mark.django_db

NOW = aware(2026, 12, 1, 9, 0)  # a Tuesday; the pool books up to 90 days ahead
TUE_10 = aware(2026, 12, 8, 10, 0)
TUE_18 = aware(2026, 12, 8, 18, 0)


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    """Nothing decides in these tests until they call booking_allocate: do not wait for it."""
    monkeypatch.setattr("portal.views.bookings.DECISION_WAIT_SECONDS", 0.0)


@pytest.fixture
def pool(db):
    return make_pool(code="H100-T", nodes=2, per_node=4, hourly_rate=10000)


def browser(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def book_data(pool, **overrides) -> dict:
    return {
        "resource": pool.code,
        "start": "2026-12-08T10:00",
        "end": "2026-12-08T18:00",
        "quantity": "2",
        "purpose": "모델 학습",
        **overrides,
    }


def make_booking(pool, org, user, *, quantity=2, start=TUE_10, end=TUE_18) -> Booking:
    return booking_request(
        actor=user,
        organization=org,
        resource_code=pool.code,
        quantity=quantity,
        start=start,
        end=end,
        channel="web",
    )


# --- the service's pure check step ---------------------------------------------------------------


def test_booking_check_refuses_as_booking_request_does_and_writes_nothing(pool, org, member):
    kwargs = dict(actor=member, organization=org, resource_code=pool.code, quantity=2)
    with pytest.raises(ServiceError) as refused:
        booking_check(**kwargs, start=TUE_10 + dt.timedelta(minutes=30), end=TUE_18)
    assert (refused.value.code, refused.value.field) == ("not_aligned", "start")
    with pytest.raises(ServiceError) as same:
        booking_request(**kwargs, start=TUE_10 + dt.timedelta(minutes=30), end=TUE_18)
    assert (same.value.code, same.value.message) == (refused.value.code, refused.value.message)
    booking_check(**kwargs, start=TUE_10, end=TUE_18)  # passes
    assert Booking.objects.count() == 0
    assert AuditEntry.objects.count() == 0


def test_booking_check_hides_another_organisation(pool, other_org, member):
    with pytest.raises(ServiceError) as refused:
        booking_check(
            actor=member,
            organization=other_org,
            resource_code=pool.code,
            quantity=1,
            start=TUE_10,
            end=TUE_18,
        )
    assert refused.value.status == 404


# --- /book/ --------------------------------------------------------------------------------------


def test_it_sends_anonymous_people_to_sign_in(pool):
    response = browser(None).get(f"/book/?resource={pool.code}")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_it_prefills_the_form_from_the_address_with_price_and_quota(pool, org, member):
    DiscountRule.objects.create(name="광주 기업", region="gwangju", percent=50, active=True)
    QuotaGrant.objects.create(
        organization=org,
        scope=pool.code,
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=Decimal(100),
    )
    response = browser(member).get(
        "/book/",
        {
            "resource": pool.code,
            "start": "2026-12-08T10:00:00+09:00",
            "end": "2026-12-08T09:00:00Z",  # 18:00 in Seoul
            "quantity": "2",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'value="2026-12-08T10:00"' in html
    assert 'value="2026-12-08T18:00"' in html
    # 10,000 won × 2 devices × 8 hours, half off for a Gwangju company
    assert "80,000원" in html
    assert "50% 할인 적용" in html
    assert "16.00 장치·시간" in html
    assert "남는 시간 84.0000시간" in html


def test_it_checks_as_you_type_naming_the_field_and_writing_nothing(pool, member):
    response = browser(member).post(
        "/book/?check=1",
        book_data(pool, start="2026-12-08T10:30"),
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="err-start" class="field-error" hx-swap-oob="true"' in html
    assert "must start and end on boundaries every 1 hour" in html.split('id="err-start"')[1]
    assert Booking.objects.count() == 0


def test_the_check_leaves_fields_not_yet_typed_alone(pool, member):
    response = browser(member).post(
        "/book/?check=1", {"resource": pool.code, "quantity": "1"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert 'role="alert"' not in html


def test_it_refuses_bad_input_with_the_field_named_and_changes_nothing(pool, member):
    client = browser(member)
    for data, field in [
        (book_data(pool, quantity="0"), "quantity"),
        (book_data(pool, quantity="9"), "quantity"),  # more than a node shape allows
        (book_data(pool, end="2026-12-08T09:00"), "end"),
        (book_data(pool, start="yesterday"), "start"),
        (book_data(pool, resource="NOPE"), "resource"),
        (book_data(pool, start="2026-11-30T10:00", end="2026-11-30T12:00"), "start"),
    ]:
        response = client.post("/book/", data)
        assert response.status_code == 400, data
        html = response.content.decode()
        error = html.split(f'id="err-{field}"')[1].split("</div>")[0]
        assert 'role="alert"' in error, (field, data)
        assert f'aria-describedby="err-{field}' in html
    assert Booking.objects.count() == 0
    assert AuditEntry.objects.count() == 0


def test_it_books_on_the_web_channel_and_shows_the_decision(pool, org, member):
    client = browser(member)
    response = client.post("/book/", book_data(pool))
    booking = Booking.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/bookings/{booking.pk}/"
    assert (booking.organization, booking.user, booking.quantity) == (org, member, 2)
    assert (booking.start, booking.end, booking.channel) == (TUE_10, TUE_18, "web")
    assert AuditEntry.objects.get(action="booking.request").channel == "web"

    page = client.get(f"/bookings/{booking.pk}/").content.decode()
    assert "배정 중" in page and 'hx-trigger="every 2s"' in page

    booking_allocate(booking_id=booking.pk)
    page = client.get(f"/bookings/{booking.pk}/").content.decode()
    assert "확정" in page and "every 2s" not in page
    assert "2026년 12월 8일 (화) 10:00 – 18:00" in page
    assert page.count("h100-t-n0") == 2  # two devices on one node
    assert "80,000원" in page  # 10,000 × 2 × 8 h, half off (a Gwangju company, seeded rule)


def test_an_htmx_submit_is_redirected_by_header(pool, member):
    response = browser(member).post("/book/", book_data(pool), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/bookings/{Booking.objects.get().pk}/"


def test_an_htmx_submit_with_bad_input_answers_the_form_with_errors(pool, member):
    response = browser(member).post("/book/", book_data(pool, quantity="0"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200  # htmx swaps 2xx only
    html = response.content.decode()
    assert html.startswith('<form id="book-form"')
    assert 'role="alert"' in html.split('id="err-quantity"')[1].split("</div>")[0]
    assert Booking.objects.count() == 0


def test_a_member_of_several_organisations_picks_one(pool, org, member):
    second = OrganizationFactory(slug="second", name="두번째 회사")
    add_member(second, member)
    client = browser(member)
    form = client.get("/book/").content.decode()
    assert '<select id="id_organization" name="organization"' in form
    response = client.post("/book/", book_data(pool))
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode().split('id="err-organization"')[1][:300]
    assert Booking.objects.count() == 0
    response = client.post("/book/", book_data(pool, organization="second"))
    assert response.status_code == 302
    assert Booking.objects.get().organization == second


def test_one_organisation_is_implied(pool, org, member):
    form = browser(member).get("/book/").content.decode()
    assert 'name="organization"' not in form
    assert org.name in form


def test_an_outsider_cannot_book_for_another_organisation(pool, org, outsider):
    response = browser(outsider).post("/book/", book_data(pool, organization=org.slug))
    assert response.status_code == 400
    assert "globex" not in response.content.decode().split('id="err-organization"')[1][:10]
    assert Booking.objects.count() == 0


def test_a_refusal_shows_alternatives_and_one_click_books_one(pool, org, member, manager):
    full = make_pool(code="SMALL", nodes=1, per_node=2)
    first = make_booking(full, org, manager)
    booking_allocate(booking_id=first.pk)
    client = browser(member)
    client.post("/book/", book_data(full))
    refused = Booking.objects.get(user=member)
    booking_allocate(booking_id=refused.pk)
    refused.refresh_from_db()
    assert refused.status == "rejected" and refused.alternatives
    page = client.get(f"/bookings/{refused.pk}/").content.decode()
    assert "거절 사유" in page and refused.rejection_detail[:30] in page
    assert page.count("이 시간으로 예약</button>") == len(refused.alternatives)

    alternative = refused.alternatives[0]
    response = client.post(
        "/book/",
        {
            "organization": org.slug,
            "resource": full.code,
            "start": alternative["start"],
            "end": alternative["end"],
            "quantity": "2",
        },
    )
    assert response.status_code == 302
    rebooked = Booking.objects.filter(user=member).exclude(pk=refused.pk).get()
    assert rebooked.start == dt.datetime.fromisoformat(alternative["start"])
    assert booking_allocate(booking_id=rebooked.pk) == "confirmed"


# --- /bookings/<id>/ -----------------------------------------------------------------------------


def test_another_organisations_booking_is_not_found(pool, org, member, outsider):
    booking = make_booking(pool, org, member)
    client = browser(outsider)
    assert client.get(f"/bookings/{booking.pk}/").status_code == 404
    assert client.get(f"/bookings/{booking.pk}/status/").status_code == 404
    response = client.post(f"/bookings/{booking.pk}/", {"action": "cancel", "reason": "남의 예약"})
    assert response.status_code == 404
    booking.refresh_from_db()
    assert booking.status == "pending"


def test_cancel_needs_a_reason_and_changes_nothing_without_one(pool, org, member):
    booking = make_booking(pool, org, member)
    booking_allocate(booking_id=booking.pk)
    client = browser(member)
    response = client.post(f"/bookings/{booking.pk}/", {"action": "cancel", "reason": " "})
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode().split('id="err-reason"')[1][:200]
    booking.refresh_from_db()
    assert booking.status == "confirmed"

    response = client.post(f"/bookings/{booking.pk}/", {"action": "cancel", "reason": "일정 변경"})
    assert response.status_code == 302
    booking.refresh_from_db()
    assert (booking.status, booking.cancel_reason) == ("cancelled", "일정 변경")
    entry = AuditEntry.objects.get(action="booking.cancel")
    assert (entry.channel, entry.actor) == ("web", member)
    page = client.get(f"/bookings/{booking.pk}/").content.decode()
    assert "예약을 취소했습니다." in page and "일정 변경" in page


def test_a_member_may_not_cancel_a_colleagues_booking(pool, org, member, manager):
    booking = make_booking(pool, org, manager)
    client = browser(member)
    page = client.get(f"/bookings/{booking.pk}/").content.decode()
    assert 'value="cancel"' not in page
    response = client.post(f"/bookings/{booking.pk}/", {"action": "cancel", "reason": "왜"})
    assert response.status_code == 403
    booking.refresh_from_db()
    assert booking.status == "pending"
    # The manager may: the access module says so.
    assert 'value="cancel"' in browser(manager).get(f"/bookings/{booking.pk}/").content.decode()


def test_check_in_and_out_of_equipment(org, member):
    from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory

    kind = EquipmentTypeFactory(code="EQ-WEB")
    EquipmentUnitFactory(equipment_type=kind, code="EQ-WEB-1")
    booking = booking_request(
        actor=member,
        organization=org,
        resource_code=kind.code,
        quantity=1,
        start=aware(2026, 12, 1, 10, 0),
        end=aware(2026, 12, 1, 12, 0),
    )
    booking_allocate(booking_id=booking.pk)
    client = browser(member)
    assert 'value="check_in"' not in client.get(f"/bookings/{booking.pk}/").content.decode()
    with time_machine.travel(aware(2026, 12, 1, 9, 45), tick=False):
        page = client.get(f"/bookings/{booking.pk}/").content.decode()
        assert 'value="check_in"' in page and "EQ-WEB-1" in page
        assert client.post(f"/bookings/{booking.pk}/", {"action": "check_in"}).status_code == 302
    booking.refresh_from_db()
    assert booking.status == "active"
    with time_machine.travel(aware(2026, 12, 1, 11, 0), tick=False):
        assert client.post(f"/bookings/{booking.pk}/", {"action": "check_out"}).status_code == 302
    booking.refresh_from_db()
    assert booking.status == "completed"
    history = client.get(f"/bookings/{booking.pk}/").content.decode()
    assert "체크인" in history and "체크아웃" in history and "사용 중 → 완료" in history


def test_a_refused_action_says_why_and_changes_nothing(pool, org, member):
    booking = make_booking(pool, org, member)
    response = browser(member).post(f"/bookings/{booking.pk}/", {"action": "check_out"})
    assert response.status_code == 409
    assert 'id="err-action"' in response.content.decode()
    booking.refresh_from_db()
    assert booking.status == "pending"


def test_the_status_fragment_polls_until_decided(pool, org, member):
    booking = make_booking(pool, org, member)
    client = browser(member)
    fragment = client.get(f"/bookings/{booking.pk}/status/", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and 'hx-trigger="every 2s"' in fragment.content.decode()
    booking_allocate(booking_id=booking.pk)
    decided = client.get(f"/bookings/{booking.pk}/status/", HTTP_HX_REQUEST="true")
    assert decided["HX-Refresh"] == "true"


def test_the_booking_page_is_a_handful_of_queries(pool, org, member, django_assert_max_num_queries):
    booking = make_booking(pool, org, member, quantity=8, end=aware(2026, 12, 8, 12, 0))
    booking_allocate(booking_id=booking.pk)
    client = browser(member)
    client.get(f"/bookings/{booking.pk}/")  # warm the session
    with django_assert_max_num_queries(12):
        assert client.get(f"/bookings/{booking.pk}/").status_code == 200


# --- /bookings/ ----------------------------------------------------------------------------------


def test_a_member_sees_their_own_bookings_and_a_manager_the_organisations(
    pool, org, member, manager, outsider, other_org
):
    mine = make_booking(pool, org, member)
    colleague = make_booking(
        pool, org, manager, start=aware(2026, 12, 9, 10, 0), end=aware(2026, 12, 9, 12, 0)
    )
    stranger = make_booking(pool, other_org, outsider)
    page = browser(member).get("/bookings/").content.decode()
    assert f"/bookings/{mine.pk}/" in page
    assert f"/bookings/{colleague.pk}/" not in page
    assert f"/bookings/{stranger.pk}/" not in page
    assert 'name="scope"' not in page

    page = browser(manager).get("/bookings/").content.decode()
    assert f"/bookings/{mine.pk}/" in page and f"/bookings/{colleague.pk}/" in page
    assert f"/bookings/{stranger.pk}/" not in page
    mine_only = browser(manager).get("/bookings/?scope=mine").content.decode()
    assert f"/bookings/{mine.pk}/" not in mine_only and f"/bookings/{colleague.pk}/" in mine_only


def test_the_list_filters_by_status_resource_and_dates(pool, org, member):
    other_pool = make_pool(code="A100-T", nodes=1, per_node=8)
    early = make_booking(pool, org, member)
    late = make_booking(
        pool, org, member, start=aware(2026, 12, 15, 10, 0), end=aware(2026, 12, 15, 12, 0)
    )
    elsewhere = make_booking(other_pool, org, member)
    booking_allocate(booking_id=early.pk)  # decides the three in one batch
    booking_cancel(actor=member, booking=late, reason="일정 변경", channel="web")
    client = browser(member)

    def shown(query: str) -> set[int]:
        page = client.get(f"/bookings/?{query}").content.decode()
        return {b.pk for b in (early, late, elsewhere) if f"/bookings/{b.pk}/" in page}

    assert shown("") == {early.pk, late.pk, elsewhere.pk}
    assert shown("status=cancelled") == {late.pk}
    assert shown("resource=A100-T") == {elsewhere.pk}
    assert shown("date_from=2026-12-10") == {late.pk}
    assert shown("date_to=2026-12-08") == {early.pk, elsewhere.pk}
    page = client.get("/bookings/?date_from=2026-12-10&date_to=2026-12-01")
    assert 'role="alert"' in page.content.decode().split('id="err-date_to"')[1][:200]
    page = client.get("/bookings/?status=cancelled").content.decode()
    assert "/api/v1/bookings?status=cancelled&amp;format=csv" in page


def test_the_list_is_a_handful_of_queries_and_paginated(
    pool, org, member, django_assert_max_num_queries
):
    for day in range(30):
        make_booking(
            pool,
            org,
            member,
            quantity=1,
            start=aware(2026, 12, 2, 0, 0) + dt.timedelta(hours=day),
            end=aware(2026, 12, 2, 1, 0) + dt.timedelta(hours=day),
        )
    client = browser(member)
    client.get("/bookings/")
    with django_assert_max_num_queries(10):
        page = client.get("/bookings/").content.decode()
    assert page.count('<th scope="row">') == 25
    assert "1 / 2쪽" in page
    second = client.get("/bookings/?page=2").content.decode()
    assert second.count('<th scope="row">') == 5


def test_the_download_links_are_the_apis_files_with_the_session(pool, org, member):
    make_booking(pool, org, member)
    client = browser(member)
    csv = client.get("/api/v1/bookings?format=csv")
    assert csv.status_code == 200
    assert csv.content.startswith("\ufeff".encode())
    assert b"H100-T" in csv.content
    xlsx = client.get("/api/v1/bookings?format=xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"


def test_the_pages_speak_english_when_asked(pool, org, member):
    booking = make_booking(pool, org, member)
    client = browser(member)
    client.cookies["django_language"] = "en"
    form = client.get(
        f"/book/?resource={pool.code}&start=2026-12-08T10:00&end=2026-12-08T18:00&quantity=2"
    ).content.decode()
    assert "Estimated price and quota" in form and "₩80,000" in form
    page = client.get(f"/bookings/{booking.pk}/").content.decode()
    assert "Pending" in page and "Tue 8 Dec 2026 10:00 – 18:00" in page
    assert "1 booking" in client.get("/bookings/").content.decode()
