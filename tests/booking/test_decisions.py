"""How a `Prefer: wait` request learns its booking's decision: one Redis listener per process."""

from __future__ import annotations

import threading
import time

import pytest

from booking.models import Booking
from booking.services import decisions
from tests.factories import EquipmentTypeFactory, OrganizationFactory, UserFactory, aware

pytestmark = pytest.mark.django_db


@pytest.fixture
def booking():
    kind = EquipmentTypeFactory()
    return Booking.objects.create(
        organization=OrganizationFactory(),
        user=UserFactory(),
        equipment_type=kind,
        start=aware(2026, 12, 2, 10),
        end=aware(2026, 12, 2, 11),
    )


@pytest.mark.redis
def test_a_published_decision_wakes_the_waiter_without_reading_the_row(booking):
    assert decisions.decision_listen()
    # The row stays `pending`: only the message can say `confirmed`.
    threading.Timer(0.2, decisions.decisions_publish, [{booking.pk: "confirmed"}]).start()
    assert decisions.decision_wait(booking.pk, 5, listened=True) == "confirmed"


@pytest.mark.redis
def test_a_decision_published_before_the_wait_began_is_remembered(booking):
    assert decisions.decision_listen()
    decisions.decisions_publish({booking.pk: "rejected"})
    listener = decisions._listener()
    assert listener is not None
    deadline = time.monotonic() + 5
    while booking.pk not in listener.recent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert decisions.decision_wait(booking.pk, 0.5, listened=True) == "rejected"
    assert not listener.waiters  # nobody is left registered


@pytest.mark.redis
def test_a_lost_message_is_made_up_for_by_reading_the_row(booking):
    assert decisions.decision_listen()
    Booking.objects.filter(pk=booking.pk).update(status="confirmed")  # decided, never announced
    assert decisions.decision_wait(booking.pk, 3, listened=True) == "confirmed"


@pytest.mark.redis
def test_a_wait_that_runs_out_answers_pending(booking):
    assert decisions.decision_wait(booking.pk, 0.3) == "pending"


def test_without_redis_the_wait_polls_the_row(booking, settings):
    settings.REDIS_URL = ""
    decisions._redis.cache_clear()
    try:
        assert not decisions.decision_listen()
        assert decisions.decision_wait(booking.pk, 0.2) == "pending"
        Booking.objects.filter(pk=booking.pk).update(status="rejected")
        assert decisions.decision_wait(booking.pk, 0.2) == "rejected"
    finally:
        decisions._redis.cache_clear()
