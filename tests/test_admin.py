"""The admin: every registered model's pages render, and the catalogue's import/export works.

The page test walks `admin.site._registry`, so a model registered later is covered without
touching this file; it fails (saying which) when the fixture has no row to open.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets, quote
from django.contrib.auth.models import Group
from django.core import checks
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from booking.models import (
    Allocation,
    ApiKey,
    Booking,
    BookingUsage,
    ContestedRound,
    DailyUsage,
    DiscountRule,
    IdempotencyRecord,
    Invitation,
    Qualification,
    QuotaGrant,
    QuotaLedgerEntry,
    TelemetrySample,
)
from equipment.admin import EquipmentTypeResource, EquipmentUnitResource
from equipment.models import Device, EquipmentType, EquipmentUnit, MaintenanceWindow
from testbed.api.auth import token_for
from testbed.audit import audit_record
from tests.factories import (
    CenterFactory,
    EquipmentTypeFactory,
    EquipmentUnitFactory,
    OrganizationFactory,
    UserFactory,
    add_member,
    aware,
    make_pool,
)

OUR_APPS = ("testbed", "equipment", "booking", "seeds")
KEY_HASH = "pbkdf2_sha256$never-shown$c2VjcmV0LWhhc2g"


def build_catalogue(tag: str) -> dict:
    """One row of every model of ours (two equipment types, a pool with a partition)."""
    center = CenterFactory(
        code=f"gj-health-{tag}",
        name=f"광주 헬스케어 실증센터 {tag}",
        name_en=f"Gwangju Healthcare {tag}",
    )
    mri = EquipmentTypeFactory(
        code=f"MRI-{tag}",
        name=f"자기공명영상장치 {tag}",
        name_en=f"MRI scanner {tag}",
        center=center,
        phase=1,
    )
    ct = EquipmentTypeFactory(
        code=f"CT-{tag}",
        name=f"전산화단층촬영기 {tag}",
        name_en=f"CT scanner {tag}",
        center=center,
        phase=2,
        requires_approval=True,
    )
    unit = EquipmentUnitFactory(equipment_type=mri, code=f"MRI-{tag}-U1")
    pool = make_pool(nodes=1, per_node=2, code=f"H100-{tag}")
    node = pool.nodes.get()
    card = node.devices.order_by("index").first()
    Device.objects.create(node=node, index=9, parent=card, profile="1g.10gb")
    start, end = aware(2026, 5, 4, 10), aware(2026, 5, 4, 12)
    window = MaintenanceWindow.objects.create(
        equipment_type=ct, start=aware(2026, 5, 5, 9), end=aware(2026, 5, 5, 18), reason="정기 점검"
    )

    org = OrganizationFactory(
        slug=f"acme-{tag}", name=f"주식회사 에이크미 {tag}", business_number=""
    )
    user = UserFactory(username=f"booker-{tag}")
    add_member(org, user, "manager")
    DiscountRule.objects.create(name=f"광주 소재 기업 {tag}", region="gwangju", percent=50)
    Qualification.objects.create(user=user, equipment_type=mri, valid_until=dt.date(2026, 12, 31))
    ApiKey.objects.create(
        organization=org,
        name="CI",
        prefix=f"tbk_{tag}",
        key_hash=f"{KEY_HASH}{tag}",
        scopes=["read"],
        created_by=user,
    )
    Invitation.objects.create(
        organization=org, user=UserFactory(username=f"invitee-{tag}"), invited_by=user
    )
    booking = Booking.objects.create(
        organization=org,
        user=user,
        equipment_type=mri,
        start=start,
        end=end,
        status="confirmed",
        affected_by_maintenance=window,
    )
    Allocation.objects.create(booking=booking, unit=unit, start=start, end=end)
    pool_booking = Booking.objects.create(
        organization=org, user=user, pool=pool, quantity=1, start=start, end=end, status="confirmed"
    )
    Allocation.objects.create(booking=pool_booking, device=card, node=node, start=start, end=end)
    grant = QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 1, 1),
        period_end=dt.date(2026, 12, 31),
        limit_hours=100,
    )
    QuotaLedgerEntry.objects.create(grant=grant, booking=booking, kind="hold", hours=2, actor=user)
    IdempotencyRecord.objects.create(
        user=user,
        key=f"idem-{tag}",
        endpoint="bookings",
        request_hash="0" * 64,
        object_id=booking.pk,
    )
    TelemetrySample.objects.create(
        device=card,
        node=node,
        booking=pool_booking,
        at=aware(2026, 5, 4, 10, 5),
        utilization_pct=87.5,
    )
    BookingUsage.objects.create(booking=pool_booking, booked_unit_hours=2, used_unit_hours=2)
    DailyUsage.objects.create(
        organization=org,
        resource_code=pool.code,
        resource_kind="pool",
        center_code=pool.center.code,
        day=dt.date(2026, 5, 4),
        bookings=1,
    )
    ContestedRound.objects.create(
        pool=pool,
        window_start=aware(2026, 6, 1),
        window_end=aware(2026, 6, 8),
        cutoff_at=aware(2026, 5, 25),
    )
    audit_record(
        actor=user,
        channel="admin",
        action="booking.confirm",
        obj=booking,
        from_state="pending",
        to_state="confirmed",
    )
    return {
        "center": center,
        "mri": mri,
        "ct": ct,
        "unit": unit,
        "pool": pool,
        "org": org,
        "booking": booking,
    }


def build_third_party_rows(user) -> None:
    """Rows for the admins other apps register, so their change pages are opened too."""
    Group.objects.create(name="operators")
    token_for(user)
    every_hour = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    PeriodicTask.objects.create(name="ping", task="testbed.ping", interval=every_hour, args='["x"]')
    CrontabSchedule.objects.create(minute="0", hour="3")
    SolarSchedule.objects.create(event="sunrise", latitude=35.16, longitude=126.85)
    ClockedSchedule.objects.create(clocked_time=aware(2026, 6, 1, 9))
    # integrations.slurm: a Slurm-backed pool, a node name and an account (after build_catalogue).
    from booking.models import Organization
    from equipment.models import AcceleratorPool, Node
    from integrations.slurm.models import SlurmAccount, SlurmCluster, SlurmNode

    SlurmCluster.objects.create(pool=AcceleratorPool.objects.order_by("pk").first())
    SlurmNode.objects.create(node=Node.objects.order_by("pk").first(), slurm_name="gpu01")
    org = Organization.objects.order_by("pk").first()
    SlurmAccount.objects.create(organization=org, account="acme")
    # integrations.webhooks: an endpoint with one delivery and its attempt (the inline log).
    from integrations.calendars.models import CalendarFeed
    from integrations.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

    endpoint = WebhookEndpoint.objects.create(
        organization=org,
        url="https://hooks.example.kr/testbed",
        event_types=["booking.confirmed"],
        secret="whsec_never-shown",
    )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id="evt_1", event_type="booking.confirmed", body="{}"
    )
    WebhookAttempt.objects.create(
        delivery=delivery, number=1, at=aware(2026, 5, 4, 10), response_status=500
    )
    # integrations.calendars: a personal feed (only the token's hash is kept).
    CalendarFeed.objects.create(
        owner=user, scope="user", token_prefix="abcd1234", token_hash="0" * 64
    )


@pytest.fixture
def catalogue(db, admin_user):
    rows = build_catalogue("a")
    build_third_party_rows(admin_user)
    return rows


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def registered():
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


@pytest.fixture
def superuser_request(rf, admin_user):
    request = rf.get("/admin/")
    request.user = admin_user
    return request


def test_it_passes_the_admin_system_checks(db):
    errors = [e for e in checks.run_checks(tags=[checks.Tags.admin]) if e.level >= checks.ERROR]
    assert errors == []


def test_it_registers_every_model_of_ours():
    ours = {m for m in apps.get_models() if m._meta.app_label in OUR_APPS}
    missing = sorted(m._meta.label for m in ours - set(admin.site._registry))
    assert missing == [], f"register these in their app's admin.py: {missing}"


@pytest.mark.parametrize("model", [m for m, _ in registered()], ids=lambda m: m._meta.label)
def test_it_renders_the_changelist_add_and_change_pages(
    admin_client, catalogue, superuser_request, model
):
    model_admin = admin.site._registry[model]

    response = admin_client.get(admin_url(model, "changelist"))
    assert response.status_code == 200
    for term in ("1", "자기공명 a", "no-such-thing"):
        response = admin_client.get(admin_url(model, "changelist"), {"q": term})
        assert response.status_code == 200, f"search for {term!r}"

    if model_admin.has_add_permission(superuser_request):
        assert admin_client.get(admin_url(model, "add")).status_code == 200
    else:
        assert admin_client.get(admin_url(model, "add")).status_code == 403

    obj = model_admin.get_queryset(superuser_request).first()
    assert obj is not None, (
        f"add a {model._meta.label} row to build_catalogue/build_third_party_rows"
    )
    response = admin_client.get(admin_url(model, "change", quote(obj.pk)))
    assert response.status_code == 200


def test_it_shows_every_editable_field_on_the_forms(db, superuser_request):
    """Explicit fields/fieldsets must not silently hide a field added to a model later."""
    hidden_on_purpose = {"booking.ApiKey": {"key_hash"}}
    for model, model_admin in registered():
        if model._meta.app_label not in OUR_APPS:
            continue
        if not model_admin.has_change_permission(superuser_request):
            continue
        shown = set(flatten_fieldsets(model_admin.get_fieldsets(superuser_request)))
        editable = {f.name for f in model._meta.concrete_fields if f.editable and not f.primary_key}
        missing = editable - shown - hidden_on_purpose.get(model._meta.label, set())
        assert not missing, f"{model._meta.label} admin does not show {sorted(missing)}"


def test_it_keeps_changelist_queries_flat_as_rows_grow(admin_client, catalogue):
    """Twice the rows must not mean more queries (no N+1 in any list of ours)."""

    def counts() -> dict[str, int]:
        found = {}
        for model, _ in registered():
            if model._meta.app_label not in OUR_APPS:
                continue
            with CaptureQueriesContext(connection) as ctx:
                assert admin_client.get(admin_url(model, "changelist")).status_code == 200
            found[model._meta.label] = len(ctx.captured_queries)
        return found

    before = counts()
    build_catalogue("b")
    assert counts() == before


def test_it_finds_a_type_by_its_korean_name(admin_client, catalogue):
    response = admin_client.get(admin_url(EquipmentType, "changelist"), {"q": "자기공명"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "MRI-a" in page
    assert "CT-a" not in page


def test_it_filters_types_by_phase(admin_client, catalogue):
    response = admin_client.get(admin_url(EquipmentType, "changelist"), {"phase__exact": "2"})
    changelist = response.context["cl"]
    assert [t.code for t in changelist.result_list] == ["CT-a"]


def test_it_counts_units_per_type(admin_client, catalogue):
    EquipmentUnitFactory(equipment_type=catalogue["mri"], code="MRI-a-U2")
    response = admin_client.get(admin_url(EquipmentType, "changelist"))
    counts = {t.code: t.units_count for t in response.context["cl"].result_list}
    assert counts == {"CT-a": 0, "MRI-a": 2}


def test_it_filters_bookings_by_resource(admin_client, catalogue):
    response = admin_client.get(admin_url(Booking, "changelist"), {"resource": "H100-a"})
    assert [b.pool.code for b in response.context["cl"].result_list] == ["H100-a"]


def test_it_never_shows_an_api_key_hash(admin_client, catalogue):
    key = ApiKey.objects.get()
    for url in (admin_url(ApiKey, "changelist"), admin_url(ApiKey, "change", key.pk)):
        page = admin_client.get(url).content.decode()
        assert "never-shown" not in page
        assert "key_hash" not in page


def test_it_refuses_to_edit_read_only_records(admin_client, catalogue):
    booking = catalogue["booking"]
    response = admin_client.post(admin_url(Booking, "change", booking.pk), {"status": "cancelled"})
    assert response.status_code == 403
    assert (
        admin_client.post(admin_url(Booking, "delete", booking.pk), {"post": "yes"}).status_code
        == 403
    )
    booking.refresh_from_db()
    assert booking.status == "confirmed"
    entry = QuotaLedgerEntry.objects.get()
    assert (
        admin_client.post(
            admin_url(QuotaLedgerEntry, "change", entry.pk), {"hours": "0"}
        ).status_code
        == 403
    )


def test_it_exports_types_as_csv(admin_client, catalogue):
    model_admin = admin.site._registry[EquipmentType]
    formats = [f().get_title() for f in model_admin.get_export_formats()]
    data = {"format": str(formats.index("csv")), "resource": "0"}
    for column in EquipmentTypeResource().get_export_order():
        data[f"equipmenttyperesource_{column}"] = "on"

    response = admin_client.post(admin_url(EquipmentType, "export"), data)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode("utf-8-sig")
    header, *rows = text.strip().splitlines()
    assert header.split(",")[:4] == ["code", "name", "name_en", "center"]
    assert [row.split(",")[0] for row in rows] == ["CT-a", "MRI-a"]
    assert "gj-health-a" in rows[0]


def types_csv(center_code: str) -> bytes:
    lines = [
        "code,name,name_en,center,field,phase,slot_minutes,min_minutes,max_minutes",
        f"MRI-a,자기공명영상장치 3T,MRI scanner 3T,{center_code},healthcare,1,30,60,240",
        f"PET-01,양전자방출단층촬영기,PET scanner,{center_code},healthcare,2,60,60,480",
    ]
    return "\n".join(lines).encode()


def test_it_imports_types_from_csv_after_a_dry_run(admin_client, catalogue):
    model_admin = admin.site._registry[EquipmentType]
    formats = [f().get_title() for f in model_admin.get_import_formats()]
    upload = SimpleUploadedFile("types.csv", types_csv("gj-health-a"), content_type="text/csv")

    response = admin_client.post(
        admin_url(EquipmentType, "import"),
        {"format": str(formats.index("csv")), "resource": "0", "import_file": upload},
    )

    assert response.status_code == 200
    result = response.context["result"]
    assert not result.has_errors() and not result.has_validation_errors(), result.invalid_rows
    assert result.totals["update"] == 1 and result.totals["new"] == 1
    assert not EquipmentType.objects.filter(code="PET-01").exists(), "a dry run changes nothing"

    confirm = response.context["confirm_form"].initial
    response = admin_client.post(admin_url(EquipmentType, "process_import"), confirm)

    assert response.status_code == 302
    pet = EquipmentType.objects.get(code="PET-01")
    assert (pet.center.code, pet.phase, pet.slot_minutes) == ("gj-health-a", 2, 60)
    mri = EquipmentType.objects.get(code="MRI-a")
    assert (mri.name, mri.min_minutes) == ("자기공명영상장치 3T", 60)
    assert mri.units.count() == 1, "an update keeps the type's units"


def test_it_refuses_an_import_naming_an_unknown_centre(admin_client, catalogue):
    model_admin = admin.site._registry[EquipmentType]
    formats = [f().get_title() for f in model_admin.get_import_formats()]
    upload = SimpleUploadedFile("types.csv", types_csv("no-such-centre"), content_type="text/csv")

    response = admin_client.post(
        admin_url(EquipmentType, "import"),
        {"format": str(formats.index("csv")), "resource": "0", "import_file": upload},
    )

    assert response.status_code == 200
    assert "confirm_form" not in response.context
    assert not EquipmentType.objects.filter(code="PET-01").exists()
    assert EquipmentType.objects.get(code="MRI-a").name == "자기공명영상장치 a"


def test_it_refuses_an_imported_type_whose_code_a_pool_uses(catalogue):
    import tablib

    dataset = tablib.Dataset(headers=["code", "name", "name_en", "center", "field", "phase"])
    dataset.append(["H100-a", "가짜", "Fake", "gj-health-a", "healthcare", "1"])

    result = EquipmentTypeResource().import_data(dataset, dry_run=False)

    assert result.has_validation_errors()
    assert not EquipmentType.objects.filter(code="H100-a").exists()


def test_it_round_trips_units_keyed_on_code(catalogue):
    exported = EquipmentUnitResource().export().csv
    assert re.search(r"^MRI-a-U1,MRI-a,", exported, flags=re.MULTILINE)

    import tablib

    dataset = tablib.Dataset(headers=["code", "equipment_type", "serial", "status"])
    dataset.append(["MRI-a-U1", "MRI-a", "SN-123", "maintenance"])
    dataset.append(["CT-a-U1", "CT-a", "SN-456", "active"])

    result = EquipmentUnitResource().import_data(dataset, dry_run=False)

    assert not result.has_errors() and not result.has_validation_errors()
    assert EquipmentUnit.objects.get(code="MRI-a-U1").status == "maintenance"
    assert EquipmentUnit.objects.get(code="CT-a-U1").equipment_type.code == "CT-a"
