"""The wake-up protocol of booking/services/wakeup.py (docs/allocation.md §2)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from booking.models import Booking, DiscountRule
from booking.services import wakeup
from booking.services.allocation import allocation_run_shard
from booking.services.bookings import booking_request, bookings_requeue_lost
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

NOW = aware(2026, 12, 1, 8, 0)


@pytest.fixture(autouse=True)
def clean():
    DiscountRule.objects.all().delete()
    wakeup._redis.cache_clear()
    wakeup.flags_clear()
    with time_machine.travel(NOW, tick=False):
        yield
    wakeup.flags_clear()


@pytest.fixture
def queued(monkeypatch):
    """The shards whose task was queued (instead of a broker)."""
    from booking import tasks

    shards: list[int] = []
    monkeypatch.setattr(tasks.allocate_shard, "delay", shards.append)
    return shards


@pytest.fixture
def lab():
    t = EquipmentTypeFactory(code="WK-LAB", slot_minutes=60, min_minutes=60, max_minutes=240)
    EquipmentUnitFactory(equipment_type=t, code="WK-LAB-01")
    EquipmentUnitFactory(equipment_type=t, code="WK-LAB-02")
    return t


def book(member, org, hour):
    start = aware(2026, 12, 2, hour)
    return booking_request(
        actor=member,
        organization=org,
        resource_code="WK-LAB",
        quantity=1,
        start=start,
        end=start + dt.timedelta(hours=1),
    )


def test_only_the_first_commit_of_a_shard_queues_a_task(
    lab, org, member, queued, django_capture_on_commit_callbacks
):
    shard = wakeup.shard_of(equipment_type_id=lab.pk, pool_id=None)
    with django_capture_on_commit_callbacks(execute=True):
        for hour in range(9, 14):
            book(member, org, hour)
    assert queued == [shard]  # five bookings, one task


def test_the_task_decides_the_shard_and_hands_the_flag_back(
    lab, org, member, queued, django_capture_on_commit_callbacks
):
    shard = wakeup.shard_of(equipment_type_id=lab.pk, pool_id=None)
    with django_capture_on_commit_callbacks(execute=True):
        made = [book(member, org, hour) for hour in range(9, 12)]
    assert allocation_run_shard(shard) == 3
    assert set(
        Booking.objects.filter(pk__in=[b.pk for b in made]).values_list("status", flat=True)
    ) == {"confirmed"}
    # The flag is free again: the next commit queues a task at once.
    with django_capture_on_commit_callbacks(execute=True):
        book(member, org, 15)
    assert queued == [shard, shard]


def test_a_booking_committed_while_the_flag_is_held_is_decided_by_the_holder(
    lab, org, member, queued, django_capture_on_commit_callbacks
):
    """The holder deletes the flag, then looks again: what was committed before is seen."""
    shard = wakeup.shard_of(equipment_type_id=lab.pk, pool_id=None)
    assert wakeup.flag_take(shard)  # a task holds it (queued, not yet running)
    with django_capture_on_commit_callbacks(execute=True):
        late = book(member, org, 9)
    assert queued == []  # the web lost the SET NX: it queued nothing
    assert allocation_run_shard(shard) == 1
    late.refresh_from_db()
    assert late.status == "confirmed"


def test_the_sweep_queues_a_shard_whose_flag_holder_died(
    lab, org, member, queued, django_capture_on_commit_callbacks
):
    shard = wakeup.shard_of(equipment_type_id=lab.pk, pool_id=None)
    assert wakeup.flag_take(shard)  # held by a task that will never run
    with django_capture_on_commit_callbacks(execute=True):
        lost = book(member, org, 9)
    assert queued == []
    with time_machine.travel(NOW + dt.timedelta(minutes=5), tick=False):
        assert bookings_requeue_lost(older_than=dt.timedelta(seconds=20)) == [lost.pk]
    assert queued == [shard]


def test_shards_split_types_and_pools_as_postgresql_computes_them(lab, org, member):
    made = book(member, org, 9)
    shard = wakeup.shard_of(equipment_type_id=lab.pk, pool_id=None)
    for s in range(wakeup.shard_count()):
        found = wakeup.in_shard(Booking.objects.filter(pk=made.pk), s).exists()
        assert found == (s == shard)
