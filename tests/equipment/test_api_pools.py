"""GET/POST/PATCH /api/v1/pools: accelerator pools with their node and device counts."""

from __future__ import annotations

import pytest

from equipment.models import AcceleratorPool, Device, Node
from tests.factories import CenterFactory, make_pool

URL = "/api/v1/pools"
PROBLEM = "application/problem+json"
CONTRACT_FIELDS = {
    "code", "name", "center", "accelerator", "vendor", "kind", "memory_gb", "nodes_count",
    "devices_per_node", "devices_count", "slot_minutes", "min_minutes", "max_minutes",
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
def pools(db):
    compute = CenterFactory(code="nipa-dc", field="compute")
    h100 = make_pool(
        nodes=2, per_node=8, code="H100-SXM", name="H100 풀", name_en="H100 pool", center=compute
    )
    rngd = make_pool(
        nodes=3,
        per_node=4,
        code="RNGD-01",
        name="레니게이드 NPU 풀",
        name_en="RNGD NPU pool",
        center=compute,
        vendor="FuriosaAI",
        accelerator="RNGD",
        kind="npu",
        memory_gb=48,
    )
    return h100, rngd


@pytest.mark.parametrize("persona", ["operator", "manager", "member", "outsider"])
def test_it_lists_pools_to_every_signed_in_persona(api, request, pools, persona):
    response = api(request.getfixturevalue(persona)).get(URL)

    assert codes(response) == ["H100-SXM", "RNGD-01"]
    for item in response.json()["results"]:
        assert CONTRACT_FIELDS <= set(item)


def test_it_counts_nodes_and_devices_of_a_pool_built_by_make_pool(api, member, pools):
    response = api(member).get(detail("H100-SXM"))

    assert response.status_code == 200
    item = response.json()
    assert {key: item[key] for key in CONTRACT_FIELDS} == {
        "code": "H100-SXM",
        "name": "H100 풀",
        "center": "nipa-dc",
        "accelerator": "H100 SXM5 80GB",
        "vendor": "NVIDIA",
        "kind": "gpu",
        "memory_gb": 80,
        "nodes_count": 2,
        "devices_per_node": 8,
        "devices_count": 16,
        "slot_minutes": 60,
        "min_minutes": 60,
        "max_minutes": 24 * 60 * 7,
    }


def test_it_counts_the_same_in_the_list_as_in_the_detail(api, member, pools):
    listed = {item["code"]: item for item in api(member).get(URL).json()["results"]}

    assert (listed["RNGD-01"]["nodes_count"], listed["RNGD-01"]["devices_per_node"]) == (3, 4)
    assert listed["RNGD-01"]["devices_count"] == 12
    assert listed["H100-SXM"]["devices_count"] == 16


def test_it_leaves_retired_nodes_and_devices_out_of_the_counts(api, member, pools):
    h100, _ = pools
    first, second = Node.objects.filter(pool=h100).order_by("hostname")
    second.status = "retired"
    second.save(update_fields=["status"])
    Device.objects.filter(node=first, index=7).update(status="retired")

    item = api(member).get(detail("H100-SXM")).json()

    assert item["nodes_count"] == 1
    assert item["devices_count"] == 7
    assert item["devices_per_node"] == 7


def test_it_answers_404_as_problem_json_for_an_unknown_code(api, member, pools):
    assert_problem(api(member).get(detail("NO-POOL")), 404, "not_found")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind": "npu"}, ["RNGD-01"]),
        ({"kind": "gpu"}, ["H100-SXM"]),
        ({"center": "nipa-dc"}, ["H100-SXM", "RNGD-01"]),
        ({"center": "elsewhere"}, []),
        ({"vendor": "furiosaai"}, ["RNGD-01"]),
        ({"search": "레니게이드"}, ["RNGD-01"]),
        ({"search": "h100"}, ["H100-SXM"]),
        ({"search": "nvidia"}, ["H100-SXM"]),
    ],
)
def test_it_filters(api, member, pools, params, expected):
    assert codes(api(member).get(URL, params)) == expected


def test_it_refuses_anonymous_callers_with_401(api, pools):
    assert_problem(api(None).get(URL), 401, "not_authenticated")


def test_it_refuses_a_bad_token_with_401(api, pools):
    client = api(None)
    client.credentials(HTTP_AUTHORIZATION="Bearer nope")

    assert_problem(client.get(URL), 401, "authentication_failed")


def new_pool(**overrides) -> dict:
    return {
        "code": "B200-01",
        "name": "B200 풀",
        "name_en": "B200 pool",
        "center": "nipa-dc",
        "vendor": "NVIDIA",
        "accelerator": "B200 192GB",
        "kind": "gpu",
        "memory_gb": 192,
        "slot_minutes": 60,
        "min_minutes": 60,
        "max_minutes": 1440,
        **overrides,
    }


@pytest.mark.parametrize("persona", ["manager", "member", "outsider"])
def test_it_refuses_writes_from_non_operators_with_403(api, request, pools, persona):
    client = api(request.getfixturevalue(persona))

    assert_problem(client.post(URL, new_pool()), 403, "permission_denied")
    assert_problem(client.patch(detail("H100-SXM"), {"memory_gb": 1}), 403, "permission_denied")
    assert not AcceleratorPool.objects.filter(code="B200-01").exists()
    assert AcceleratorPool.objects.get(code="H100-SXM").memory_gb == 80


def test_it_lets_an_operator_create_and_patch_a_pool(api, operator, pools):
    client = api(operator)

    created = client.post(URL, new_pool())
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["nodes_count"], body["devices_per_node"], body["devices_count"]) == (0, 0, 0)

    patched = client.patch(detail("H100-SXM"), {"hourly_rate": 150})
    assert patched.status_code == 200, patched.content
    assert patched.json()["devices_count"] == 16
    assert AcceleratorPool.objects.get(code="H100-SXM").hourly_rate == 150


def test_it_lists_without_a_query_per_row(api, member, django_assert_max_num_queries):
    center = CenterFactory(code="many", field="compute")
    for n in range(12):
        make_pool(nodes=2, per_node=2, code=f"P-{n:02d}", center=center)
    client = api(member)

    with django_assert_max_num_queries(4):
        response = client.get(URL, {"page_size": 100})

    assert response.json()["count"] == 12
    assert {item["devices_count"] for item in response.json()["results"]} == {4}
