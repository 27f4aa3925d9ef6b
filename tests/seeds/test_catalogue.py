"""What the shipped catalogue holds once loaded (loaded once for the module)."""

from __future__ import annotations

import pytest
from django.db.models import Count, F

from equipment.models import AcceleratorPool, Center, Device, EquipmentType, EquipmentUnit, Node
from seeds.schema import device_uuid

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("catalogue")]

# Equipment named in public sources (DOMAIN.md): code → a part of its Korean name.
REAL_TYPES = {
    "HC-XRAY": "흉부 X-ray 촬영장비",
    "HC-WBR": "전신반응 분석 시스템",
    "HC-PSG": "수면다원검사 시스템",
    "HC-EMG": "무선 근전도 분석기",
    "HC-BCA": "체성분",
    "HC-CPET": "심폐",
    "HC-EEG": "뇌파",
    "HC-COG": "인지기능",
    "AU-SIM-L": "AI형 자율주행 대형 드라이빙 시뮬레이터",
    "AU-SIM-H": "고사양 드라이빙 시뮬레이터",
    "AU-AV": "자율주행 실증 차량",
    "EN-DER": "분산전원 운영·분석",
    "EN-BIOT": "건물 에너지자립 IoT 센서",
    "EN-FDD": "분산발전 고장예측",
    "EN-ESS": "ESS 안전운영",
    "EN-DR": "수요반응",
    "EN-PROS": "에너지 프로슈머",
}


def test_it_loads_77_equipment_types_38_of_them_in_phase_1():
    assert EquipmentType.objects.count() == 77
    assert EquipmentType.objects.filter(phase=1).count() == 38
    assert EquipmentType.objects.filter(phase=2).count() == 39


def test_it_splits_the_types_26_healthcare_26_energy_25_automotive():
    by_field = dict(EquipmentType.objects.values_list("field").annotate(n=Count("id")))
    assert by_field == {"healthcare": 26, "energy": 26, "automotive": 25}


def test_it_gives_every_type_at_least_one_unit():
    assert not EquipmentType.objects.annotate(n=Count("units")).filter(n=0).exists()
    assert EquipmentUnit.objects.filter(code="HC-PSG-01", equipment_type__code="HC-PSG").exists()


def test_it_loads_every_real_domain_name_as_not_a_placeholder():
    for code, name in REAL_TYPES.items():
        t = EquipmentType.objects.get(code=code)
        assert name in t.name, code
        assert t.placeholder is False, code
        assert "Source:" in t.description, code


def test_it_marks_every_invented_type_as_a_placeholder():
    real = set(EquipmentType.objects.filter(placeholder=False).values_list("code", flat=True))
    assert real == set(REAL_TYPES)
    assert EquipmentType.objects.filter(placeholder=True).count() == 77 - len(REAL_TYPES)


def test_it_keeps_the_swappable_cabins_and_the_hd_map_in_specs():
    sim = EquipmentType.objects.get(code="AU-SIM-L")
    assert sim.specs["cabins"] == ["승용", "상용", "특수목적"]
    assert sim.units.count() == 1
    assert "빛그린" in EquipmentType.objects.get(code="AU-AV").specs["hd_map"]


def test_it_books_polysomnography_overnight():
    psg = EquipmentType.objects.get(code="HC-PSG")
    assert psg.opens_at is None and psg.closes_at is None
    assert psg.min_minutes >= 8 * 60
    assert psg.operating_mode == "analysis"


def test_it_keeps_lab_kit_to_weekday_office_hours():
    emg = EquipmentType.objects.get(code="HC-EMG")
    assert (emg.opens_at.hour, emg.closes_at.hour, emg.open_weekdays) == (9, 18, "01234")
    assert emg.max_minutes == 120


def test_it_puts_each_type_in_a_centre_of_its_field():
    assert not EquipmentType.objects.exclude(center__field=F("field")).exists()
    operators = dict(Center.objects.values_list("code", "operator"))
    assert operators["gj-healthcare"] == "광주테크노파크"
    assert operators["gj-automotive"] == "광주그린카진흥원"
    assert operators["gj-energy"] == "한국광기술원"
    assert operators["naidc-gwangju"] == "NHN"
    assert Center.objects.get(code="pangyo-aicity").field == "compute"


def test_it_loads_policies_and_codes_the_models_accept():
    # full_clean runs the field validators, BookingPolicy.clean() and the check that a code
    # is not used by the other kind of resource.
    for resource in [*EquipmentType.objects.all(), *AcceleratorPool.objects.all()]:
        resource.full_clean()
    type_codes = {c.lower() for c in EquipmentType.objects.values_list("code", flat=True)}
    pool_codes = {c.lower() for c in AcceleratorPool.objects.values_list("code", flat=True)}
    assert not type_codes & pool_codes


@pytest.mark.parametrize(
    ("code", "cards", "nodes"),
    [
        ("NAIDC-H100", 880, 110),
        ("NAIDC-A100", 796, 100),
        ("NAIDC-T4", 384, 48),
        ("NAIDC-IPU", 128, 32),
    ],
)
def test_it_loads_the_data_centre_card_counts(code, cards, nodes):
    pool = AcceleratorPool.objects.get(code=code)
    assert Device.objects.filter(node__pool=pool).count() == cards
    assert pool.nodes.count() == nodes
    assert pool.placeholder is False


def test_it_puts_the_last_four_a100_cards_on_a_node_of_their_own():
    per_node = dict(
        Node.objects.filter(pool__code="NAIDC-A100")
        .annotate(n=Count("devices"))
        .values_list("hostname", "n")
    )
    assert per_node.pop("naidc-a100-n100") == 4
    assert set(per_node.values()) == {8}


def test_it_flags_pools_of_unpublished_size_as_placeholders():
    placeholders = set(
        AcceleratorPool.objects.filter(placeholder=True).values_list("code", flat=True)
    )
    assert placeholders == {"NAIDC-RNGD", "NAIDC-WARBOY", "NAIDC-ATOM", "PGY-H200", "PGY-NPU"}
    assert AcceleratorPool.objects.get(code="NAIDC-RNGD").memory_gb == 48
    assert AcceleratorPool.objects.get(code="NAIDC-ATOM").memory_gb == 16
    assert set(
        AcceleratorPool.objects.filter(center__code="pangyo-aicity").values_list("kind", flat=True)
    ) == {"gpu", "npu"}


def test_it_prices_h100_device_hours_from_the_monthly_fee():
    assert AcceleratorPool.objects.get(code="NAIDC-H100").hourly_rate == round(100_000 / (30 * 24))


def test_it_names_nodes_and_devices_deterministically():
    node = Node.objects.get(hostname="naidc-h100-n001")
    devices = list(node.devices.order_by("index"))
    assert [d.index for d in devices] == list(range(8))
    assert [d.uuid for d in devices] == [device_uuid("naidc-h100-n001", i) for i in range(8)]
    assert Node.objects.filter(hostname="naidc-h100-n110").exists()
    assert not Node.objects.filter(hostname="naidc-h100-n111").exists()


def test_it_reports_what_it_created(catalogue):
    assert catalogue["catalogue"] == {
        "centers": 5,
        "equipment_types": 77,
        "phase_1": 38,
        "units": EquipmentUnit.objects.count(),
        "pools": 9,
        "nodes": Node.objects.count(),
        "devices": Device.objects.count(),
    }
    assert catalogue["equipment_types"] == {"created": 77, "updated": 0, "unchanged": 0}
    assert catalogue["devices"]["created"] == Device.objects.count()
