"""The operators' console: who may open it, approvals, today's desk, idle reclaim, maintenance
planning with its preview, the utilisation heatmap and quota grants — through the test client."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from booking.models import Allocation, Booking, QuotaGrant, QuotaLedgerEntry
from booking.services.maintenance import maintenance_preview
from equipment.models import Device, MaintenanceWindow
from testbed.models import AuditEntry
from tests.factories import (
    EquipmentTypeFactory,
    EquipmentUnitFactory,
    UserFactory,
    aware,
    make_pool,
)

pytestmark = pytest.mark.django_db

NOW = aware(2026, 12, 7, 9, 0)  # a Monday, 09:00 in Seoul
CONSOLE = "/operations/"


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


def client_as(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def lab(db):
    etype = EquipmentTypeFactory(code="HC-MRI", requires_approval=True)
    EquipmentUnitFactory(equipment_type=etype, code="HC-MRI-01")
    EquipmentUnitFactory(equipment_type=etype, code="HC-MRI-02")
    return etype


@pytest.fixture
def gpus(db):
    return make_pool(code="GPU-H100", nodes=1, per_node=8)


def booking(org, user, resource, start, *, hours=2, status="confirmed", unit=None, **fields):
    is_pool = not hasattr(resource, "units")
    made = Booking.objects.create(
        organization=org,
        user=user,
        equipment_type=None if is_pool else resource,
        pool=resource if is_pool else None,
        start=start,
        end=start + dt.timedelta(hours=hours),
        status=status,
        **fields,
    )
    overlapping = Allocation.objects.filter(active=True, start__lt=made.end, end__gt=made.start)
    if is_pool:
        device = (
            Device.objects.filter(node__pool=resource)
            .exclude(pk__in=overlapping.values("device_id"))
            .order_by("pk")
            .first()
        )
        Allocation.objects.create(
            booking=made, device=device, node=device.node, start=made.start, end=made.end
        )
    else:
        unit = (
            unit
            or resource.units.exclude(pk__in=overlapping.values("unit_id")).order_by("pk").first()
        )
        Allocation.objects.create(booking=made, unit=unit, start=made.start, end=made.end)
    return made


# --- who may open it ------------------------------------------------------------------------------


def test_it_sends_anonymous_people_to_sign_in():
    response = client_as(None).get(CONSOLE)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/operations/")


@pytest.mark.parametrize("persona", ["member", "manager", "outsider"])
def test_it_shows_non_operators_a_clear_403(request, persona):
    user = request.getfixturevalue(persona)
    response = client_as(user).get(CONSOLE)
    assert response.status_code == 403
    assert "운영자 전용" in response.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/operations/bookings/{id}/approve/",
        "/operations/bookings/{id}/reject/",
        "/operations/bookings/{id}/reclaim/",
        "/operations/maintenance/",
    ],
)
def test_non_operators_cannot_post_and_nothing_changes(manager, org, lab, path):
    pending = booking(org, manager, lab, NOW + dt.timedelta(days=2), status="awaiting_approval")
    response = client_as(manager).post(
        path.format(id=pending.pk),
        {
            "reason": "x",
            "resource": "HC-MRI",
            "start": "2026-12-09T09:00",
            "end": "2026-12-09T12:00",
            "action": "save",
        },
    )
    assert response.status_code == 403
    assert Booking.objects.get(pk=pending.pk).status == "awaiting_approval"
    assert not MaintenanceWindow.objects.exists()


def test_a_staff_api_key_account_is_not_an_operator_here():
    staff_but_inactive = UserFactory(is_staff=True, is_active=False)
    assert client_as(staff_but_inactive).get(CONSOLE).status_code in (302, 403)


def test_the_console_opens_for_an_operator_with_every_section(operator):
    response = client_as(operator).get(CONSOLE)
    assert response.status_code == 200
    html = response.content.decode()
    for anchor in ("queue", "today", "idle", "maintenance", "utilisation", "quotas"):
        assert f'id="{anchor}"' in html
    assert "<script>" not in html and "onclick" not in html and "hx-on" not in html


# --- approval queue -------------------------------------------------------------------------------


def test_the_queue_lists_requests_oldest_first(operator, org, member, lab):
    later = booking(org, member, lab, NOW + dt.timedelta(days=3), status="awaiting_approval")
    earlier = booking(org, member, lab, NOW + dt.timedelta(days=4), status="awaiting_approval")
    Booking.objects.filter(pk=later.pk).update(created_at=NOW - dt.timedelta(hours=1))
    Booking.objects.filter(pk=earlier.pk).update(created_at=NOW - dt.timedelta(hours=5))
    booking(org, member, lab, NOW + dt.timedelta(days=5), status="confirmed")
    html = client_as(operator).get(CONSOLE).content.decode()
    rows = re.findall(r'<tr id="queue-(\d+)"', html)
    assert rows == [str(earlier.pk), str(later.pk)]


def test_approve_confirms_the_booking_with_an_audit_entry_from_the_web(operator, org, member, lab):
    pending = booking(org, member, lab, NOW + dt.timedelta(days=2), status="awaiting_approval")
    response = client_as(operator).post(f"/operations/bookings/{pending.pk}/approve/")
    assert response.status_code == 302 and response["Location"].endswith("#queue")
    assert Booking.objects.get(pk=pending.pk).status == "confirmed"
    entry = AuditEntry.objects.filter(action="booking.approve").get()
    assert entry.channel == "web" and entry.actor_id == operator.pk


def test_approve_over_htmx_answers_the_row(operator, org, member, lab):
    pending = booking(org, member, lab, NOW + dt.timedelta(days=2), status="awaiting_approval")
    response = client_as(operator).post(
        f"/operations/bookings/{pending.pk}/approve/", HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<tr id="queue-{pending.pk}"')
    assert 'role="status"' in html and "<html" not in html


def test_approving_twice_says_why_and_changes_nothing(operator, org, member, lab):
    done = booking(org, member, lab, NOW + dt.timedelta(days=2), status="confirmed")
    response = client_as(operator).post(
        f"/operations/bookings/{done.pk}/approve/", HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200  # htmx swaps only 2xx: the refusal is in the row
    html = response.content.decode()
    assert 'role="alert"' in html and "cannot be approved" in html
    assert not AuditEntry.objects.filter(action="booking.approve").exists()


def test_reject_needs_a_reason_naming_the_field_and_changes_nothing(operator, org, member, lab):
    pending = booking(org, member, lab, NOW + dt.timedelta(days=2), status="awaiting_approval")
    response = client_as(operator).post(
        f"/operations/bookings/{pending.pk}/reject/", {"reason": "  "}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert f'id="reason-{pending.pk}-error"' in html and "`reason`" in html
    assert f'aria-describedby="reason-{pending.pk}-error"' in html
    assert Booking.objects.get(pk=pending.pk).status == "awaiting_approval"


def test_reject_with_a_reason_tells_the_booker(operator, org, member, lab):
    pending = booking(org, member, lab, NOW + dt.timedelta(days=2), status="awaiting_approval")
    response = client_as(operator).post(
        f"/operations/bookings/{pending.pk}/reject/",
        {"reason": "장비 교정 중"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    rejected = Booking.objects.get(pk=pending.pk)
    assert rejected.status == "rejected" and rejected.rejection_detail == "장비 교정 중"
    assert AuditEntry.objects.get(action="booking.reject").channel == "web"


def test_an_unknown_booking_answers_404(operator):
    assert client_as(operator).post("/operations/bookings/999999/approve/").status_code == 404


def test_the_actions_refuse_get(operator, org, member, lab):
    pending = booking(org, member, lab, NOW + dt.timedelta(days=2), status="awaiting_approval")
    assert client_as(operator).get(f"/operations/bookings/{pending.pk}/approve/").status_code == 405
    assert Booking.objects.get(pk=pending.pk).status == "awaiting_approval"


# --- today ----------------------------------------------------------------------------------------


def test_today_lists_check_ins_check_outs_and_no_shows(operator, org, member, lab, gpus):
    check_in = booking(org, member, lab, aware(2026, 12, 7, 14))
    tomorrow = booking(org, member, lab, aware(2026, 12, 8, 10))
    in_use = booking(
        org, member, lab, aware(2026, 12, 7, 8), status="active", unit=lab.units.last()
    )
    no_show = booking(org, member, lab, aware(2026, 12, 7, 6), status="no_show")
    yesterday_no_show = booking(org, member, lab, aware(2026, 12, 6, 10), status="no_show")
    html = client_as(operator).get(CONSOLE).content.decode()
    today = html.split('id="today"')[1].split('id="idle"')[0]
    checkins, rest = today.split('id="checkouts-h"')
    checkouts, noshows = rest.split('id="noshows-h"')
    assert f"/bookings/{check_in.pk}/" in checkins and f"/bookings/{tomorrow.pk}/" not in today
    assert "HC-MRI-01" in checkins  # the unit to hand over
    assert f"/bookings/{in_use.pk}/" in checkouts
    assert (
        f"/bookings/{no_show.pk}/" in noshows and f"/bookings/{yesterday_no_show.pk}/" not in today
    )


# --- idle accelerators ----------------------------------------------------------------------------


def test_idle_flagged_bookings_can_be_reclaimed(operator, org, member, gpus):
    idle = booking(
        org, member, gpus, aware(2026, 12, 7, 6), hours=8, status="active",
        actual_start=aware(2026, 12, 7, 6), idle_flagged_at=aware(2026, 12, 7, 8),
    )  # fmt: skip
    busy = booking(org, member, gpus, aware(2026, 12, 7, 6), hours=8, status="active")
    client = client_as(operator)
    html = client.get(CONSOLE).content.decode()
    idle_section = html.split('id="idle"')[1].split('id="maintenance"')[0]
    assert f'id="idle-{idle.pk}"' in idle_section and f'id="idle-{busy.pk}"' not in idle_section
    response = client.post(f"/operations/bookings/{idle.pk}/reclaim/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'role="status"' in response.content.decode()
    reclaimed = Booking.objects.get(pk=idle.pk)
    assert reclaimed.status == "completed" and reclaimed.reclaimed_at == NOW
    entry = AuditEntry.objects.get(action="booking.reclaim")
    assert entry.channel == "web" and entry.actor_id == operator.pk


def test_reclaiming_a_booking_no_longer_flagged_is_refused(operator, org, member, gpus):
    busy = booking(org, member, gpus, aware(2026, 12, 7, 6), hours=8, status="active")
    response = client_as(operator).post(f"/operations/bookings/{busy.pk}/reclaim/")
    assert response.status_code == 400
    assert "nothing to reclaim" in response.content.decode()
    assert Booking.objects.get(pk=busy.pk).status == "active"


# --- maintenance planning -------------------------------------------------------------------------


def test_the_preview_selector_matches_what_create_marks(operator, org, member, lab, gpus):
    hit = booking(org, member, lab, aware(2026, 12, 9, 10))
    booking(org, member, lab, aware(2026, 12, 9, 14))  # after the window
    booking(org, member, lab, aware(2026, 12, 9, 10), status="cancelled", unit=lab.units.last())
    preview = maintenance_preview(
        target=lab, start=aware(2026, 12, 9, 9), end=aware(2026, 12, 9, 12)
    )
    assert [b.pk for b in preview] == [hit.pk]
    assert not MaintenanceWindow.objects.exists()


def maintenance_post(client, **fields):
    data = {
        "resource": "HC-MRI",
        "start": "2026-12-09T09:00",
        "end": "2026-12-09T12:00",
        "reason": "정기 점검",
    }
    data.update(fields)
    return client.post("/operations/maintenance/", data)


def test_preview_lists_affected_bookings_and_saves_nothing(operator, org, member, lab):
    hit = booking(org, member, lab, aware(2026, 12, 9, 10))
    response = maintenance_post(client_as(operator), action="preview")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"/bookings/{hit.pk}/" in html.split('class="ops-preview"')[1]
    assert 'name="action" value="save"' in html
    assert not MaintenanceWindow.objects.exists()
    assert Booking.objects.get(pk=hit.pk).affected_by_maintenance is None


def test_save_without_a_preview_of_these_values_previews_first(operator, org, member, lab):
    booking(org, member, lab, aware(2026, 12, 9, 10))
    response = maintenance_post(client_as(operator), action="save", previewed="HC-MRI|stale|values")
    assert response.status_code == 200 and 'class="ops-preview"' in response.content.decode()
    assert not MaintenanceWindow.objects.exists()


def test_save_after_preview_creates_the_window_and_marks_the_booking(operator, org, member, lab):
    hit = booking(org, member, lab, aware(2026, 12, 9, 10))
    client = client_as(operator)
    preview = maintenance_post(client, action="preview").content.decode()
    signature = re.search(r'name="previewed" value="([^"]+)"', preview).group(1)
    response = maintenance_post(client, action="save", previewed=signature.replace("&#x2B;", "+"))
    assert response.status_code == 302 and response["Location"].endswith("#maintenance")
    window = MaintenanceWindow.objects.get()
    assert window.equipment_type == lab and window.start == aware(2026, 12, 9, 9)
    assert Booking.objects.get(pk=hit.pk).affected_by_maintenance == window
    assert AuditEntry.objects.get(action="maintenance.create").channel == "web"
    html = client.get(CONSOLE).content.decode()
    upcoming = html.split('id="upcoming-h"')[1]
    assert f'id="window-{window.pk}"' in upcoming and f"/bookings/{hit.pk}/" in upcoming


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"resource": "NO-SUCH"}, "resource"),
        ({"resource": ""}, "resource"),
        ({"start": "next tuesday"}, "start"),
        ({"end": "2026-12-09T08:00"}, "end"),
        ({"end": "2028-12-09T08:00"}, "end"),
        (
            {
                "reason": "  ",
                "action": "save",
                "previewed": "HC-MRI|2026-12-09T09:00:00+09:00|2026-12-09T12:00:00+09:00",
            },
            "reason",
        ),
    ],
)
def test_bad_maintenance_input_names_the_field_and_saves_nothing(
    operator, org, member, lab, fields, field
):
    hit = booking(org, member, lab, aware(2026, 12, 9, 10))
    response = maintenance_post(client_as(operator), **{"action": "preview", **fields})
    assert response.status_code == 400
    html = response.content.decode()
    assert f'id="id_{field}-error"' in html and f'aria-describedby="id_{field}-error"' in html
    assert not MaintenanceWindow.objects.exists()
    assert Booking.objects.get(pk=hit.pk).affected_by_maintenance is None


def test_maintenance_over_htmx_answers_the_section(operator, lab):
    response = client_as(operator).post(
        "/operations/maintenance/",
        {"resource": "NO-SUCH", "start": "2026-12-09T09:00", "end": "2026-12-09T12:00"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 200 and html.startswith('<section id="maintenance"')
    assert 'role="alert"' in html


def test_upcoming_windows_cover_four_weeks_grouped_by_day(operator, lab):
    soon = MaintenanceWindow.objects.create(
        equipment_type=lab, start=aware(2026, 12, 10, 9), end=aware(2026, 12, 10, 12), reason="교정"
    )
    far = MaintenanceWindow.objects.create(
        equipment_type=lab,
        start=aware(2027, 1, 20, 9),
        end=aware(2027, 1, 20, 12),
        reason="먼 훗날",
    )
    past = MaintenanceWindow.objects.create(
        equipment_type=lab, start=aware(2026, 12, 1, 9), end=aware(2026, 12, 1, 12), reason="지난"
    )
    html = client_as(operator).get(CONSOLE).content.decode()
    assert f'id="window-{soon.pk}"' in html and "2026년 12월 10일 (목)" in html
    assert f'id="window-{far.pk}"' not in html and f'id="window-{past.pk}"' not in html


# --- utilisation heatmap --------------------------------------------------------------------------


def test_the_heatmap_shows_each_day_with_numbers_not_only_colour(operator, org, member, lab):
    booking(org, member, lab, aware(2026, 12, 2, 10), status="completed",
            actual_start=aware(2026, 12, 2, 10), actual_end=aware(2026, 12, 2, 11))  # fmt: skip
    response = client_as(operator).get("/operations/utilisation/?week=2026-12-03")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1" in html and "HC-MRI" in html
    assert html.count('<th scope="col"><time') == 7
    assert re.search(r'<td class="heat heat-[1-4]"><strong>\d+%</strong>', html)
    assert "2026-11-30" in html  # the week runs Monday to Sunday


def test_the_heatmap_defaults_to_the_last_14_days_and_answers_htmx_with_a_partial(operator):
    response = client_as(operator).get("/operations/utilisation/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert "2026-11-24" in html and "2026-12-07" in html


def test_a_bad_week_is_refused_naming_the_field(operator):
    response = client_as(operator).get("/operations/utilisation/?week=someday")
    assert response.status_code == 400
    assert 'id="id_week-error"' in response.content.decode()


def test_the_heatmap_is_closed_to_non_operators(member):
    assert client_as(member).get("/operations/utilisation/").status_code == 403


# --- quota grants ---------------------------------------------------------------------------------


def test_quota_grants_show_limit_used_and_remaining_with_an_admin_link(operator, org, other_org):
    grant = QuotaGrant.objects.create(
        organization=org, scope="*", period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31), limit_hours=Decimal("100"),
    )  # fmt: skip
    QuotaLedgerEntry.objects.create(grant=grant, kind="hold", hours=Decimal("12.5"))
    QuotaLedgerEntry.objects.create(grant=grant, kind="consume", hours=Decimal("7.5"))
    QuotaGrant.objects.create(
        organization=other_org, scope="HC-MRI", period_start=dt.date(2026, 1, 1),
        period_end=dt.date(2026, 11, 30), limit_hours=Decimal("10"),
    )  # fmt: skip  # ended: not listed
    html = client_as(operator).get(CONSOLE).content.decode()
    quotas = html.split('id="quotas"')[1]
    assert org.name in quotas and other_org.name not in quotas
    assert re.search(r">100\.0<.*>20\.0<.*>80\.0<", quotas, re.S)
    assert f"/admin/booking/quotagrant/{grant.pk}/change/" in quotas


# --- speed ----------------------------------------------------------------------------------------


def test_the_console_runs_a_handful_of_queries_however_many_rows(operator, org, member, lab, gpus):
    client = client_as(operator)
    client.get(CONSOLE)  # warm the session

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(CONSOLE).status_code == 200
        return len(queries)

    def add(day: int) -> None:
        booking(org, member, lab, NOW + dt.timedelta(days=day), status="awaiting_approval")
        booking(org, member, gpus, aware(2026, 12, 7, 6), hours=8, status="active",
                idle_flagged_at=aware(2026, 12, 7, 8))  # fmt: skip
        window = MaintenanceWindow.objects.create(
            equipment_type=lab,
            start=NOW + dt.timedelta(days=day),
            end=NOW + dt.timedelta(days=day, hours=1),
            reason="점검",
        )
        unit = EquipmentUnitFactory(equipment_type=lab)
        Booking.objects.filter(
            pk=booking(org, member, lab, aware(2026, 12, 7, 15), unit=unit).pk
        ).update(affected_by_maintenance=window)
        QuotaGrant.objects.create(
            organization=org,
            scope=f"S{day}",
            period_start=dt.date(2026, 12, 1),
            period_end=dt.date(2026, 12, 31),
            limit_hours=1,
        )

    add(2)
    few = count()
    for day in range(3, 9):
        add(day)
    many = count()
    assert many == few
    print("console queries:", many)
    assert many <= 12


def test_the_heatmap_costs_the_same_queries_whatever_the_bookings(operator, org, member, lab):
    client = client_as(operator)
    client.get("/operations/utilisation/?week=2026-11-30")

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            client.get("/operations/utilisation/?week=2026-11-30")
        return len(queries)

    few = count()
    for day in range(7):
        booking(
            org, member, lab, aware(2026, 11, 30, 10) + dt.timedelta(days=day), status="completed"
        )
    assert count() == few
    print("heatmap queries (one week):", few)


def test_the_console_speaks_english_when_asked(operator, org, member, lab):
    booking(org, member, lab, NOW + dt.timedelta(days=2), status="awaiting_approval")
    client = client_as(operator)
    client.cookies["django_language"] = "en"
    html = client.get(CONSOLE).content.decode()
    assert "Operations console" in html and "Awaiting approval" in html
    assert "Approve" in html
    assert "운영 콘솔" not in html


def test_a_reason_too_long_is_refused_naming_the_field(operator, org, member, lab):
    pending = booking(org, member, lab, NOW + dt.timedelta(days=2), status="awaiting_approval")
    response = client_as(operator).post(
        f"/operations/bookings/{pending.pk}/reject/", {"reason": "가" * 501}, HTTP_HX_REQUEST="true"
    )
    assert f'id="reason-{pending.pk}-error"' in response.content.decode()
    assert Booking.objects.get(pk=pending.pk).status == "awaiting_approval"
