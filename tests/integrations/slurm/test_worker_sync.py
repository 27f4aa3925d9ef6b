"""The whole path with a REAL Celery worker and a REAL Slurm cluster: a booking decided by the
worker publishes its event, the receiver queues the sync, the worker makes the reservation;
with the controller down the booking is still decided and the sync waits, shown as pending."""

from __future__ import annotations

import time

import pytest

from booking.models import Booking
from booking.services.bookings import booking_cancel, booking_request
from integrations.slurm.models import SlurmCluster
from tests.factories import OrganizationFactory, UserFactory, add_member
from tests.integrations.slurm.test_sync import future, slurm_pool

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def wait_for(condition, what: str, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds:g} s")


def request(member, org, pool, quantity=8):
    start, end = future()
    return booking_request(
        actor=member,
        organization=org,
        resource_code=pool.code,
        quantity=quantity,
        start=start,
        end=end,
        purpose="추론 서비스 검증",
    )


def decided(booking) -> Booking:
    return wait_for(
        lambda: Booking.objects.exclude(status="pending").filter(pk=booking.pk).first(),
        f"booking {booking.pk} decided",
    )


def test_the_worker_reserves_on_confirmation_and_releases_on_cancellation(
    transactional_db, celery_worker, slurm
):
    org = OrganizationFactory(slug="acme-w")
    member = UserFactory(username="member-w")
    add_member(org, member, "member")
    pool, cluster = slurm_pool(code="GPU-SLURM-W")

    booking = decided(request(member, org, pool))
    assert booking.status == "confirmed"
    name = f"tb-{booking.pk}"
    found = wait_for(lambda: slurm.reservations().get(name), f"{name} in Slurm")
    assert found["Accounts"] == "acme-w"

    booking_cancel(actor=member, booking=booking, reason="일정 취소", channel="api")
    wait_for(lambda: name not in slurm.reservations(), f"{name} gone from Slurm")
    cluster.refresh_from_db()
    wait_for(
        lambda: SlurmCluster.objects.get(pk=cluster.pk).pending_changes == 0,
        "no pending change once in step",
    )
    celery_worker.drain()


def test_with_slurm_down_bookings_are_decided_and_the_sync_is_pending_until_it_returns(
    transactional_db, celery_worker, slurm
):
    from integrations.slurm.tasks import reconcile_cluster

    org = OrganizationFactory(slug="acme-d")
    member = UserFactory(username="member-d")
    add_member(org, member, "member")
    pool, cluster = slurm_pool(code="GPU-SLURM-D")
    slurm.stop_controller()

    booking = decided(request(member, org, pool))
    assert booking.status == "confirmed", "Slurm being away never blocks a booking"
    down = wait_for(
        lambda: SlurmCluster.objects.filter(
            pk=cluster.pk, last_error__contains="unreachable"
        ).first(),
        "the failed sync shown on the cluster",
    )
    assert down.pending_changes >= 1 and not down.in_step and down.last_success_at is None

    slurm.start()
    reconcile_cluster.delay(cluster.pk)  # what the task's retry or the beat does a little later
    wait_for(
        lambda: f"tb-{booking.pk}" in slurm.reservations(), "the reservation once Slurm is back"
    )
    back = wait_for(
        lambda: SlurmCluster.objects.filter(pk=cluster.pk, last_error="").first(), "in step"
    )
    assert back.in_step and back.last_success_at is not None
    celery_worker.drain()
