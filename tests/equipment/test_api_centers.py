"""GET/POST/PATCH /api/v1/centers: read by anyone signed in, written by operators."""

from __future__ import annotations

import pytest

from equipment.models import Center
from tests.factories import CenterFactory

URL = "/api/v1/centers"
PROBLEM = "application/problem+json"
FIELDS = {"code", "name", "name_en", "field", "operator", "address", "timezone"}

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


@pytest.fixture
def centers(db):
    return [
        CenterFactory(
            code="gj-health",
            name="인공지능 헬스케어 실증센터",
            name_en="AI healthcare demonstration centre",
            field="healthcare",
            operator="광주테크노파크",
            address="광주광역시 남구 빛고을노인건강타운",
        ),
        CenterFactory(
            code="gj-auto",
            name="인공지능 자동차 실증센터",
            name_en="AI automotive demonstration centre",
            field="automotive",
        ),
        CenterFactory(
            code="nipa-dc",
            name="국가 AI 데이터센터",
            name_en="National AI data centre",
            field="compute",
        ),
    ]


@pytest.mark.parametrize("persona", ["operator", "manager", "member", "outsider"])
def test_it_lists_centres_to_every_signed_in_persona(api, request, centers, persona):
    user = request.getfixturevalue(persona)

    response = api(user).get(URL)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3
    assert [c["code"] for c in body["results"]] == ["gj-auto", "gj-health", "nipa-dc"]
    assert FIELDS <= set(body["results"][0])


def test_it_shows_the_contract_fields(api, member, centers):
    response = api(member).get(detail("gj-health"))

    assert response.status_code == 200
    assert response.json() == {
        "code": "gj-health",
        "name": "인공지능 헬스케어 실증센터",
        "name_en": "AI healthcare demonstration centre",
        "field": "healthcare",
        "operator": "광주테크노파크",
        "address": "광주광역시 남구 빛고을노인건강타운",
        "timezone": "Asia/Seoul",
    }


def test_it_answers_with_a_trailing_slash_too(api, member, centers):
    assert api(member).get(f"{URL}/").json()["count"] == 3
    assert api(member).get(f"{detail('gj-auto')}/").json()["code"] == "gj-auto"


def test_it_filters_by_field(api, member, centers):
    response = api(member).get(URL, {"field": "automotive"})

    assert [c["code"] for c in response.json()["results"]] == ["gj-auto"]


def test_it_answers_404_as_problem_json_for_an_unknown_code(api, member, centers):
    assert_problem(api(member).get(detail("nowhere")), 404, "not_found")


def test_it_refuses_anonymous_callers_with_401(api, centers):
    response = api(None).get(URL)

    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_a_bad_token_with_401(api, centers):
    client = api(None)
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-real-token")

    assert_problem(client.get(URL), 401, "authentication_failed")


@pytest.mark.parametrize("persona", ["manager", "member", "outsider"])
def test_it_refuses_writes_from_non_operators_with_403(api, request, centers, persona):
    client = api(request.getfixturevalue(persona))
    new = {"code": "pangyo", "name": "판교", "name_en": "Pangyo", "field": "compute"}

    assert_problem(client.post(URL, new), 403, "permission_denied")
    assert_problem(client.patch(detail("gj-auto"), {"name": "바뀐 이름"}), 403, "permission_denied")
    assert_problem(client.delete(detail("gj-auto")), 403, "permission_denied")
    assert not Center.objects.filter(code="pangyo").exists()
    assert Center.objects.get(code="gj-auto").name == "인공지능 자동차 실증센터"


def test_it_lets_an_operator_create_and_patch_a_centre(api, operator):
    client = api(operator)

    created = client.post(
        URL,
        {"code": "pangyo", "name": "판교 AI 시티", "name_en": "Pangyo AI City", "field": "compute"},
    )
    assert created.status_code == 201, created.content
    assert created.json()["code"] == "pangyo"

    patched = client.patch(detail("pangyo"), {"address": "경기도 성남시 분당구"})
    assert patched.status_code == 200, patched.content
    assert Center.objects.get(code="pangyo").address == "경기도 성남시 분당구"


def test_it_answers_400_problem_json_for_an_invalid_centre(api, operator):
    response = api(operator).post(URL, {"code": "x", "name": "x", "name_en": "x", "field": "space"})

    assert response.status_code == 400
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert body["code"] in {"invalid", "invalid_choice"}
    assert "field" in body["errors"]
    assert not Center.objects.filter(code="x").exists()


def test_it_lists_without_a_query_per_row(api, member, django_assert_max_num_queries):
    for n in range(20):
        CenterFactory(code=f"c-{n:02d}")
    client = api(member)

    with django_assert_max_num_queries(4):
        response = client.get(URL, {"page_size": 100})

    assert response.json()["count"] == 20
