"""Running the loader again: nothing changes, edits update rows in place, counts grow."""

from __future__ import annotations

import io
import uuid

import pytest
from django.core.management import call_command

from equipment.models import AcceleratorPool, Center, Device, EquipmentType, EquipmentUnit, Node
from seeds.loader import load_catalogue
from testbed.models import AuditEntry
from tests.seeds.conftest import edit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("catalogue")]

MODELS = (Center, EquipmentType, EquipmentUnit, AcceleratorPool, Node, Device)


def snapshot() -> dict[str, set[int]]:
    return {m.__name__: set(m.objects.values_list("pk", flat=True)) for m in MODELS}


def test_it_changes_nothing_on_a_second_run():
    before = snapshot()
    audits = AuditEntry.objects.count()

    result = load_catalogue()

    assert (result["created"], result["updated"]) == (0, 0)
    assert result["unchanged"] == sum(len(pks) for pks in before.values())
    assert snapshot() == before
    assert AuditEntry.objects.count() == audits


def test_it_updates_an_edited_name_in_place(data_copy):
    psg = EquipmentType.objects.get(code="HC-PSG")
    pool = AcceleratorPool.objects.get(code="NAIDC-T4")
    edit(
        data_copy / "equipment_types" / "healthcare.yaml",
        "name: 수면다원검사 시스템 (polysomnography)",
        "name: 수면다원검사 시스템 (PSG, 2실)",
    )
    edit(data_copy / "pools.yaml", "name: T4 GPU 풀 (국가 AI 데이터센터)", "name: T4 추론 풀")
    before = snapshot()

    result = load_catalogue(data_dir=data_copy)

    assert result["equipment_types"]["updated"] == 1
    assert result["pools"]["updated"] == 1
    assert (result["created"], result["updated"]) == (0, 2)
    assert snapshot() == before
    assert EquipmentType.objects.get(pk=psg.pk).name == "수면다원검사 시스템 (PSG, 2실)"
    assert AcceleratorPool.objects.get(pk=pool.pk).name == "T4 추론 풀"
    assert AuditEntry.objects.filter(action="seeds.catalogue_loaded").exists()


def test_it_updates_an_edited_policy_in_place(data_copy):
    edit(
        data_copy / "equipment_types" / "healthcare.yaml",
        "  max_minutes: 120\n",
        "  max_minutes: 90\n",
    )

    result = load_catalogue(data_dir=data_copy)

    # Every healthcare type that took max_minutes from the defaults is updated, and only those.
    changed = set(EquipmentType.objects.filter(max_minutes=90).values_list("code", flat=True))
    assert result["equipment_types"]["updated"] == len(changed) > 0
    assert "HC-EMG" in changed and "HC-PSG" not in changed


def test_it_adds_units_nodes_and_devices_when_counts_grow(data_copy):
    edit(
        data_copy / "equipment_types" / "automotive.yaml",
        "    max_minutes: 480\n    units_count: 3\n",
        "    max_minutes: 480\n    units_count: 4\n",
    )
    edit(data_copy / "pools.yaml", "    cards: 384\n", "    cards: 392\n")
    edit(
        data_copy / "pools.yaml",
        "{count: 48, devices_per_node: 8}",
        "{count: 49, devices_per_node: 8}",
    )

    result = load_catalogue(data_dir=data_copy)

    assert result["units"]["created"] == 1
    assert result["nodes"]["created"] == 1
    assert result["devices"]["created"] == 8
    assert result["updated"] == 0
    assert EquipmentUnit.objects.filter(code="AU-DAQ-04", equipment_type__code="AU-DAQ").exists()
    assert Device.objects.filter(node__hostname="naidc-t4-n049").count() == 8


def test_it_leaves_fields_the_files_do_not_manage_alone():
    node = Node.objects.get(hostname="naidc-h100-n003")
    node.status = "maintenance"
    node.save(update_fields=["status"])
    device = node.devices.get(index=0)
    real_uuid = uuid.uuid4()  # as a node agent would report it
    Device.objects.filter(pk=device.pk).update(uuid=real_uuid)

    result = load_catalogue()

    assert (result["created"], result["updated"]) == (0, 0)
    assert Node.objects.get(pk=node.pk).status == "maintenance"
    assert Device.objects.get(pk=device.pk).uuid == real_uuid


def test_it_prints_a_summary_from_the_command():
    out = io.StringIO()

    call_command("load_seeds", stdout=out)

    text = out.getvalue()
    assert "77 equipment types (38 phase 1)" in text
    assert "0 created, 0 updated" in text


def test_it_reads_another_data_dir_from_the_command(data_copy):
    edit(data_copy / "centers.yaml", "name: 판교 AI 시티", "name: 판교 AI 시티 (경기 AI 캠퍼스)")
    out = io.StringIO()

    call_command("load_seeds", "--data-dir", str(data_copy), stdout=out)

    assert "0 created, 1 updated" in out.getvalue()
    assert Center.objects.get(code="pangyo-aicity").name == "판교 AI 시티 (경기 AI 캠퍼스)"
