"""The catalogue in a real browser: search as you type, filters, the resource page's week, the
span form, the language switch on every page; axe-core on each page, in Korean, desktop and phone."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from booking.models import DiscountRule
from equipment.models import MaintenanceWindow
from tests.e2e.conftest import DESKTOP, PHONE, assert_accessible, sign_in
from tests.factories import CenterFactory, EquipmentTypeFactory, EquipmentUnitFactory, make_pool

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot(page, name: str) -> None:
    """docs/screenshots/<name>.png, only when TESTBED_SCREENSHOTS=1 (the README shows them)."""
    if os.environ.get("TESTBED_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def catalogue(db):
    """A GPU pool and two kinds of equipment, a maintenance window on the pool tomorrow."""
    pool = make_pool(
        nodes=4,
        per_node=8,
        code="NAIDC-H100",
        name="H100 GPU 풀 (국가 AI 데이터센터)",
        name_en="H100 GPU pool (National AI Data Centre)",
        accelerator="H100 80GB",
        center=CenterFactory(
            code="naidc-gwangju", name="국가 AI 데이터센터", name_en="National AI Data Centre",
            field="compute",
        ),
    )  # fmt: skip
    healthcare = CenterFactory(
        code="gj-healthcare", name="헬스케어 실증센터", name_en="Healthcare Demonstration Centre"
    )
    emg = EquipmentTypeFactory(
        code="HC-EMG",
        name="무선 근전도 측정 시스템",
        name_en="Wireless EMG system",
        center=healthcare,
        opens_at=dt.time(9),
        closes_at=dt.time(18),
        open_weekdays="01234",
        hourly_rate=20000,
    )
    for n in (1, 2):
        EquipmentUnitFactory(equipment_type=emg, code=f"HC-EMG-0{n}")
    lidar = EquipmentTypeFactory(
        code="AU-LIDAR",
        name="라이다 성능 시험기",
        name_en="LiDAR performance tester",
        center=CenterFactory(code="gj-automotive", name="자동차 실증센터", name_en="Automotive"),
        field="automotive",
    )
    EquipmentUnitFactory(equipment_type=lidar, code="AU-LIDAR-01")
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    start = dt.datetime.combine(tomorrow, dt.time(2), tzinfo=timezone.get_current_timezone())
    MaintenanceWindow.objects.create(
        pool=pool, start=start, end=start + dt.timedelta(hours=3), reason="냉각 설비 점검"
    )
    return {"pool": pool, "emg": emg, "lidar": lidar}


def booking_form_address(url: str):
    """The /book/ address reached, directly or as `next` of the sign-in page (signed out)."""
    parts = urlsplit(url)
    if parts.path == "/login/":
        parts = urlsplit(parse_qs(parts.query)["next"][0])
    assert parts.path == "/book/", url
    return parts


def card_codes(page) -> set[str]:
    hrefs = page.locator("#catalogue-results .card h3 a").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    return {href.split("/")[2] for href in hrefs}


def wait_for_cards(page, codes: set[str]) -> None:
    """Wait until the result cards are exactly these (htmx swaps them in after a request)."""
    hrefs = sorted(f"/resources/{code}/" for code in codes)
    page.wait_for_function(
        """hrefs => JSON.stringify(Array.from(
             document.querySelectorAll('#catalogue-results .card h3 a'),
             a => a.getAttribute('href')).sort()) === JSON.stringify(hrefs)""",
        arg=hrefs,
    )


def test_a_visitor_searches_as_they_type_and_filters_the_catalogue(new_page, catalogue):
    page = new_page(viewport=DESKTOP)
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == "ko"
    assert card_codes(page) == {"NAIDC-H100", "HC-EMG", "AU-LIDAR"}
    assert page.get_by_text("비어 있는 수 (운영 시간 중)").first.is_visible()
    assert_accessible(page, context="home (ko, desktop)")
    screenshot(page, "home-ko-desktop")

    with page.expect_response(lambda r: "q=" in r.url and r.request.headers.get("hx-request")):
        page.get_by_label("이름이나 코드로 검색").press_sequentially("근전도", delay=30)
    wait_for_cards(page, {"HC-EMG"})
    assert "q=%EA%B7%BC%EC%A0%84%EB%8F%84" in page.url  # a shareable address
    assert "실증장비 1종 · 가속기 풀 0개" in page.locator("#catalogue-count").inner_text()

    page.get_by_label("이름이나 코드로 검색").fill("")
    with page.expect_response(lambda r: "field=compute" in r.url):
        page.get_by_label("분야").select_option("compute")
    wait_for_cards(page, {"NAIDC-H100"})

    page.goto("/?field=automotive")  # the address alone reproduces a search, without htmx
    assert card_codes(page) == {"AU-LIDAR"}
    assert page.get_by_label("분야").input_value() == "automotive"


def test_the_catalogue_works_on_a_phone(new_page, catalogue):
    page = new_page(viewport=PHONE)
    page.goto("/")
    assert page.locator("main h1").is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the home page scrolls sideways on a phone ({width} px)"
    assert_accessible(page, context="home (ko, phone)")
    screenshot(page, "home-ko-phone")


def test_a_resource_page_shows_the_week_and_a_free_cell_fills_the_booking_form(new_page, catalogue):
    page = new_page(viewport=DESKTOP)
    page.goto("/")
    with page.expect_navigation():
        page.get_by_role("link", name="H100 GPU 풀 (국가 AI 데이터센터)").click()
    assert urlsplit(page.url).path == "/resources/NAIDC-H100/"
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    page.goto(f"/resources/NAIDC-H100/?week={tomorrow:%Y-%m-%d}")  # the maintenance's week
    assert page.get_by_role("heading", name="예약 규칙").is_visible()
    assert page.get_by_text("시간당 139원 (정가)").is_visible()
    assert page.locator("td.cell.maintenance").count() == 3
    assert page.get_by_text("냉각 설비 점검").is_visible()
    assert_accessible(page, context="resource (ko, desktop)")
    screenshot(page, "resource-ko-desktop")

    first_monday = page.locator("table.timeline tbody th[scope=row]").first.inner_text()
    with page.expect_response(lambda r: "week=" in r.url):
        page.get_by_role("link", name=re.compile("다음 주")).click()
    page.wait_for_function(
        "first => document.querySelector('table.timeline tbody th[scope=row]').innerText !== first",
        arg=first_monday,
    )
    assert "week=" in page.url

    link = page.locator("table.timeline td.cell.free a").first
    with page.expect_navigation():
        link.click()
    parts = booking_form_address(page.url)
    query = parse_qs(parts.query)
    assert query["resource"] == ["NAIDC-H100"] and query["quantity"] == ["1"]
    start = dt.datetime.fromisoformat(query["start"][0])
    assert dt.datetime.fromisoformat(query["end"][0]) - start == dt.timedelta(hours=1)
    assert start.utcoffset() == dt.timedelta(hours=9)


def test_the_span_form_names_a_bad_end_and_then_goes_on_to_the_booking_form(new_page, catalogue):
    page = new_page(viewport=DESKTOP)
    page.goto("/resources/NAIDC-H100/")
    page.get_by_label("시작", exact=True).fill("2030-01-07T10:00")
    page.get_by_label("끝", exact=True).fill("2030-01-07T09:00")
    page.get_by_label("수량").fill("2")
    with page.expect_navigation():
        page.get_by_role("button", name="예약 양식으로").click()
    error = page.locator("#id_end-error")
    assert error.get_attribute("role") == "alert"
    assert "끝은 시작보다 뒤여야 합니다." in error.inner_text()
    assert page.get_by_label("끝", exact=True).get_attribute("aria-describedby") == "id_end-error"
    assert_accessible(page, context="resource with an error (ko)")

    page.get_by_label("끝", exact=True).fill("2030-01-07T18:00")
    with page.expect_navigation():
        page.get_by_role("button", name="예약 양식으로").click()
    query = parse_qs(booking_form_address(page.url).query)
    assert query["start"] == ["2030-01-07T10:00:00+09:00"]
    assert query["end"] == ["2030-01-07T18:00:00+09:00"]
    assert query["quantity"] == ["2"]


def test_an_equipment_page_on_a_phone_shows_each_unit(new_page, catalogue):
    page = new_page(viewport=PHONE)
    page.goto("/resources/HC-EMG/")
    assert page.get_by_role("heading", name="무선 근전도 측정 시스템", level=1).is_visible()
    assert page.locator("table.timeline th[scope=row]", has_text="HC-EMG-02").count() == 7
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone ({width} px)"
    assert_accessible(page, context="equipment resource (ko, phone)")
    screenshot(page, "resource-ko-phone")


def test_a_signed_in_member_sees_the_price_after_the_discount(new_page, catalogue, member, org):
    # Transactional tests flush the rows migrations made: state the Gwangju rule here.
    DiscountRule.objects.get_or_create(
        name="광주 소재 기업 (Gwangju-based)", defaults={"region": "gwangju", "percent": 50}
    )
    page = new_page(viewport=DESKTOP)
    sign_in(page, member.username)
    page.goto("/resources/NAIDC-H100/")
    row = page.locator("section", has=page.get_by_role("heading", name="요금")).locator("tbody tr")
    assert org.name in row.inner_text()
    assert "70원" in row.inner_text()  # 139원 less the 50% Gwangju discount, rounded
    assert_accessible(page, context="resource, signed in (ko)")


def test_an_unknown_code_answers_a_404_page(new_page, catalogue):
    page = new_page(viewport=DESKTOP)
    response = page.goto("/resources/NO-SUCH-THING/")
    assert response.status == 404
    assert page.get_by_role("heading", name="찾을 수 없음").is_visible()
    assert_accessible(page, context="404 (ko)")


def test_the_language_switch_works_on_every_catalogue_page_and_sticks(new_page, catalogue):
    page = new_page(viewport=DESKTOP)
    page.goto("/?q=H100")
    assert page.get_by_label("이름이나 코드로 검색").is_visible()
    with page.expect_navigation():
        page.select_option("#language-switch", "en")
    assert page.locator("html").get_attribute("lang") == "en"
    assert urlsplit(page.url).query == "q=H100"  # back on the same search
    assert page.get_by_label("Search by name or code").input_value() == "H100"
    assert page.get_by_role("link", name="H100 GPU pool (National AI Data Centre)").is_visible()
    assert_accessible(page, context="home (en)")

    with page.expect_navigation():
        page.get_by_role("link", name="H100 GPU pool (National AI Data Centre)").click()
    assert page.locator("html").get_attribute("lang") == "en"  # the choice sticks
    assert page.get_by_role("heading", name="Booking rules").is_visible()
    assert page.get_by_text("Open every day, around the clock.").is_visible()
    assert_accessible(page, context="resource (en)")

    page.goto("/resources/HC-EMG/?week=2030-01-09")
    assert page.get_by_text("Open Mon–Fri 09:00–18:00.").is_visible()
    assert page.get_by_text("Mon 7 Jan 2030").first.is_visible()
    with page.expect_navigation():
        page.select_option("#language-switch", "ko")
    assert page.locator("html").get_attribute("lang") == "ko"
    assert urlsplit(page.url).path == "/resources/HC-EMG/"
    assert page.get_by_role("heading", name="예약 규칙").is_visible()
    assert page.get_by_text("2030년 1월 7일 (월)").first.is_visible()
