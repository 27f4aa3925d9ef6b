"""Pages that show a secret once, in a real browser: made by a POST, shown after a redirect, so a
reload neither posts again (a second endpoint or feed) nor shows the secret again."""

from __future__ import annotations

import re

import pytest

from integrations.calendars.models import CalendarFeed
from integrations.webhooks.models import WebhookEndpoint
from tests.e2e.conftest import assert_accessible, sign_in
from tests.factories import OrganizationFactory, UserFactory, add_member

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def manager(settings):
    settings.TESTBED_WEBHOOKS_ALLOW_HTTP = True  # http://127.0.0.1 as the receiver
    org = OrganizationFactory(slug="gjhook", name="광주웹훅 주식회사")
    person = UserFactory(username="hook-manager")
    add_member(org, person, "manager")
    return person


def test_a_reload_after_registering_an_endpoint_makes_no_second_one(page, manager):
    sign_in(page, manager.username)
    page.goto("/organization/webhooks/")
    page.locator("#id_url").fill("http://127.0.0.1:9/hook")
    page.locator("input[name=event_types][value='booking.confirmed']").check()
    page.get_by_role("button", name="엔드포인트 등록").click()
    page.wait_for_load_state("networkidle")
    endpoint = WebhookEndpoint.objects.get()
    assert re.search(rf"/organization/webhooks/{endpoint.pk}/$", page.url)
    assert page.locator("#webhook-secret").input_value() == endpoint.secret
    assert_accessible(page)

    page.reload()
    page.wait_for_load_state("networkidle")
    assert WebhookEndpoint.objects.count() == 1
    assert page.locator("#webhook-secret").count() == 0
    assert endpoint.secret not in page.content()

    page.get_by_role("button", name="서명 비밀 값 교체").click()
    page.wait_for_load_state("networkidle")
    endpoint.refresh_from_db()
    assert page.locator("#webhook-secret").input_value() == endpoint.secret
    rotated = endpoint.secret
    page.reload()
    page.wait_for_load_state("networkidle")
    endpoint.refresh_from_db()
    assert endpoint.secret == rotated and rotated not in page.content()


def test_a_reload_after_making_a_calendar_feed_makes_no_second_one(page, manager):
    sign_in(page, manager.username)
    page.goto("/calendars/")
    page.get_by_role("button", name="내 예약 구독 주소 만들기").click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith("/calendars/")
    address = page.locator("#calendar-url").input_value()
    assert "/calendar/tbc_" in address

    page.reload()
    page.wait_for_load_state("networkidle")
    assert CalendarFeed.objects.count() == 1
    assert page.locator("#calendar-url").count() == 0 and address not in page.content()

    feed = CalendarFeed.objects.get()
    page.get_by_role("button", name=re.compile("새 주소 발급")).click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith("/calendars/")  # not /calendars/<id>/regenerate/
    renewed = page.locator("#calendar-url").input_value()
    assert renewed != address
    page.reload()
    page.wait_for_load_state("networkidle")
    feed.refresh_from_db()
    assert renewed.split("/calendar/tbc_")[1].startswith(feed.token_prefix)  # not regenerated
