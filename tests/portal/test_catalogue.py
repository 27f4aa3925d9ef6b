"""The catalogue pages: home (search, filters, free-soon cards) and a resource's page (specs,
rules, price after discount, week timeline, span → booking form)."""

from __future__ import annotations

import datetime as dt
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.translation import override

from booking.models import Allocation, Booking, DiscountRule
from equipment.models import Device, MaintenanceWindow
from tests.factories import (
    CenterFactory,
    EquipmentTypeFactory,
    EquipmentUnitFactory,
    aware,
    make_pool,
)

pytestmark = pytest.mark.django_db

NOW = aware(2026, 12, 1, 8, 0)  # a Tuesday, 08:00 KST: "tomorrow" is Wed 2 Dec, then Thu 3 Dec


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def pool(db):
    return make_pool(
        nodes=2,
        per_node=8,
        code="NAIDC-H100",
        name="H100 GPU 풀",
        name_en="H100 GPU pool",
        accelerator="H100 80GB",
        center=CenterFactory(
            code="naidc", name="국가 AI 데이터센터", name_en="AI DC", field="compute"
        ),
    )


@pytest.fixture
def lab(db):
    """A weekday 09–18 lab with two units, 30-minute slots, approval and qualification."""
    t = EquipmentTypeFactory(
        code="HC-EMG",
        name="근전도 측정기",
        name_en="EMG analyser",
        center=CenterFactory(code="gj-hc", name="헬스케어 실증센터", name_en="Healthcare centre"),
        field="healthcare",
        phase=2,
        opens_at=dt.time(9),
        closes_at=dt.time(18),
        open_weekdays="01234",
        max_minutes=120,
        buffer_minutes=15,
        requires_approval=True,
        requires_qualification=True,
        hourly_rate=20000,
    )
    EquipmentUnitFactory(equipment_type=t, code="HC-EMG-01")
    EquipmentUnitFactory(equipment_type=t, code="HC-EMG-02")
    return t


def hold(org, user, resource, start, end, *, devices=(), units=()):
    """A confirmed booking holding these devices or units (allocation rows, as the worker writes)."""
    booking = Booking.objects.create(
        organization=org,
        user=user,
        pool=resource if devices else None,
        equipment_type=None if devices else resource,
        quantity=len(devices) or len(units),
        start=start,
        end=end,
        status="confirmed",
    )
    Allocation.objects.bulk_create(
        [Allocation(booking=booking, device=d, node=d.node, start=start, end=end) for d in devices]
        + [Allocation(booking=booking, unit=u, start=start, end=end) for u in units]
    )
    return booking


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# --- home --------------------------------------------------------------------------------------


def test_it_shows_cards_with_what_is_free_tomorrow_and_the_day_after(
    client, pool, lab, org, member
):
    devices = list(Device.objects.filter(node__pool=pool).order_by("pk")[:3])
    hold(org, member, pool, aware(2026, 12, 2, 10), aware(2026, 12, 2, 12), devices=devices)
    unit = lab.units.order_by("code").first()
    hold(org, member, lab, aware(2026, 12, 3, 9), aware(2026, 12, 3, 18), units=[unit])

    page = text(client.get("/"))

    assert "H100 GPU 풀" in page and "근전도 측정기" in page
    assert 'href="/resources/NAIDC-H100/"' in page and 'href="/resources/HC-EMG/"' in page
    assert "2026년 12월 2일 (수)" in page and "2026년 12월 3일 (목)" in page
    assert "16 중 13–16 가능" in page  # the pool tomorrow: 3 of 16 taken from 10 to 12
    assert "16 중 16 가능" in page  # the pool the day after
    assert "2 중 2 가능" in page  # the lab tomorrow
    assert "2 중 1 가능" in page  # the lab the day after: one unit booked all day
    assert "139원" in page and "20,000원" in page


def test_it_says_when_a_resource_is_closed_or_full(client, lab, org, member):
    lab.open_weekdays = "0124"  # closed on Thursdays
    lab.save()
    units = list(lab.units.all())
    hold(org, member, lab, aware(2026, 12, 2, 9), aware(2026, 12, 2, 18), units=units)

    page = text(client.get("/"))

    assert "빈 자리 없음" in page  # Wednesday: both units booked all day
    assert "휴무" in page  # Thursday


def test_it_searches_by_korean_name_english_name_and_code(client, pool, lab):
    def found(q):
        page = text(client.get("/", {"q": q}))
        return {code for code in ("NAIDC-H100", "HC-EMG") if f"/resources/{code}/" in page}

    assert found("근전도") == {"HC-EMG"}
    assert found("emg analyser") == {"HC-EMG"}
    assert found("naidc-h1") == {"NAIDC-H100"}
    assert found("H100") == {"NAIDC-H100"}
    assert found("없는 장비") == set()
    assert "조건에 맞는 장비가 없습니다" in text(client.get("/", {"q": "없는 장비"}))


def test_it_filters_by_centre_field_phase_and_accelerator(client, pool, lab):
    other = EquipmentTypeFactory(code="AU-LIDAR", field="automotive", phase=1)

    def found(**params):
        page = text(client.get("/", params))
        return {c for c in ("NAIDC-H100", "HC-EMG", "AU-LIDAR") if f"/resources/{c}/" in page}

    assert found(center="gj-hc") == {"HC-EMG"}
    assert found(center="naidc") == {"NAIDC-H100"}
    assert found(field="healthcare") == {"HC-EMG"}
    assert found(field="automotive") == {"AU-LIDAR"}
    assert found(field="compute") == {"NAIDC-H100"}
    assert found(phase="2") == {"HC-EMG"}
    assert found(phase="1") == {"AU-LIDAR"}
    assert found(accelerator="H100 80GB") == {"NAIDC-H100"}
    assert found(field="healthcare", q="근전도") == {"HC-EMG"}
    assert other.code == "AU-LIDAR"


def test_it_names_a_bad_filter_and_still_shows_the_catalogue(client, pool, lab):
    response = client.get("/", {"field": "bogus", "q": "H100"})

    assert response.status_code == 400
    page = text(response)
    assert 'id="id_field-error" class="error" role="alert"' in page
    assert 'aria-describedby="id_field-error"' in page
    assert "/resources/NAIDC-H100/" in page  # the valid filters still apply
    assert "/resources/HC-EMG/" not in page


def test_it_refuses_an_overlong_search(client, pool):
    response = client.get("/", {"q": "가" * 101})
    assert response.status_code == 400
    assert 'id="id_q-error"' in response.content.decode()


def test_it_answers_htmx_with_the_results_and_the_count_only(client, pool, lab):
    response = client.get("/", {"q": "H100"}, HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert 'id="catalogue-results"' in html
    assert 'id="catalogue-count" role="status" hx-swap-oob="true"' in html
    assert "/resources/NAIDC-H100/" in html and "/resources/HC-EMG/" not in html
    assert "HX-Request" in response["Vary"]


def test_the_search_form_works_without_and_with_javascript(client, pool):
    html = text(client.get("/"))
    form = re.search(r'<form method="get" action="/" class="catalogue-filters"[^>]*>', html).group(
        0
    )
    assert 'hx-get="/"' in form and 'hx-target="#catalogue-results"' in form
    assert "input changed delay:300ms from:#id_q" in form  # typing, pasting, IME
    assert 'hx-push-url="true"' in form
    for name in ("q", "center", "field", "phase", "accelerator"):
        assert f'<label for="id_{name}">' in html
    assert "<script>" not in html and "onclick" not in html


def test_the_home_page_costs_the_same_few_queries_for_any_number_of_cards(client, pool, lab):
    def queries():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/").status_code == 200
        return len(ctx)

    few = queries()
    for n in range(12):
        t = EquipmentTypeFactory(code=f"EXTRA-{n}")
        EquipmentUnitFactory(equipment_type=t)
    make_pool(nodes=110, per_node=8, code="EXTRA-POOL")
    # filter choices 2, types, pools, units, devices, 2 × allocations, maintenance
    assert queries() == few == 9
    began = time.perf_counter()
    client.get("/")
    elapsed = (time.perf_counter() - began) * 1000
    print(f"\nhome page, 15 cards (one an 880-device pool): {elapsed:.0f} ms")


# --- resource page -----------------------------------------------------------------------------


def test_it_answers_404_for_an_unknown_code(client):
    response = client.get("/resources/NOPE/")
    assert response.status_code == 404
    assert "찾을 수 없음" in response.content.decode()


def test_it_shows_the_specs_and_node_shapes_of_a_pool(client, pool):
    page = text(client.get("/resources/NAIDC-H100/"))
    assert "<h1>H100 GPU 풀</h1>" in page
    assert "H100 GPU pool" in page  # the English name is part of the specs
    assert "국가 AI 데이터센터" in page
    assert "장치 8개짜리 노드 2대" in page
    assert "NVIDIA H100 80GB" in page


def test_it_states_the_rules_in_plain_words(client, lab):
    page = text(client.get("/resources/HC-EMG/"))
    assert "30분 단위로 시작하고 끝납니다." in page
    assert "한 번에 최소 30분, 최대 2시간." in page
    assert "월–금 09:00–18:00에 운영합니다." in page
    assert "운영자가 승인해야 확정됩니다." in page
    assert "사용 자격(교육 이수)이 있는 사람만 예약할 수 있습니다." in page
    assert "예약 앞뒤로 15분은 비워 둡니다" in page
    assert "60일 앞까지 예약할 수 있습니다." in page


def test_it_shows_the_list_price_when_signed_out(client, pool):
    page = text(client.get("/resources/NAIDC-H100/"))
    assert "시간당 139원 (정가)" in page
    assert "로그인하면 우리 기관의 할인이 적용된 요금을 볼 수 있습니다." in page


def test_it_shows_the_price_after_the_members_organisation_discount(client, pool, org, member):
    assert org.region == "gwangju"  # the Gwangju rule (migration 0004) takes 50% off
    client.force_login(member)
    page = text(client.get("/resources/NAIDC-H100/"))
    assert "주식회사 에이크미" in page
    assert "<td>139원</td><td>50%</td><td><strong>70원</strong></td>" in page  # 69.5 rounds up


def test_it_shows_list_prices_where_no_discount_applies(client, pool, org, member):
    DiscountRule.objects.all().delete()
    client.force_login(member)
    page = text(client.get("/resources/NAIDC-H100/"))
    assert "<td>139원</td><td>0%</td><td><strong>139원</strong></td>" in page


def test_it_never_shows_another_organisations_name_or_price(client, pool, org, member, outsider):
    client.force_login(outsider)
    page = text(client.get("/resources/NAIDC-H100/"))
    assert "글로벡스" in page
    assert "주식회사 에이크미" not in page


def test_the_pool_week_shows_free_devices_per_hour_and_links_free_cells_to_the_form(
    client, pool, org, member
):
    devices = list(Device.objects.filter(node__pool=pool).order_by("pk")[:3])
    hold(org, member, pool, aware(2026, 12, 2, 10), aware(2026, 12, 2, 12), devices=devices)

    page = text(client.get("/resources/NAIDC-H100/", {"week": "2026-12-02"}))

    assert "2026년 11월 30일 (월) ~ 2026년 12월 6일 (일)" in page
    assert "시간대별 빈 장치 수 (모두 16개)" in page
    wednesday = re.search(r"<th scope=\"row\">2026년 12월 2일 \(수\)</th>(.*?)</tr>", page).group(1)
    cells = re.findall(r'<td class="cell (\w+)">(.*?)</td>', wednesday)
    assert len(cells) == 24
    assert [c[0] for c in cells[9:13]] == ["free", "partial", "partial", "free"]
    assert "</span>13</a>" in cells[10][1]
    link = re.search(r'href="([^"]+)"', cells[10][1]).group(1).replace("&amp;", "&")
    parts = urlsplit(link)
    assert parts.path == "/book/"
    assert parse_qs(parts.query) == {
        "resource": ["NAIDC-H100"],
        "start": ["2026-12-02T10:00:00+09:00"],
        "end": ["2026-12-02T11:00:00+09:00"],
        "quantity": ["1"],
    }
    monday = re.search(r"<th scope=\"row\">2026년 11월 30일 \(월\)</th>(.*?)</tr>", page).group(1)
    assert set(re.findall(r'<td class="cell (\w+)">', monday)) == {"past"}  # before now: no link
    assert 'class="cell past"><a' not in page


def test_the_week_marks_maintenance_with_its_reason(client, pool):
    node = pool.nodes.order_by("pk").first()
    MaintenanceWindow.objects.create(
        pool=pool, start=aware(2026, 12, 3, 0), end=aware(2026, 12, 3, 6), reason="냉각 점검"
    )
    MaintenanceWindow.objects.create(
        node=node, start=aware(2026, 12, 4, 0), end=aware(2026, 12, 4, 2), reason="노드 교체"
    )

    page = text(client.get("/resources/NAIDC-H100/", {"week": "2026-12-03"}))

    thursday = re.search(r"<th scope=\"row\">2026년 12월 3일 \(목\)</th>(.*?)</tr>", page).group(1)
    states = re.findall(r'<td class="cell (\w+)">', thursday)
    assert states[:6] == ["maintenance"] * 6 and states[6] == "free"
    assert '<td class="cell maintenance">점검</td>' in thursday
    friday = re.search(r"<th scope=\"row\">2026년 12월 4일 \(금\)</th>(.*?)</tr>", page).group(1)
    assert "</span>8</a>" in friday  # one node of two is in maintenance
    assert "냉각 점검" in page and "노드 교체" in page and node.hostname in page


def test_the_equipment_week_shows_each_unit_in_opening_hours(client, lab, org, member):
    unit = lab.units.order_by("code").first()
    hold(org, member, lab, aware(2026, 12, 2, 10), aware(2026, 12, 2, 12), units=[unit])

    page = text(client.get("/resources/HC-EMG/"))  # this week (now is Tue 1 Dec)

    assert "장비별 시간대 현황 (모두 2대)" in page
    header = re.search(r"<thead>(.*?)</thead>", page).group(1)
    assert re.findall(r'<th scope="col">(\d\d)</th>', header) == [f"{h:02d}" for h in range(9, 18)]
    wednesday = re.search(
        r'<th scope="rowgroup" rowspan="2">2026년 12월 2일 \(수\)</th><th scope="row">HC-EMG-01</th>(.*?)</tr>',
        page,
    ).group(1)
    states = re.findall(r'<td class="cell (\w+)">', wednesday)
    assert states == ["free", "busy", "busy"] + ["free"] * 6
    assert '<td class="cell busy">예약됨</td>' in wednesday
    saturday = re.search(
        r"2026년 12월 5일 \(토\)</th><th scope=\"row\">HC-EMG-01</th>(.*?)</tr>", page
    )
    assert set(re.findall(r'<td class="cell (\w+)">', saturday.group(1))) == {"closed"}


def test_the_equipment_week_marks_a_units_maintenance(client, lab):
    unit = lab.units.order_by("code").last()
    MaintenanceWindow.objects.create(
        unit=unit, start=aware(2026, 12, 2, 9), end=aware(2026, 12, 2, 11), reason="센서 교정"
    )
    page = text(client.get("/resources/HC-EMG/"))
    row = re.search(
        r'<th scope="row">HC-EMG-02</th>(.*?)</tr>', page.split("2026년 12월 2일 (수)</th>")[1]
    ).group(1)
    assert re.findall(r'<td class="cell (\w+)">', row)[:3] == ["maintenance", "maintenance", "free"]
    assert "센서 교정" in page and "(HC-EMG-02)" in page


def test_the_week_links_to_the_weeks_before_and_after(client, pool):
    page = text(client.get("/resources/NAIDC-H100/", {"week": "2026-12-09"}))
    assert 'href="/resources/NAIDC-H100/?week=2026-11-30"' in page
    assert 'href="/resources/NAIDC-H100/?week=2026-12-14"' in page
    assert 'hx-get="/resources/NAIDC-H100/?week=2026-12-14" hx-target="#timeline"' in page


def test_it_answers_htmx_with_the_timeline_only(client, pool):
    response = client.get("/resources/NAIDC-H100/", {"week": "2026-12-09"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and html.strip().startswith('<div id="timeline">')
    assert "2026년 12월 7일 (월)" in html


@pytest.mark.parametrize("week", ["2026-13-01", "yesterday", "1999-12-31"])
def test_it_names_a_bad_week_and_shows_this_week(client, pool, week):
    response = client.get("/resources/NAIDC-H100/", {"week": week})
    assert response.status_code == 400
    page = text(response)
    assert 'id="id_week-error" class="error" role="alert">주:' in page
    assert "2026년 11월 30일 (월) ~" in page


def test_the_span_form_leads_to_the_booking_form(client, pool):
    response = client.get(
        "/resources/NAIDC-H100/",
        {"start": "2026-12-08T10:00", "end": "2026-12-08T18:00", "quantity": "2"},
    )
    assert response.status_code == 302
    parts = urlsplit(response["Location"])
    assert parts.path == "/book/"
    assert parse_qs(parts.query) == {
        "resource": ["NAIDC-H100"],
        "start": ["2026-12-08T10:00:00+09:00"],
        "end": ["2026-12-08T18:00:00+09:00"],
        "quantity": ["2"],
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2026-12-08T18:00", "end": "2026-12-08T10:00", "quantity": "1"}, "end"),
        ({"start": "tomorrow", "end": "2026-12-08T10:00", "quantity": "1"}, "start"),
        ({"start": "2026-12-08T10:00", "end": "2026-12-08T12:00", "quantity": "0"}, "quantity"),
        ({"start": "2026-12-08T10:00", "end": "2026-12-08T12:00"}, "quantity"),
    ],
)
def test_the_span_form_names_the_bad_field_and_books_nothing(client, pool, params, field):
    response = client.get("/resources/NAIDC-H100/", params)
    assert response.status_code == 400
    page = text(response)
    assert f'id="id_{field}-error" class="error" role="alert"' in page
    assert f'aria-describedby="id_{field}-error"' in page
    assert Booking.objects.count() == 0


def test_the_span_form_is_prefilled_with_the_first_bookable_hour(client, pool):
    page = text(client.get("/resources/NAIDC-H100/"))
    assert 'name="start" value="2026-12-01T08:00"' in page
    assert 'name="end" value="2026-12-01T09:00"' in page


def test_the_page_is_in_english_when_asked(client, pool, lab):
    with override("en"):
        page = text(client.get("/resources/HC-EMG/", HTTP_ACCEPT_LANGUAGE="en"))
        home = text(client.get("/", HTTP_ACCEPT_LANGUAGE="en"))
    assert "<h1>EMG analyser</h1>" in page
    assert "Starts and ends on 30 min boundaries." in page
    assert "Mon–Fri 09:00–18:00" in page
    assert "Tue 1 Dec 2026" in page
    assert "근전도 측정기" in page  # the Korean name stays in the specs, marked lang="ko"
    assert "Free units and devices (in opening hours)" in home
    assert "Search by name or code" in home


def test_a_week_of_the_880_device_pool_is_a_few_queries(client, org, member):
    big = make_pool(nodes=110, per_node=8, code="BIG-H100")
    devices = list(Device.objects.filter(node__pool=big).order_by("pk"))
    for day in range(7):  # a busy week: 40 bookings of 8 devices
        for k in range(6):
            start = aware(2026, 12, 7 + day, 3 * k)
            chunk = devices[(day * 6 + k) * 8 % 880 :][:8]
            hold(org, member, big, start, start + dt.timedelta(hours=5), devices=chunk)
    client.force_login(member)
    client.get("/resources/BIG-H100/", {"week": "2026-12-07"})  # warm the template cache

    with CaptureQueriesContext(connection) as ctx:
        began = time.perf_counter()
        response = client.get("/resources/BIG-H100/", {"week": "2026-12-07"})
        elapsed = time.perf_counter() - began
    assert response.status_code == 200
    print(
        f"\nresource page, 880-device pool, busy week: {elapsed * 1000:.0f} ms, {len(ctx)} queries"
    )
    # session, user, 2 resource lookups, node shapes, memberships, discount rules, maintenance,
    # devices, allocations, node maintenance
    assert len(ctx) == 11
    assert "시간대별 빈 장치 수 (모두 880개)" in response.content.decode()
