"""GET/POST/PATCH /api/v1/equipment-types: the catalogue of bookable equipment."""

from __future__ import annotations

import pytest

from equipment.models import EquipmentType
from tests.factories import CenterFactory, EquipmentTypeFactory, EquipmentUnitFactory

URL = "/api/v1/equipment-types"
PROBLEM = "application/problem+json"
CONTRACT_FIELDS = {
    "code", "name", "name_en", "center", "field", "phase", "units_count", "slot_minutes",
    "min_minutes", "max_minutes", "requires_approval", "requires_qualification", "hourly_rate",
}  # fmt: skip

pytestmark = pytest.mark.django_db


def detail(code: str) -> str:
    return f"{URL}/{code}"


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "status", "detail", "code", "errors"} <= set(body)
    return body


def codes(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["code"] for item in response.json()["results"]]


@pytest.fixture
def catalogue(db):
    health = CenterFactory(code="gj-health", field="healthcare")
    auto = CenterFactory(code="gj-auto", field="automotive")
    ultrasound = EquipmentTypeFactory(
        code="HC-US-01",
        name="초음파 영상 진단기",
        name_en="Ultrasound imaging scanner",
        center=health,
        field="healthcare",
        phase=1,
        slot_minutes=30,
        min_minutes=60,
        max_minutes=240,
        requires_approval=True,
        hourly_rate=50000,
    )
    EquipmentUnitFactory(equipment_type=ultrasound, code="US-A")
    EquipmentUnitFactory(equipment_type=ultrasound, code="US-B")
    EquipmentUnitFactory(equipment_type=ultrasound, code="US-OLD", status="retired")
    EquipmentTypeFactory(
        code="HC-GAIT-02",
        name="보행 분석 시스템",
        name_en="Gait analysis system",
        center=health,
        field="healthcare",
        phase=2,
        requires_qualification=True,
    )
    EquipmentTypeFactory(
        code="AU-DYNO-01",
        name="샤시 다이나모미터",
        name_en="Chassis dynamometer",
        center=auto,
        field="automotive",
        phase=1,
    )
    return ultrasound


@pytest.mark.parametrize("persona", ["operator", "manager", "member", "outsider"])
def test_it_lists_the_catalogue_to_every_signed_in_persona(api, request, catalogue, persona):
    response = api(request.getfixturevalue(persona)).get(URL)

    assert codes(response) == ["AU-DYNO-01", "HC-GAIT-02", "HC-US-01"]
    body = response.json()
    assert body["count"] == 3
    assert body["next"] is None and body["previous"] is None
    for item in body["results"]:
        assert CONTRACT_FIELDS <= set(item)


def test_it_shows_one_type_by_code_with_the_contract_values(api, member, catalogue):
    response = api(member).get(detail("HC-US-01"))

    assert response.status_code == 200
    item = response.json()
    assert {key: item[key] for key in CONTRACT_FIELDS} == {
        "code": "HC-US-01",
        "name": "초음파 영상 진단기",
        "name_en": "Ultrasound imaging scanner",
        "center": "gj-health",
        "field": "healthcare",
        "phase": 1,
        "units_count": 2,  # the retired unit does not count
        "slot_minutes": 30,
        "min_minutes": 60,
        "max_minutes": 240,
        "requires_approval": True,
        "requires_qualification": False,
        "hourly_rate": 50000,
    }


def test_it_answers_404_as_problem_json_for_an_unknown_code(api, member, catalogue):
    assert_problem(api(member).get(detail("NO-SUCH-01")), 404, "not_found")


def test_it_finds_a_code_with_a_dot(api, member, catalogue):
    EquipmentTypeFactory(code="HC-MRI-3.0T", center=catalogue.center)

    assert api(member).get(detail("HC-MRI-3.0T")).status_code == 200


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"center": "gj-health"}, ["HC-GAIT-02", "HC-US-01"]),
        ({"center": "gj-auto"}, ["AU-DYNO-01"]),
        ({"center": "nowhere"}, []),
        ({"field": "automotive"}, ["AU-DYNO-01"]),
        ({"phase": "2"}, ["HC-GAIT-02"]),
        ({"center": "gj-health", "phase": "1"}, ["HC-US-01"]),
        ({"search": "초음파"}, ["HC-US-01"]),
        ({"search": "보행"}, ["HC-GAIT-02"]),
        ({"search": "ultrasound"}, ["HC-US-01"]),
        ({"search": "DYNAMOMETER"}, ["AU-DYNO-01"]),
        ({"search": "hc-"}, ["HC-GAIT-02", "HC-US-01"]),
        ({"search": "  "}, ["AU-DYNO-01", "HC-GAIT-02", "HC-US-01"]),
        ({"search": "없는장비"}, []),
    ],
)
def test_it_filters(api, member, catalogue, params, expected):
    assert codes(api(member).get(URL, params)) == expected


@pytest.mark.parametrize("params", [{"phase": "9"}, {"field": "space"}])
def test_it_refuses_an_unknown_filter_value_with_400(api, member, catalogue, params):
    response = api(member).get(URL, params)

    assert response.status_code == 400
    assert response["Content-Type"].startswith(PROBLEM)
    assert set(params) <= set(response.json()["errors"])


@pytest.fixture
def many_types(db):
    center = CenterFactory(code="bulk")
    EquipmentType.objects.bulk_create(
        EquipmentType(
            code=f"BULK-{n:03d}",
            name=f"장비 {n}",
            name_en=f"Equipment {n}",
            center=center,
            field="energy",
            slot_minutes=30,
            min_minutes=30,
            max_minutes=60,
        )  # fmt: skip
        for n in range(501)
    )


def test_it_pages_by_50_by_default(api, member, many_types):
    body = api(member).get(URL).json()

    assert body["count"] == 501
    assert len(body["results"]) == 50
    assert body["next"] and "page=2" in body["next"]


def test_it_gives_up_to_500_per_page(api, member, many_types):
    body = api(member).get(URL, {"page_size": 500}).json()

    assert len(body["results"]) == 500
    assert body["next"] is not None


def test_it_clamps_a_page_size_above_500(api, member, many_types):
    body = api(member).get(URL, {"page_size": 5000}).json()

    assert body["count"] == 501
    assert len(body["results"]) == 500


def test_it_refuses_anonymous_callers_with_401(api, catalogue):
    response = api(None).get(URL)

    assert_problem(response, 401, "not_authenticated")


def test_it_refuses_a_bad_token_with_401(api, catalogue):
    client = api(None)
    client.credentials(HTTP_AUTHORIZATION="Bearer 0000000000000000000000000000000000000000")

    assert_problem(client.get(detail("HC-US-01")), 401, "authentication_failed")


def new_type(**overrides) -> dict:
    return {
        "code": "EN-ESS-01",
        "name": "에너지 저장 장치 시험기",
        "name_en": "Energy storage tester",
        "center": "gj-health",
        "field": "energy",
        "phase": 2,
        "slot_minutes": 60,
        "min_minutes": 60,
        "max_minutes": 480,
        "hourly_rate": 30000,
        **overrides,
    }


@pytest.mark.parametrize("persona", ["manager", "member", "outsider"])
def test_it_refuses_writes_from_non_operators_with_403(api, request, catalogue, persona):
    client = api(request.getfixturevalue(persona))

    assert_problem(client.post(URL, new_type()), 403, "permission_denied")
    assert_problem(client.patch(detail("HC-US-01"), {"hourly_rate": 1}), 403, "permission_denied")
    assert_problem(client.delete(detail("HC-US-01")), 403, "permission_denied")
    assert not EquipmentType.objects.filter(code="EN-ESS-01").exists()
    assert EquipmentType.objects.get(code="HC-US-01").hourly_rate == 50000


def test_it_lets_an_operator_create_and_patch_a_type(api, operator, catalogue):
    client = api(operator)

    created = client.post(URL, new_type())
    assert created.status_code == 201, created.content
    assert created.json()["center"] == "gj-health"
    assert created.json()["units_count"] == 0

    patched = client.patch(detail("EN-ESS-01"), {"requires_approval": True, "hourly_rate": 35000})
    assert patched.status_code == 200, patched.content
    saved = EquipmentType.objects.get(code="EN-ESS-01")
    assert saved.requires_approval is True
    assert saved.hourly_rate == 35000


def test_it_refuses_an_unknown_centre_with_400(api, operator, catalogue):
    response = api(operator).post(URL, new_type(center="nowhere"))

    assert response.status_code == 400
    assert response["Content-Type"].startswith(PROBLEM)
    assert "center" in response.json()["errors"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"min_minutes": 30, "slot_minutes": 60},
        {"max_minutes": 30, "min_minutes": 60},
        {"field": "compute"},
    ],
)
def test_it_refuses_a_policy_the_database_would_refuse_with_400(
    api, operator, catalogue, overrides
):
    response = api(operator).post(URL, new_type(**overrides))

    assert response.status_code == 400
    assert response["Content-Type"].startswith(PROBLEM)
    assert set(response.json()["errors"]) & {
        "min_minutes",
        "max_minutes",
        "field",
        "non_field_errors",
    }


def test_it_lists_without_a_query_per_row(api, member, django_assert_max_num_queries):
    center = CenterFactory(code="nplus1")
    for n in range(15):
        kind = EquipmentTypeFactory(code=f"NP-{n:02d}", center=center)
        EquipmentUnitFactory(equipment_type=kind)
    client = api(member)

    with django_assert_max_num_queries(4):
        response = client.get(URL, {"page_size": 100})

    assert response.json()["count"] == 15
    assert {item["units_count"] for item in response.json()["results"]} == {1}
