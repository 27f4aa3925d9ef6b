"""/organization/ in a real browser: a manager makes an API key (seen once) and downloads the usage
CSV (with its BOM); a member sees no members or keys; an invitation is accepted in the browser.
Every page passes axe in Korean at desktop and phone widths. With TESTBED_SCREENSHOTS=1 the
dashboard is saved to docs/screenshots/organization-ko-{desktop,phone}.png.
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from booking.models import DailyUsage, Invitation, Membership, QuotaGrant, QuotaLedgerEntry
from tests.e2e.conftest import DESKTOP, PHONE, assert_accessible, sign_in
from tests.factories import OrganizationFactory, UserFactory, add_member

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _screenshot(page, name: str) -> None:
    if os.environ.get("TESTBED_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


@pytest.fixture
def company():
    """An organisation with a manager, a member, two grants and eleven months of usage."""
    org = OrganizationFactory(slug="gjsme", name="광주에이아이 주식회사")
    manager = UserFactory(username="gj-manager")
    member = UserFactory(username="gj-member")
    add_member(org, manager, "manager")
    add_member(org, member, "member")
    today = timezone.localdate()
    grant = QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=today.replace(month=1, day=1),
        period_end=today.replace(month=12, day=31),
        limit_hours=Decimal("2000"),
    )
    QuotaLedgerEntry.objects.create(grant=grant, kind="consume", hours=Decimal("640"))
    QuotaLedgerEntry.objects.create(grant=grant, kind="hold", hours=Decimal("320"))
    QuotaGrant.objects.create(
        organization=org,
        scope="NAIDC-H100",
        period_start=today.replace(day=1),
        period_end=today.replace(month=12, day=31),
        limit_hours=Decimal("500"),
        enforcement="soft",
    )
    month = today.replace(day=1)
    for i in range(1, 12):
        month = (month - dt.timedelta(days=1)).replace(day=1)
        DailyUsage.objects.create(
            organization=org,
            resource_code="NAIDC-H100",
            resource_kind="pool",
            center_code="NAIDC",
            day=month.replace(day=15),
            bookings=i,
            booked_hours=Decimal(16 * i + 8),
            used_hours=Decimal(14 * i + 4),
            unit_hours=Decimal(14 * i + 4),
            charge_krw=139_000 * i,
        )
    return org, manager, member


def test_a_manager_makes_an_api_key_seen_once_and_downloads_the_usage_csv(new_page, company):
    org, manager, _member = company
    page = new_page(viewport=DESKTOP)
    sign_in(page, manager.username)
    page.goto("/organization/")
    assert page.locator("h1").inner_text() == org.name
    assert page.locator("#members").is_visible() and page.locator("#api-keys").is_visible()
    assert page.locator("svg.chart title").count() >= 1
    assert_accessible(page, context="organization (ko, desktop, manager)")
    _screenshot(page, "organization-ko-desktop.png")

    with page.expect_download() as download_info:
        page.locator("#usage a", has_text="CSV").click()
    body = Path(download_info.value.path()).read_bytes()
    assert body.startswith(b"\xef\xbb\xbf")
    text = body.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("month,resource,")
    assert "NAIDC-H100" in text

    page.fill("#id_name", "ERP 연동")
    page.check("input[name=scopes][value='bookings:read']")
    page.check("input[name=scopes][value='usage:read']")
    with page.expect_navigation():
        page.get_by_role("button", name="API 키 만들기").click()
    secret = page.locator("#api-key-secret").input_value()
    assert secret.startswith("tbk_")
    assert page.get_by_role("alert").first.is_visible()  # the "shown once" warning
    assert_accessible(page, context="API key created (ko)")

    with page.expect_navigation():
        page.get_by_role("link", name="우리 기관으로 돌아가기").click()
    keys = page.locator("#api-keys")
    assert "ERP 연동" in keys.inner_text() and "사용한 적 없음" in keys.inner_text()
    assert secret not in page.content()


def test_the_dashboard_works_on_a_phone(new_page, company):
    _org, manager, _member = company
    page = new_page(viewport=PHONE)
    sign_in(page, manager.username)
    page.goto("/organization/")
    assert page.locator("#usage svg.chart").is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, f"the page scrolls sideways on a phone ({width}px)"
    assert_accessible(page, context="organization (ko, phone, manager)")
    _screenshot(page, "organization-ko-phone.png")


def test_a_member_sees_quotas_and_usage_but_no_members_or_keys(new_page, company):
    _org, _manager, member = company
    for viewport in (DESKTOP, PHONE):
        page = new_page(viewport=viewport)
        sign_in(page, member.username)
        page.goto("/organization/")
        assert page.locator("#quotas").is_visible() and page.locator("#usage").is_visible()
        assert page.locator("#members").count() == 0
        assert page.locator("#api-keys").count() == 0
        assert_accessible(page, context=f"organization (ko, member, {viewport['width']}px)")


def test_an_invitation_is_sent_and_accepted_in_the_browser(new_page, company):
    org, manager, _member = company
    UserFactory(username="guest", email="guest@example.kr")

    page = new_page()
    sign_in(page, manager.username)
    page.goto("/organization/")
    # Bad input first: the field is named and nothing is sent.
    page.fill("#id_username", "guest")
    page.fill("#id_email", "not-an-email")
    page.get_by_role("button", name="추가 또는 초대").click()
    page.locator("#id_email-error").wait_for()
    assert page.locator("#id_email").get_attribute("aria-invalid") == "true"
    assert not Invitation.objects.exists()
    assert_accessible(page, context="invite form with an error (ko)")

    page.fill("#id_email", "guest@example.kr")
    page.get_by_role("button", name="추가 또는 초대").click()  # htmx swaps the section
    page.get_by_text("초대됨 · 수락 대기").wait_for()
    assert Invitation.objects.filter(organization=org, user__username="guest").exists()

    guest = new_page(viewport=PHONE)
    sign_in(guest, "guest")
    guest.goto("/organization/")
    assert org.name in guest.locator("#invitations").inner_text()
    assert_accessible(guest, context="my invitations (ko, phone)")
    with guest.expect_navigation():
        guest.get_by_role("button", name=f"{org.name} 초대 수락").click()
    assert guest.locator("h1").inner_text() == org.name
    assert Membership.objects.get(organization=org, user__username="guest").role == "member"
    assert guest.locator("#members").count() == 0
