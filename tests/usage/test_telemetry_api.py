"""POST /api/v1/telemetry: node keys, validation, idempotent ingest, attribution to bookings."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest
import time_machine
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from booking.models import Allocation, Booking, TelemetrySample
from booking.services.allocation import booking_allocate
from booking.services.bookings import booking_request
from booking.services.telemetry import MAX_BATCH, node_key_create
from equipment.models import Node
from testbed.models import AuditEntry
from tests.conftest import client_for
from tests.factories import aware, make_pool

pytestmark = pytest.mark.django_db

BOOKED_AT = aware(2026, 12, 1, 8, 0)
LATER = aware(2026, 12, 1, 14, 0)  # after both bookings: when the samples arrive


@pytest.fixture
def pool():
    return make_pool(nodes=2, per_node=4, code="GPU-H100")


@pytest.fixture
def node(pool):
    return Node.objects.filter(pool=pool).order_by("hostname").first()


@pytest.fixture
def other_node(pool):
    return Node.objects.filter(pool=pool).order_by("hostname").last()


@pytest.fixture
def key(node):
    return node_key_create(node=node)


def book(member, org, pool, start, end, quantity=4):
    with time_machine.travel(BOOKED_AT, tick=False):
        booking = booking_request(
            actor=member,
            organization=org,
            resource_code=pool.code,
            quantity=quantity,
            start=start,
            end=end,
        )
        assert booking_allocate(booking_id=booking.pk) == "confirmed"
    return booking


def send(key, samples, client=None):
    client = client or APIClient()
    return client.post(
        "/api/v1/telemetry", {"samples": samples}, format="json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


def reading(device, at, utilization=50.0, **extra):
    return {"device": device, "at": at.isoformat(), "utilization_pct": utilization, **extra}


def test_it_attributes_each_sample_to_the_booking_holding_the_device_then(
    member, org, pool, node, key
):
    first = book(member, org, pool, aware(2026, 12, 1, 9), aware(2026, 12, 1, 11))
    second = book(member, org, pool, aware(2026, 12, 1, 11), aware(2026, 12, 1, 13))
    devices = set(Allocation.objects.filter(booking=first).values_list("device_id", flat=True))
    assert devices == set(
        Allocation.objects.filter(booking=second).values_list("device_id", flat=True)
    )
    assert devices == set(node.devices.values_list("id", flat=True)), (
        "4 devices on one node: the booked node"
    )
    moments = {
        "before": aware(2026, 12, 1, 8, 59) + dt.timedelta(seconds=50),
        "first": aware(2026, 12, 1, 10, 59) + dt.timedelta(seconds=50),
        "boundary": aware(2026, 12, 1, 11, 0),  # [start, end): the second booking's first instant
        "second": aware(2026, 12, 1, 12, 59) + dt.timedelta(seconds=59),
        "after": aware(2026, 12, 1, 13, 0),
    }
    samples = [
        reading(str(i), at, 80.0, memory_used_mb=1000.0, power_w=400.5, energy_j=12345.6)
        for at in moments.values()
        for i in range(4)
    ]

    with time_machine.travel(LATER, tick=False):
        response = send(key, samples)

    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 20, "duplicates": 0, "attributed": 12}
    holder = {
        at: set(TelemetrySample.objects.filter(at=at).values_list("booking_id", flat=True))
        for at in moments.values()
    }
    assert holder == {
        moments["before"]: {None},
        moments["first"]: {first.pk},
        moments["boundary"]: {second.pk},
        moments["second"]: {second.pk},
        moments["after"]: {None},
    }
    stored = TelemetrySample.objects.filter(at=moments["first"], device__index=2).get()
    assert (
        stored.node_id,
        stored.utilization_pct,
        stored.memory_used_mb,
        stored.power_w,
        stored.energy_j,
    ) == (node.pk, 80.0, 1000.0, 400.5, 12345.6)


def test_it_counts_a_resent_batch_as_duplicates_and_stores_it_once(node, key):
    samples = [
        reading(str(i), aware(2026, 12, 1, 9) + dt.timedelta(seconds=10 * k))
        for i in range(4)
        for k in range(5)
    ]
    with time_machine.travel(LATER, tick=False):
        first = send(key, samples)
        again = send(key, samples)
        overlapping = send(key, samples[:10] + [reading("0", aware(2026, 12, 1, 9, 10))])

    assert first.json() == {"accepted": 20, "duplicates": 0, "attributed": 0}
    assert (again.status_code, again.json()) == (
        202,
        {"accepted": 0, "duplicates": 20, "attributed": 0},
    )
    assert overlapping.json() == {"accepted": 1, "duplicates": 10, "attributed": 0}
    assert TelemetrySample.objects.count() == 21


def test_it_counts_a_sample_repeated_within_a_batch_once(node, key):
    at = aware(2026, 12, 1, 9)
    with time_machine.travel(LATER, tick=False):
        response = send(key, [reading("0", at), reading("0", at.astimezone(dt.UTC))])

    assert response.json() == {"accepted": 1, "duplicates": 1, "attributed": 0}


def test_it_accepts_devices_by_uuid_and_by_nvml_uuid(node, key):
    devices = list(node.devices.order_by("index"))
    at = aware(2026, 12, 1, 9)
    with time_machine.travel(LATER, tick=False):
        response = send(
            key,
            [
                reading(str(devices[0].uuid), at),
                reading(f"GPU-{devices[1].uuid}", at),
                reading(2, at),
            ],
        )

    assert response.status_code == 202, response.content
    assert set(TelemetrySample.objects.values_list("device__index", flat=True)) == {0, 1, 2}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer tbn_pool-nope_0123",
        "Token something",
        "Bearer tbn_gpu-h100-n00_" + "0" * 64,
    ],
)
def test_it_refuses_a_missing_or_wrong_node_key_with_401(node, key, header):
    client = APIClient()
    kwargs = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post(
        "/api/v1/telemetry",
        {"samples": [reading("0", aware(2026, 11, 1))]},
        format="json",
        **kwargs,
    )

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_authenticated"
    assert "node_key" in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not TelemetrySample.objects.exists()


def test_it_refuses_a_user_token_even_an_operators(operator, node, key):
    client = client_for(operator)
    response = client.post(
        "/api/v1/telemetry", {"samples": [reading("0", aware(2026, 11, 1))]}, format="json"
    )

    assert response.status_code == 401
    assert "not a user token" in response.json()["detail"]
    assert not TelemetrySample.objects.exists()


def test_it_refuses_the_key_of_a_node_without_one_and_a_replaced_key(node, other_node, key):
    forged = key.replace(node.hostname, other_node.hostname)  # other_node has no key at all
    replaced = key
    node_key_create(node=node)  # a new key: the old one stops working

    assert send(forged, [reading("0", aware(2026, 11, 1))]).status_code == 401
    assert send(replaced, [reading("0", aware(2026, 11, 1))]).status_code == 401


def test_it_refuses_a_device_of_another_node_naming_the_sample(node, other_node, key):
    foreign = other_node.devices.first()
    at = aware(2026, 11, 1)

    response = send(key, [reading("0", at), reading(str(foreign.uuid), at), reading("7", at)])

    assert response.status_code == 400
    body = response.json()
    assert response["Content-Type"] == "application/problem+json"
    assert set(body["errors"]) == {"samples.1.device", "samples.2.device"}
    assert node.hostname in body["errors"]["samples.1.device"][0]
    assert not TelemetrySample.objects.exists(), "a refused batch stores nothing"


@pytest.mark.parametrize(
    ("sample", "field"),
    [
        ({"device": "0", "at": "2026-11-01T09:00:00", "utilization_pct": 5}, "at"),
        ({"device": "0", "at": "yesterday", "utilization_pct": 5}, "at"),
        ({"device": "0", "at": "2030-01-01T00:00:00+09:00", "utilization_pct": 5}, "at"),
        (
            {"device": "0", "at": "2026-11-01T09:00:00+09:00", "utilization_pct": 101},
            "utilization_pct",
        ),
        (
            {"device": "0", "at": "2026-11-01T09:00:00+09:00", "utilization_pct": "50"},
            "utilization_pct",
        ),
        (
            {"device": "0", "at": "2026-11-01T09:00:00+09:00", "utilization_pct": 5, "power_w": -1},
            "power_w",
        ),
        ({"at": "2026-11-01T09:00:00+09:00", "utilization_pct": 5}, "device"),
        # Stored, these would break every later read (zone arithmetic past year 1 or 9999).
        ({"device": "0", "at": "0001-01-01T00:00:00+14:00", "utilization_pct": 5}, "at"),
        ({"device": "0", "at": "9999-12-31T23:59:59-14:00", "utilization_pct": 5}, "at"),
        # Older than the agent's spool keeps: a wrong clock or a replay.
        ({"device": "0", "at": "2026-10-01T09:00:00+09:00", "utilization_pct": 5}, "at"),
        ({"device": "0", "at": "2026-11-01T09:00:00+09:00\x00", "utilization_pct": 5}, "at"),
    ],
)
def test_it_refuses_bad_samples_naming_index_and_field(node, key, sample, field):
    good = reading("1", aware(2026, 11, 1, 9))

    with time_machine.travel(LATER, tick=False):
        response = send(key, [good, sample])

    assert response.status_code == 400
    assert f"samples.1.{field}" in response.json()["errors"], response.json()
    assert not TelemetrySample.objects.exists()


def test_a_refused_sample_leaves_later_reads_working(node, key, operator, api):
    with time_machine.travel(LATER, tick=False):
        refused = send(
            key, [reading("0", LATER), {**reading("1", LATER), "at": "0001-01-01T00:00:00+14:00"}]
        )
        accepted = send(key, [reading("0", LATER)])

    assert refused.status_code == 400
    assert "samples.1.at" in refused.json()["errors"]
    assert accepted.status_code == 202, accepted.content
    assert list(TelemetrySample.objects.values_list("at", flat=True)) == [LATER]


def test_it_refuses_a_batch_over_the_limit_and_an_empty_one(node, key):
    at = aware(2026, 11, 1)
    too_many = [reading(str(i % 4), at + dt.timedelta(seconds=i)) for i in range(MAX_BATCH + 1)]

    assert send(key, too_many).status_code == 400
    assert send(key, []).status_code == 400
    assert (
        APIClient()
        .post("/api/v1/telemetry", [1, 2], format="json", HTTP_AUTHORIZATION=f"Bearer {key}")
        .status_code
        == 400
    )


# PostgreSQL takes the batch in one multi-row INSERT; SQLite's variable limit splits it.
@pytest.mark.postgres
def test_it_ingests_a_large_batch_in_a_fixed_handful_of_queries(
    member, org, pool, node, key, django_assert_num_queries
):
    book(member, org, pool, aware(2026, 12, 1, 9), aware(2026, 12, 1, 11))
    start = aware(2026, 12, 1, 9)
    samples = [
        reading(str(i), start + dt.timedelta(seconds=k), 30.0)
        for k in range(2500)
        for i in range(4)
    ]
    client = APIClient()

    with time_machine.travel(LATER, tick=False):
        # node by key, its devices, samples already stored, allocations in the span, one insert
        with django_assert_num_queries(5):
            response = send(key, samples, client)

    assert response.json() == {"accepted": 10_000, "duplicates": 0, "attributed": 10_000}
    assert Booking.objects.get().samples.count() == 10_000


def test_node_key_command_prints_a_key_once_and_stores_only_its_hash(node):
    out, err = io.StringIO(), io.StringIO()
    call_command("node_key", node.hostname, stdout=out, stderr=err)

    key = out.getvalue().strip()
    node.refresh_from_db()
    assert key.startswith(f"tbn_{node.hostname}_")
    assert node.agent_key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in err.getvalue()
    assert AuditEntry.objects.filter(action="node.key_create", object_id=str(node.pk)).exists()
    with time_machine.travel(LATER, tick=False):
        assert send(key, [reading("0", aware(2026, 12, 1, 9))]).status_code == 202

    call_command("node_key", node.hostname, "--revoke", stdout=io.StringIO(), stderr=io.StringIO())
    assert send(key, [reading("0", aware(2026, 12, 1, 9, 1))]).status_code == 401
    with pytest.raises(CommandError, match="No node is called"):
        call_command("node_key", "no-such-host", stdout=io.StringIO(), stderr=io.StringIO())


def test_the_schema_documents_the_endpoint(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()

    operation = schema["paths"]["/api/v1/telemetry"]["post"]
    assert "202" in operation["responses"]
