"""Booking in a real browser against the live server, decided by a real Celery worker.

A new member books 2 GPUs of an H100 pool for next Tuesday 10:00–18:00 and sees it confirmed;
a conflicting request shows alternatives and one click books one; a member of another company
gets 404 on the first company's booking page; bad input is refused with the field named and
nothing changes. Every page passes axe-core in Korean at desktop and phone widths.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from booking.models import Booking
from booking.services.requests import booking_request
from tests.e2e.conftest import DESKTOP, PHONE, assert_accessible, sign_in
from tests.factories import OrganizationFactory, UserFactory, add_member, make_pool

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.browser,
    pytest.mark.redis,
    pytest.mark.postgres,
]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def next_tuesday(hour: int) -> dt.datetime:
    """Next week's Tuesday (at least a day ahead), facility time."""
    today = timezone.localdate()
    days = (1 - today.weekday()) % 7 or 7
    day = today + dt.timedelta(days=days)
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour)))


def local_input(moment: dt.datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


def screenshot(page, name: str) -> None:
    if os.environ.get("TESTBED_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def wait_for_status(booking: Booking, status: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        booking.refresh_from_db()
        if booking.status == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"booking #{booking.pk} stayed {booking.status}, expected {status}")


@pytest.fixture
def company(transactional_db):
    org = OrganizationFactory(slug="hanbit-ai", name="주식회사 한빛AI")
    member = UserFactory(username="newbie")
    add_member(org, member)
    return org, member


@pytest.fixture
def h100(transactional_db):
    return make_pool(
        code="H100-E2E",
        name="H100 GPU 풀",
        name_en="H100 GPU pool",
        nodes=2,
        per_node=8,
        hourly_rate=2500,
    )


def test_a_new_member_books_two_gpus_for_next_tuesday_and_sees_it_confirmed(
    new_page, company, h100, celery_worker
):
    org, member = company
    page = new_page(viewport=DESKTOP)
    sign_in(page, member.username)
    page.goto("/")
    assert h100.code in page.content() or h100.name in page.content()

    start, end = next_tuesday(10), next_tuesday(18)
    page.goto(f"/book/?resource={h100.code}")
    assert page.locator("#id_resource").input_value() == h100.code
    page.fill("#id_start", local_input(start))
    page.fill("#id_end", local_input(end))
    page.fill("#id_quantity", "2")
    page.fill("#id_purpose", "비전 모델 미세조정")
    # Checked as typed: the price (2,500 × 2 × 8 h, half off for a Gwangju company) and quota.
    expect(page.locator("#book-estimate")).to_contain_text("20,000원")
    expect(page.locator("#book-estimate")).to_contain_text("예약 규칙을 충족합니다")
    assert_accessible(page, context="book (ko, desktop)")
    screenshot(page, "book-ko-desktop")

    with page.expect_navigation(url=re.compile(r"/bookings/\d+/$")):
        page.get_by_role("button", name="예약 요청").click()
    expect(page.locator("#booking-status .badge")).to_have_text("확정", timeout=20_000)
    booking = Booking.objects.get(organization=org)
    assert (booking.quantity, booking.start, booking.end) == (2, start, end)
    assert (booking.status, booking.channel) == ("confirmed", "web")
    expect(page.locator("main")).to_contain_text(
        f"{start.year}년 {start.month}월 {start.day}일 (화) 10:00 – 18:00"
    )
    assert_accessible(page, context="booking (ko, desktop)")
    screenshot(page, "booking-ko-desktop")

    page.goto("/bookings/")
    expect(page.locator("table.bookings")).to_contain_text("확정")
    expect(page.locator("table.bookings")).to_contain_text("20,000원")
    assert_accessible(page, context="bookings (ko, desktop)")
    screenshot(page, "bookings-ko-desktop")

    phone = new_page(viewport=PHONE)
    sign_in(phone, member.username)
    for path, name in [
        (
            f"/book/?resource={h100.code}&start={local_input(start)}&end={local_input(end)}&quantity=2",
            "book",
        ),
        (f"/bookings/{booking.pk}/", "booking"),
        ("/bookings/", "bookings"),
    ]:
        phone.goto(path)
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1, path
        assert_accessible(phone, context=f"{name} (ko, phone)")
        screenshot(phone, f"{name}-ko-phone")


def test_a_conflicting_request_shows_alternatives_and_one_click_books_one(
    new_page, company, celery_worker
):
    org, member = company
    small = make_pool(code="SMALL-E2E", nodes=1, per_node=2, hourly_rate=1000)
    start, end = next_tuesday(10), next_tuesday(12)
    rival_org = OrganizationFactory(slug="rival", name="경쟁사")
    rival = UserFactory(username="rival")
    add_member(rival_org, rival)
    taken = booking_request(
        actor=rival,
        organization=rival_org,
        resource_code=small.code,
        quantity=2,
        start=start,
        end=end,
    )
    wait_for_status(taken, "confirmed")

    page = new_page(viewport=DESKTOP)
    sign_in(page, member.username)
    page.goto(
        f"/book/?resource={small.code}&start={local_input(start)}&end={local_input(end)}&quantity=2"
    )
    with page.expect_navigation(url=re.compile(r"/bookings/\d+/$")):
        page.get_by_role("button", name="예약 요청").click()
    expect(page.locator("#booking-status .badge")).to_have_text("거절", timeout=20_000)
    expect(page.locator("#rejection-title")).to_be_visible()
    choices = page.locator("ul.alternatives li")
    expect(choices.first).to_be_visible()
    assert_accessible(page, context="booking rejected (ko, desktop)")
    screenshot(page, "booking-rejected-ko-desktop")

    refused = Booking.objects.get(organization=org)
    alternative = dt.datetime.fromisoformat(refused.alternatives[0]["start"])
    with page.expect_navigation(url=re.compile(r"/bookings/\d+/$")):
        choices.first.get_by_role("button").click()
    expect(page.locator("#booking-status .badge")).to_have_text("확정", timeout=20_000)
    rebooked = Booking.objects.filter(organization=org).exclude(pk=refused.pk).get()
    assert (rebooked.start, rebooked.status) == (alternative, "confirmed")


def test_a_member_of_another_company_gets_404_on_its_booking_page(
    new_page, company, h100, celery_worker
):
    org, member = company
    booking = booking_request(
        actor=member,
        organization=org,
        resource_code=h100.code,
        quantity=1,
        start=next_tuesday(10),
        end=next_tuesday(11),
    )
    other = OrganizationFactory(slug="other-co", name="다른회사")
    outsider = UserFactory(username="outsider-e2e")
    add_member(other, outsider, "manager")
    page = new_page()
    sign_in(page, outsider.username)
    response = page.goto(f"/bookings/{booking.pk}/")
    assert response is not None and response.status == 404
    assert org.name not in page.content()
    page.goto("/bookings/")
    assert f"/bookings/{booking.pk}/" not in page.content()


def test_the_form_refuses_bad_input_with_the_field_named_and_nothing_changes(
    new_page, company, h100
):
    org, member = company
    page = new_page(viewport=PHONE)
    sign_in(page, member.username)
    page.goto(f"/book/?resource={h100.code}")
    page.fill("#id_start", local_input(next_tuesday(10)))
    page.fill("#id_end", local_input(next_tuesday(9)))  # ends before it starts
    page.fill("#id_quantity", "2")
    expect(page.locator("#err-end [role=alert]")).to_contain_text("must be after the start")
    assert page.locator("#id_end").get_attribute("aria-describedby") == "err-end"
    assert_accessible(page, context="book with an error (ko, phone)")

    page.fill("#id_end", local_input(next_tuesday(18)))
    page.fill("#id_quantity", "0")
    expect(page.locator("#err-quantity [role=alert]")).to_be_visible()
    expect(page.locator("#err-end [role=alert]")).to_have_count(0)
    page.get_by_role("button", name="예약 요청").click()
    expect(page.locator("#err-quantity [role=alert]")).to_be_visible()
    assert page.url.endswith(f"/book/?resource={h100.code}")
    assert Booking.objects.count() == 0
