"""Moving a booking in a real browser, decided by a real Celery worker.

Moving a booking keeps the old slot when the new window is taken (the new booking is rejected
with alternatives, the old one stays confirmed with its GPUs), and a move one hour later onto
the same GPUs succeeds (the old booking is then cancelled free). Asserted on the database and
the pages; the move page passes axe-core in Korean at desktop and phone widths.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from booking.models import Allocation, Booking
from booking.services.requests import booking_request
from tests.e2e.conftest import PHONE, assert_accessible, sign_in
from tests.factories import OrganizationFactory, UserFactory, add_member, make_pool

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.browser,
    pytest.mark.redis,
    pytest.mark.postgres,
]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def next_tuesday(hour: int) -> dt.datetime:
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


def decided(booking: Booking, seconds: float = 30) -> Booking:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        booking.refresh_from_db()
        if booking.status != "pending":
            return booking
        time.sleep(0.2)
    raise AssertionError(f"booking #{booking.pk} is still pending after {seconds} s")


@pytest.fixture
def world(transactional_db, celery_worker):
    org = OrganizationFactory(slug="hanbit-move", name="주식회사 한빛무브")
    member = UserFactory(username="mover")
    add_member(org, member)
    rival_org = OrganizationFactory(slug="rival-move", name="라이벌")
    rival = UserFactory(username="rival")
    add_member(rival_org, rival)
    pool = make_pool(
        code="H100-MOVE",
        name="H100 GPU 풀",
        name_en="H100 GPU pool",
        nodes=1,
        per_node=2,
        hourly_rate=2500,
    )

    def book(user, organization, start_hour, end_hour):
        return decided(
            booking_request(
                actor=user,
                organization=organization,
                resource_code=pool.code,
                quantity=2,
                start=next_tuesday(start_hour),
                end=next_tuesday(end_hour),
                purpose="모델 학습",
            )
        )

    mine = book(member, org, 10, 12)
    taken = book(rival, rival_org, 14, 16)
    assert (mine.status, taken.status) == ("confirmed", "confirmed")
    yield member, mine
    celery_worker.drain()


def move_in_browser(page, booking: Booking, start: dt.datetime, end: dt.datetime) -> Booking:
    page.goto(f"/bookings/{booking.pk}/move/")
    page.locator("#id_move_start").fill(local_input(start))
    page.locator("#id_move_end").fill(local_input(end))
    with page.expect_navigation():
        page.locator("#move-form button[type=submit]").click()
    moved = Booking.objects.get(replaces=booking, start=start)
    assert page.url.endswith(f"/bookings/{moved.pk}/")
    return decided(moved)


def test_moving_a_booking_keeps_the_old_slot_when_the_new_window_is_taken(world, page):
    member, mine = world
    sign_in(page, member.username)
    page.goto(f"/bookings/{mine.pk}/move/")
    expect(page.locator("main h1")).to_contain_text("옮기기")
    assert_accessible(page, context="move (ko, desktop)")
    screenshot(page, "move-ko-desktop")

    # Bad input: named next to the field, announced, nothing stored.
    page.locator("#id_move_start").fill(local_input(next_tuesday(15)))
    page.locator("#id_move_end").fill(local_input(next_tuesday(13)))
    page.locator("#move-form button[type=submit]").click()
    expect(page.locator("#move-err-end [role=alert]")).to_be_visible()
    assert_accessible(page, context="move error (ko, desktop)")
    assert not Booking.objects.filter(replaces=mine).exists()

    # The new window is taken: the new booking is rejected with alternatives, mine stays.
    refused = move_in_browser(page, mine, next_tuesday(14), next_tuesday(16))
    mine.refresh_from_db()
    assert refused.status == "rejected" and refused.rejection_code == "unavailable"
    assert refused.alternatives
    assert mine.status == "confirmed"
    assert Allocation.objects.filter(booking=mine, active=True).count() == 2
    page.reload()
    expect(page.locator("main")).to_contain_text("가능한 다른 시간")

    # One hour later on the same two GPUs: confirmed, and mine is cancelled free.
    moved = move_in_browser(page, mine, next_tuesday(11), next_tuesday(13))
    mine.refresh_from_db()
    assert moved.status == "confirmed", moved.rejection_detail
    assert mine.status == "cancelled" and mine.final_price_krw == 0
    assert not Allocation.objects.filter(booking=mine, active=True).exists()
    assert Allocation.objects.filter(booking=moved, active=True).count() == 2


def test_the_move_page_works_on_a_phone(world, new_page):
    member, mine = world
    page = new_page(viewport=PHONE)
    sign_in(page, member.username)
    page.goto(f"/bookings/{mine.pk}/move/")
    expect(page.locator("#id_move_start")).to_be_visible()
    assert_accessible(page, context="move (ko, phone)")
    screenshot(page, "move-ko-phone")
