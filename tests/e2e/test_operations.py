"""The operators' console in a real browser: an operator approves a request the real worker put
in the approval queue, then plans maintenance over it (the preview shows the booking, saving marks
it affected); a member cannot open the console. Korean, desktop and phone, axe-checked."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from django.utils import timezone

from booking.models import Booking
from booking.services.bookings import booking_request
from equipment.models import MaintenanceWindow
from tests.e2e.conftest import DESKTOP, PHONE, assert_accessible, sign_in
from tests.factories import (
    EquipmentTypeFactory,
    EquipmentUnitFactory,
    OrganizationFactory,
    UserFactory,
    add_member,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.browser,
    pytest.mark.postgres,
    pytest.mark.redis,
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot(page, name: str) -> None:
    if os.environ.get("TESTBED_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def drained(celery_worker):
    """The worker finishes its tasks before the test's tables are flushed."""
    yield celery_worker
    celery_worker.drain()


@pytest.fixture
def facility(db):
    org = OrganizationFactory(slug="hanbit", name="주식회사 한빛의료")
    member = UserFactory(username="kim", first_name="지수", last_name="김")
    add_member(org, member, "member")
    operator = UserFactory(username="ops", is_staff=True)
    mri = EquipmentTypeFactory(
        code="HC-MRI", name="3T MRI", name_en="3T MRI", requires_approval=True
    )
    EquipmentUnitFactory(equipment_type=mri, code="HC-MRI-01")
    return {"org": org, "member": member, "operator": operator, "mri": mri}


def history(facility, days: int = 10) -> None:
    """Past use for the heatmap: a few completed and no-show MRI bookings and GPU sessions."""
    from booking.models import Allocation
    from tests.factories import make_pool

    pool = make_pool(code="GPU-H100", nodes=1, per_node=8, name="H100 풀", name_en="H100 pool")
    devices = list(pool.nodes.get().devices.order_by("index"))
    unit = facility["mri"].units.get()
    today = timezone.localdate()
    for back in range(1, days + 1):
        day = today - dt.timedelta(days=back)
        start = timezone.make_aware(dt.datetime.combine(day, dt.time(9)))
        hours = 2 + back % 5
        status = "no_show" if back % 4 == 0 else "completed"
        mri = Booking.objects.create(
            organization=facility["org"], user=facility["member"], equipment_type=facility["mri"],
            start=start, end=start + dt.timedelta(hours=hours), status=status,
            actual_start=None if status == "no_show" else start,
            actual_end=None if status == "no_show" else start + dt.timedelta(hours=hours - 1),
        )  # fmt: skip
        Allocation.objects.create(booking=mri, unit=unit, start=mri.start, end=mri.end)
        gpu = Booking.objects.create(
            organization=facility["org"], user=facility["member"], pool=pool, quantity=4,
            start=start, end=start + dt.timedelta(hours=4 * (back % 3 + 1)), status="completed",
            actual_start=start, actual_end=start + dt.timedelta(hours=3 * (back % 3 + 1)),
        )  # fmt: skip
        for device in devices[:4]:
            Allocation.objects.create(
                booking=gpu, device=device, node=device.node, start=gpu.start, end=gpu.end
            )


def wait_for_status(booking_id: int, status: str, timeout: float = 30) -> Booking:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        booking = Booking.objects.get(pk=booking_id)
        if booking.status == status:
            return booking
        time.sleep(0.1)
    raise AssertionError(f"booking {booking_id} is {booking.status}, not {status}")


def test_an_operator_approves_a_request_and_plans_maintenance_over_it(facility, drained, new_page):
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    start = timezone.make_aware(dt.datetime.combine(tomorrow, dt.time(10)))
    request = booking_request(
        actor=facility["member"],
        organization=facility["org"],
        resource_code="HC-MRI",
        quantity=1,
        start=start,
        end=start + dt.timedelta(hours=2),
        purpose="뇌 영상 데이터 수집",
    )
    wait_for_status(request.pk, "awaiting_approval")  # decided by the real worker

    history(facility)
    page = new_page(viewport=DESKTOP)
    sign_in(page, "ops")
    page.goto("/operations/")
    row = page.locator(f"#queue-{request.pk}")
    assert "주식회사 한빛의료" in row.inner_text()
    assert_accessible(page, context="operations (ko, desktop)")
    page.wait_for_selector("#utilisation-body table.heatmap")  # loaded by htmx after the page
    assert_accessible(page, context="operations with heatmap (ko, desktop)")
    screenshot(page, "operations-ko-desktop")

    row.get_by_role("button", name="승인").click()
    page.wait_for_selector(f"#queue-{request.pk} [role=status]")
    assert "승인했습니다" in page.locator(f"#queue-{request.pk}").inner_text()
    assert Booking.objects.get(pk=request.pk).status == "confirmed"

    # Plan maintenance over the now confirmed booking: preview first, then save.
    page.fill("#id_resource", "HC-MRI")
    page.fill("#id_start", f"{tomorrow:%Y-%m-%d}T09:00")
    page.fill("#id_end", f"{tomorrow:%Y-%m-%d}T13:00")
    page.fill("#id_reason", "코일 교체")
    page.get_by_role("button", name="영향 미리보기").click()
    preview = page.locator(".ops-preview")
    preview.wait_for()
    assert f"#{request.pk}" in preview.inner_text()
    assert not MaintenanceWindow.objects.exists()  # a preview saves nothing
    assert_accessible(page, context="operations maintenance preview (ko)")

    page.get_by_role("button", name="점검 저장").click()
    page.wait_for_selector(".ops-saved")
    window = MaintenanceWindow.objects.get()
    saved = page.locator(f"#window-{window.pk}")
    assert "코일 교체" in saved.inner_text() and f"#{request.pk}" in saved.inner_text()
    assert Booking.objects.get(pk=request.pk).affected_by_maintenance_id == window.pk


def test_the_console_works_on_a_phone_and_names_the_field_at_fault(facility, new_page):
    history(facility)
    start = timezone.make_aware(
        dt.datetime.combine(timezone.localdate() + dt.timedelta(days=2), dt.time(14))
    )
    waiting = Booking.objects.create(
        organization=facility["org"], user=facility["member"], equipment_type=facility["mri"],
        start=start, end=start + dt.timedelta(hours=3), status="awaiting_approval",
    )  # fmt: skip
    page = new_page(viewport=PHONE)
    sign_in(page, "ops")
    page.goto("/operations/")
    assert page.locator("main h1").is_visible()
    assert page.locator(f"#queue-{waiting.pk}").is_visible()
    page.wait_for_selector("#utilisation-body table.heatmap")
    assert (
        page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    )  # no sideways page
    assert_accessible(page, context="operations (ko, phone)")
    screenshot(page, "operations-ko-phone")
    # A refusal names the field: an unknown resource code.
    page.fill("#id_resource", "NO-SUCH")
    page.fill("#id_start", "2026-12-09T09:00")
    page.fill("#id_end", "2026-12-09T12:00")
    page.get_by_role("button", name="영향 미리보기").click()
    error = page.locator("#id_resource-error")
    error.wait_for()
    assert page.locator("#id_resource").get_attribute("aria-invalid") == "true"
    assert not MaintenanceWindow.objects.exists()

    page.goto("/operations/utilisation/")
    assert_accessible(page, context="operations utilisation (ko, phone)")
    screenshot(page, "operations-utilisation-ko-phone")


def test_the_utilisation_heatmap_on_a_desktop(facility, new_page):
    history(facility)
    page = new_page(viewport=DESKTOP)
    sign_in(page, "ops")
    page.goto("/operations/utilisation/")
    assert page.locator("main h1").inner_text() == "자원별 이용률"
    heatmap = page.locator("table.heatmap")
    assert heatmap.locator("th[scope=row]").count() == 2  # HC-MRI and GPU-H100
    assert "%" in heatmap.locator("td.heat").first.inner_text()  # the number, not colour alone
    assert_accessible(page, context="operations utilisation (ko, desktop)")
    screenshot(page, "operations-utilisation-ko-desktop")


def test_a_member_cannot_open_the_console(facility, new_page):
    page = new_page(viewport=DESKTOP)
    sign_in(page, "kim")
    response = page.goto("/operations/")
    assert response.status == 403
    assert "운영자 전용" in page.locator("main h1").inner_text()
    assert page.locator("nav a[href='/operations/']").count() == 0
    assert_accessible(page, context="operations forbidden (ko)")
