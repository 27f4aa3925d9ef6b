"""`Prefer: wait` answers from the decision the worker publishes: it must equal what a read answers."""

from __future__ import annotations

import pytest
import requests

from booking.models import Booking
from tests.concurrency.test_booking_races import booker, next_free_day, window  # noqa: F401
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, make_pool

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def post(live_server, token, body):
    response = requests.post(
        f"{live_server.url}/api/v1/bookings",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Prefer": "wait=20"},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()


def read(live_server, token, booking_id):
    response = requests.get(
        f"{live_server.url}/api/v1/bookings/{booking_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_waited_answer_equals_a_fresh_read_for_every_kind_of_decision(
    live_server,
    celery_worker,
    booker,  # noqa: F811
):
    lab = EquipmentTypeFactory(code="PUB-EQ", slot_minutes=30, min_minutes=30, max_minutes=240)
    EquipmentUnitFactory(equipment_type=lab, code="PUB-EQ-01")
    pool = make_pool(nodes=2, per_node=4, code="PUB-GPU")
    start = next_free_day()
    answers = [
        post(live_server, booker, window(start, 60, resource="PUB-EQ")),  # confirmed, a unit
        post(live_server, booker, window(start, 60, resource="PUB-EQ")),  # rejected, alternatives
        post(live_server, booker, window(start, 60, resource=pool.code, quantity=3)),  # devices
        post(live_server, booker, window(start, 60, resource=pool.code, quantity=8)),  # two nodes
        post(live_server, booker, window(start, 60, resource=pool.code, quantity=8)),  # rejected
    ]
    assert [a["status"] for a in answers] == [
        "confirmed",
        "rejected",
        "confirmed",
        "rejected",
        "rejected",
    ]
    for answer in answers:
        fresh = read(live_server, booker, answer["id"])
        assert answer == fresh, answer["id"]
    assert answers[0]["allocations"][0]["unit"] == "PUB-EQ-01"
    assert answers[1]["rejection"]["code"] == "unavailable"
    assert answers[1]["rejection"]["alternatives"]
    assert len(answers[2]["allocations"]) == 3
    assert len({a["node"] for a in answers[2]["allocations"]}) == 1
    assert Booking.objects.filter(status="pending").count() == 0
