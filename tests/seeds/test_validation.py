"""Wrong files are refused with a message naming the file, the entry and the field; nothing is written."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from equipment.models import AcceleratorPool, Center, Device, EquipmentType, EquipmentUnit, Node
from seeds.loader import load_catalogue
from seeds.schema import SeedError
from tests.factories import PoolFactory
from tests.seeds.conftest import edit

pytestmark = pytest.mark.django_db

HC = "equipment_types/healthcare.yaml"
AU = "equipment_types/automotive.yaml"
POOLS = "pools.yaml"

BAD_EDITS = [
    pytest.param(
        HC,
        "code: HC-PSG\n",
        "code: HC-PSG\n    center: gj-sleep\n",
        ["healthcare.yaml", "HC-PSG", "center", "unknown centre code 'gj-sleep'"],
        id="unknown-centre",
    ),
    pytest.param(
        HC,
        "code: HC-EMG\n",
        "code: HC-PSG\n",
        ["healthcare.yaml", "HC-PSG", "code", "duplicate equipment type code"],
        id="duplicate-type-code",
    ),
    pytest.param(
        POOLS,
        "code: NAIDC-T4\n",
        "code: hc-psg\n",
        ["pools.yaml", "hc-psg", "code", "equipment type and pool codes share one namespace"],
        id="type-code-collides-with-pool-code",
    ),
    pytest.param(
        HC,
        "    min_minutes: 480\n",
        "    min_minutes: 450\n",
        ["healthcare.yaml", "HC-PSG", "min_minutes", "multiple of the slot"],
        id="minimum-not-a-multiple-of-slot",
    ),
    pytest.param(
        HC,
        "    max_minutes: 720\n",
        "    max_minutes: 240\n",
        ["healthcare.yaml", "HC-PSG", "max_minutes", "at least the minimum"],
        id="maximum-below-minimum",
    ),
    pytest.param(
        AU,
        '  closes_at: "18:00"\n',
        "  closes_at: 18:00\n",
        ["automotive.yaml", "defaults", "closes_at", "quotes"],
        id="unquoted-time",
    ),
    pytest.param(
        AU,
        '  closes_at: "18:00"\n',
        '  closes_at: "08:00"\n',
        ["automotive.yaml", "AU-SIM-L", "closes_at", "after opening"],
        id="closes-before-it-opens",
    ),
    pytest.param(
        AU,
        '  open_weekdays: "01234"\n',
        '  open_weekdays: "01279"\n',
        ["automotive.yaml", "AU-LIDAR", "open_weekdays"],
        id="bad-weekdays",
    ),
    pytest.param(
        HC,
        "  slot_minutes: 30\n",
        "  slot_minute: 30\n",
        ["healthcare.yaml", "defaults", "slot_minute", "did you mean 'slot_minutes'"],
        id="misspelt-field",
    ),
    pytest.param(
        HC,
        "    operating_mode: analysis\n    specs: {modality: DR",
        "    operating_mode: by-staff\n    specs: {modality: DR",
        ["healthcare.yaml", "HC-XRAY", "operating_mode", "not a valid choice"],
        id="bad-choice",
    ),
    pytest.param(
        HC,
        "    source: gjdaily 60059 / aitimes 143006\n    requires_qualification: true\n    buffer_minutes: 30\n",
        "    requires_qualification: true\n    buffer_minutes: 30\n",
        ["healthcare.yaml", "HC-WBR", "source", "placeholder: false"],
        id="real-entry-without-source",
    ),
    pytest.param(
        HC,
        "    units_count: 4\n    specs: {format: tablet}\n",
        "    units_count: 0\n    specs: {format: tablet}\n",
        ["healthcare.yaml", "HC-COG", "units_count"],
        id="no-units",
    ),
    pytest.param(
        POOLS,
        "    cards: 880\n",
        "    cards: 888\n",
        ["pools.yaml", "NAIDC-H100", "cards", "880 devices"],
        id="cards-do-not-match-nodes",
    ),
    pytest.param(
        POOLS,
        "    hostname_prefix: naidc-t4\n",
        "    hostname_prefix: naidc-h100\n",
        ["pools.yaml", "NAIDC-T4", "hostname_prefix", "naidc-h100-n001"],
        id="host-names-collide",
    ),
    pytest.param(
        POOLS,
        "    kind: gpu\n    memory_gb: 141\n",
        "    kind: tpu\n    memory_gb: 141\n",
        ["pools.yaml", "PGY-H200", "kind"],
        id="bad-pool-kind",
    ),
    pytest.param(
        "centers.yaml",
        "    name_en: Pangyo AI City\n",
        "    name_en: Pangyo AI City\n    name_en: Pangyo\n",
        ["centers.yaml", "line", "twice"],
        id="key-written-twice",
    ),
]


@pytest.mark.parametrize(("filename", "old", "new", "fragments"), BAD_EDITS)
def test_it_refuses_a_bad_file_naming_where_and_writes_nothing(
    data_copy, filename, old, new, fragments
):
    edit(data_copy / filename, old, new)

    with pytest.raises(SeedError) as exc_info:
        load_catalogue(data_dir=data_copy)

    message = str(exc_info.value)
    for fragment in fragments:
        assert fragment in message
    assert "nothing was written" in message
    for model in (Center, EquipmentType, EquipmentUnit, AcceleratorPool, Node, Device):
        assert not model.objects.exists(), model.__name__


def test_it_refuses_a_type_code_already_used_by_a_stored_pool(data_copy):
    PoolFactory(code="HC-PSG")

    with pytest.raises(
        SeedError, match=r"healthcare\.yaml: types\[\d+\] \(HC-PSG\): code: .*pool 'HC-PSG'"
    ):
        load_catalogue(data_dir=data_copy)

    assert not EquipmentType.objects.exists()
    assert not Device.objects.exists()


def test_it_refuses_a_missing_file(data_copy):
    (data_copy / "pools.yaml").unlink()

    with pytest.raises(SeedError, match="pools.yaml: file not found"):
        load_catalogue(data_dir=data_copy)

    assert not Center.objects.exists()


def test_it_turns_a_bad_file_into_a_command_error(data_copy):
    edit(data_copy / HC, "code: HC-PSG\n", "code: HC-PSG\n    center: gj-sleep\n")

    with pytest.raises(CommandError, match="HC-PSG.*center: unknown centre code"):
        call_command("load_seeds", "--data-dir", str(data_copy))

    assert not Center.objects.exists()


def test_it_loads_thousands_of_devices_in_a_few_dozen_queries(django_assert_max_num_queries):
    with django_assert_max_num_queries(40):
        result = load_catalogue()

    assert result["devices"]["created"] == Device.objects.count() > 2000
