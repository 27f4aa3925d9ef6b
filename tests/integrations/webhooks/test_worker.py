"""Delivery by a REAL Celery worker (Redis broker, the test database) to a REAL local server.

The worker gets a compressed retry schedule (1 s, 1 s) and plain http to 127.0.0.1 through its
environment; it decides a real booking, whose `booking.confirmed` event it delivers itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time

import pytest
from standardwebhooks.webhooks import Webhook

from booking.events import publish
from booking.models import Booking
from booking.services.bookings import booking_request
from integrations.webhooks.models import DeliveryStatus, WebhookDelivery
from tests.factories import make_pool
from tests.integrations.webhooks.receiver import closed_port_url
from tests.worker import start_worker

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

WORKER_ENV = {
    "TESTBED_WEBHOOKS_ALLOW_HTTP": "1",
    "TESTBED_WEBHOOKS_RETRY_SCHEDULE": "1,1",
    "TESTBED_WEBHOOKS_TIMEOUT_SECONDS": "2",
}


@pytest.fixture(scope="module")
def webhook_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    with contextlib.ExitStack() as stack:
        with django_db_blocker.unblock():
            worker = stack.enter_context(
                start_worker(
                    WORKER_ENV,
                    concurrency=2,
                    log_dir=tmp_path_factory.mktemp("webhook-worker"),
                )
            )
        yield worker


def _wait(predicate, what: str, worker, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s\n{worker.log_tail()}")


def _finished(delivery_filter):
    def check():
        row = WebhookDelivery.objects.filter(**delivery_filter).first()
        return (
            row if row and row.status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED) else None
        )

    return check


def test_the_worker_delivers_a_decided_booking_signed(
    transactional_db, webhook_worker, org, other_org, member, make_endpoint, receiver
):
    ours = make_endpoint(receiver.url, events=["booking.confirmed", "booking.rejected"])
    theirs = make_endpoint(receiver.url, organization=other_org)
    pool = make_pool(nodes=1, per_node=2, code="GPU-WH")
    day = (dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=3)).astimezone(
        dt.timezone(dt.timedelta(hours=9))
    )
    at = day.replace(hour=10, minute=0, second=0, microsecond=0)
    booking = booking_request(
        actor=member, organization=org, resource_code=pool.code, quantity=2,
        start=at, end=at + dt.timedelta(hours=2),
    )  # fmt: skip

    delivery = _wait(_finished({"endpoint": ours}), "the delivery", webhook_worker)

    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert Booking.objects.get(pk=booking.pk).status == "confirmed"
    (received,) = receiver.wait_for(1)
    body = Webhook(ours.secret).verify(received.body, received.headers)
    assert body["type"] == "booking.confirmed"
    assert body["data"]["booking"]["id"] == booking.pk
    assert body["data"]["booking"]["organization"] == org.slug
    assert received.headers["webhook-id"] == delivery.event_id
    assert not WebhookDelivery.objects.filter(endpoint=theirs).exists()
    webhook_worker.drain()


def test_the_worker_retries_a_500_then_delivers(
    transactional_db, webhook_worker, org, make_endpoint, receiver
):
    receiver.answers = [(500, 0)]
    endpoint = make_endpoint(receiver.url)
    event = publish("booking.confirmed", organization_id=org.pk, data={"booking": {"id": 1}})

    delivery = _wait(_finished({"event_id": event.id}), "the retried delivery", webhook_worker)

    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, 2)
    one, two = receiver.wait_for(2)
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == event.id
    Webhook(endpoint.secret).verify(two.body, two.headers)
    statuses = list(
        delivery.attempt_log.order_by("number").values_list("response_status", flat=True)
    )
    assert statuses == [500, 200]
    webhook_worker.drain()


def test_the_worker_gives_up_on_a_receiver_that_stays_down(
    transactional_db, webhook_worker, org, make_endpoint
):
    endpoint = make_endpoint(closed_port_url())
    event = publish("booking.confirmed", organization_id=org.pk, data={"booking": {"id": 2}})

    delivery = _wait(_finished({"event_id": event.id}), "giving up", webhook_worker)

    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 3)  # 1 + 2 retries
    errors = set(delivery.attempt_log.values_list("error", flat=True))
    assert errors == {"could not connect: connection refused"}
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None
    assert endpoint.is_active  # the 24 h window has not passed
    webhook_worker.drain()
