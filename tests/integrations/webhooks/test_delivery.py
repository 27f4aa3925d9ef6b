"""Delivery to a REAL local HTTP server, one attempt at a time (the task's function called
directly; tests/integrations/webhooks/test_worker.py runs the same through a Celery worker)."""

from __future__ import annotations

import datetime as dt
import json
import socket

import pytest
import time_machine
from django.core import mail
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from booking.events import DomainEvent
from integrations.webhooks import services
from integrations.webhooks.delivery import (
    deliveries_prune,
    deliveries_retry_due,
    delivery_attempt,
    event_fan_out,
)
from integrations.webhooks.models import (
    DeliveryStatus,
    DisabledReason,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from integrations.webhooks.sender import SNIPPET_BYTES
from testbed.models import AuditEntry
from tests.integrations.webhooks.receiver import closed_port_url

pytestmark = pytest.mark.django_db

BOOKING = {"booking": {"id": 7, "status": "confirmed", "organization": "acme"}}


def _event(org, type_="booking.confirmed", data=None) -> DomainEvent:
    return DomainEvent(type=type_, organization_id=org.pk, data=data or BOOKING)


def _one_delivery(org, event=None) -> WebhookDelivery:
    ids = event_fan_out(event or _event(org))
    assert len(ids) == 1
    return WebhookDelivery.objects.get(pk=ids[0])


def _verify(endpoint: WebhookEndpoint, received) -> dict:
    return Webhook(endpoint.secret).verify(received.body, received.headers)


def test_it_signs_a_delivery_the_receiver_verifies(org, make_endpoint, receiver):
    endpoint = make_endpoint(receiver.url)
    event = _event(org)
    delivery = _one_delivery(org, event)

    assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.SUCCEEDED

    (received,) = receiver.wait_for(1)
    body = _verify(endpoint, received)
    assert body["type"] == "booking.confirmed"
    assert body["data"] == BOOKING
    assert dt.datetime.fromisoformat(body["timestamp"]) == event.occurred_at
    assert received.headers["webhook-id"] == event.id
    assert received.headers["content-type"] == "application/json"
    assert received.path == "/hooks/testbed"
    with pytest.raises(WebhookVerificationError):  # another secret does not verify it
        Webhook(services.new_secret()).verify(received.body, received.headers)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("succeeded", 1, None)
    attempt = delivery.attempt_log.get()
    assert (attempt.number, attempt.response_status, attempt.succeeded) == (1, 200, True)
    assert attempt.response_body == '{"ok": true}'
    endpoint.refresh_from_db()
    assert endpoint.last_success_at is not None and endpoint.failing_since is None


def test_it_runs_an_attempt_once_even_when_the_task_runs_twice(org, make_endpoint, receiver):
    make_endpoint(receiver.url)
    delivery = _one_delivery(org)
    assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.SUCCEEDED
    assert delivery_attempt(delivery_id=delivery.pk) is None
    assert len(receiver.requests) == 1


def test_a_receiver_that_is_down_is_retried_on_schedule(org, make_endpoint):
    endpoint = make_endpoint(closed_port_url())
    delivery = _one_delivery(org)
    before = timezone.now()

    assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.PENDING

    delivery.refresh_from_db()
    attempt = delivery.attempt_log.get()
    assert attempt.response_status is None
    assert "connection refused" in attempt.error
    assert delivery.last_error == attempt.error
    waited = (delivery.next_attempt_at - before).total_seconds()
    assert 5 * 0.9 <= waited <= 5 * 1.1 + 5  # the first retry: 5 s, give or take the jitter
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None and endpoint.is_active


def test_a_slow_receiver_times_out(org, make_endpoint, receiver):
    receiver.default = (200, 3.0)  # the sender waits 1 s (conftest)
    make_endpoint(receiver.url)
    delivery = _one_delivery(org)

    assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.PENDING

    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert "timed out" in attempt.error
    assert attempt.response_status is None


def test_a_500_is_retried_with_the_same_id_and_body_then_succeeds(org, make_endpoint, receiver):
    receiver.answers = [(500, 0)]
    endpoint = make_endpoint(receiver.url)
    delivery = _one_delivery(org)

    assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.PENDING
    delivery.refresh_from_db()
    first = delivery.attempt_log.get()
    assert first.response_status == 500 and first.error == "answered HTTP 500"
    assert len(first.response_body) == SNIPPET_BYTES  # the receiver sent 6800 bytes: bounded
    assert delivery_attempt(delivery_id=delivery.pk) is None  # not due yet

    with time_machine.travel(delivery.next_attempt_at, tick=False):
        assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.SUCCEEDED

    one, two = receiver.wait_for(2)
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == delivery.event_id
    assert one.body == two.body
    assert _verify(endpoint, two)["type"] == "booking.confirmed"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert [a.succeeded for a in delivery.attempt_log.order_by("number")] == [False, True]
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None  # a success clears the failure record


def test_a_redirect_is_not_followed(org, make_endpoint, receiver):
    receiver.answers = [(302, 0)]
    make_endpoint(receiver.url)
    delivery = _one_delivery(org)
    assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.PENDING
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.response_status == 302
    assert "redirects are not followed" in attempt.error
    assert len(receiver.requests) == 1


def test_after_24_hours_of_failure_the_endpoint_is_disabled_and_managers_told(
    org, manager, member, make_endpoint, monkeypatch, django_capture_on_commit_callbacks
):
    queued: list[tuple[int, float]] = []
    monkeypatch.setattr(
        "integrations.webhooks.delivery._queue",
        lambda pk, countdown=0: queued.append((pk, countdown)),
    )
    endpoint = make_endpoint(closed_port_url())
    delivery = _one_delivery(org)
    start = timezone.now()
    waiting = _one_delivery(org, _event(org, data={"booking": {"id": 8}}))  # another event queued

    moments = [start]
    with (
        time_machine.travel(start, tick=False) as traveller,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.PENDING
        while True:
            delivery.refresh_from_db()
            if delivery.status != DeliveryStatus.PENDING:
                break
            traveller.move_to(delivery.next_attempt_at)
            moments.append(delivery.next_attempt_at)
            delivery_attempt(delivery_id=delivery.pk)
            assert len(moments) < 20

    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 8  # the first and seven retries
    assert moments[-1] - start == dt.timedelta(hours=24)
    gaps = [(b - a).total_seconds() for a, b in zip(moments, moments[1:], strict=False)]
    for gap, nominal in zip(gaps, [5, 300, 1800, 7200, 18000, 36000], strict=False):
        assert nominal * 0.9 <= gap <= nominal * 1.1
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert endpoint.disabled_reason == DisabledReason.FAILING
    waiting.refresh_from_db()
    assert waiting.status == DeliveryStatus.FAILED  # nothing more waits for a disabled endpoint
    (message,) = mail.outbox
    assert message.to == [manager.email]  # managers only, not the member
    assert endpoint.url in message.body and "24" in message.body
    assert AuditEntry.objects.filter(
        action="webhook_endpoint.disable", object_id=str(endpoint.pk)
    ).exists()
    assert event_fan_out(_event(org)) == []  # no new deliveries for a disabled endpoint
    # Short waits were queued with a countdown; the hours-long ones are left to the beat sweep.
    countdowns = [c for pk, c in queued if pk == delivery.pk]
    assert countdowns[0] == 0  # the first attempt, at once
    assert len(countdowns) == 3 and all(4 < c <= 330 for c in countdowns[1:])


def test_an_organisation_never_receives_another_organisations_event(
    org, other_org, make_endpoint, receiver
):
    ours = make_endpoint(receiver.url, events=["booking.confirmed", "booking.cancelled"])
    theirs = make_endpoint(receiver.url, organization=other_org)
    make_endpoint(
        receiver.url + "?rejected", events=["booking.rejected"]
    )  # not subscribed to this type
    make_endpoint(receiver.url + "?off", is_active=False)  # turned off

    ids = event_fan_out(_event(org))
    assert list(WebhookDelivery.objects.filter(pk__in=ids).values_list("endpoint", flat=True)) == [
        ours.pk
    ]
    assert event_fan_out(_event(org, type_="booking.completed")) == []  # internal event
    assert event_fan_out(DomainEvent("booking.confirmed", None, BOOKING)) == []

    for pk in ids:
        delivery_attempt(delivery_id=pk)
    (received,) = receiver.wait_for(1)
    assert _verify(ours, received)["data"] == BOOKING
    with pytest.raises(WebhookVerificationError):
        _verify(theirs, received)
    assert not WebhookDelivery.objects.filter(endpoint=theirs).exists()


def test_a_test_delivery_reaches_the_one_endpoint_once(org, manager, make_endpoint, receiver):
    endpoint = make_endpoint(receiver.url)
    other = make_endpoint(receiver.url + "?other")
    delivery = services.webhook_endpoint_test(actor=manager, endpoint=endpoint, channel="api")
    assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.SUCCEEDED
    (received,) = receiver.wait_for(1)
    body = _verify(endpoint, received)
    assert body["type"] == "webhook.test"
    assert body["data"]["endpoint"] == {"id": endpoint.pk, "url": endpoint.url}
    assert not WebhookDelivery.objects.filter(endpoint=other).exists()


def test_a_failed_test_delivery_is_not_retried_and_leaves_the_endpoint_healthy(
    org, manager, make_endpoint
):
    endpoint = make_endpoint(closed_port_url())
    delivery = services.webhook_endpoint_test(actor=manager, endpoint=endpoint, channel="api")
    assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.FAILED
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_delivery_refuses_a_private_address_even_if_saved_or_resolved_later(
    org, make_endpoint, monkeypatch, settings
):
    private = make_endpoint("https://10.1.2.3/hook")  # saved before a check, or by hand
    renamed = make_endpoint("https://hooks.acme.kr/hook")  # DNS now points inside
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "hooks.acme.kr":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.0.10", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    ids = event_fan_out(_event(org))
    assert len(ids) == 2
    for pk in ids:
        delivery_attempt(delivery_id=pk)
    errors = dict(WebhookAttempt.objects.values_list("delivery__endpoint", "error"))
    assert "private" in errors[private.pk] and errors[private.pk].startswith("refused")
    assert "192.168.0.10" in errors[renamed.pk]


def test_delivery_refuses_localhost_when_plain_http_is_not_allowed(
    org, make_endpoint, receiver, settings
):
    make_endpoint(receiver.url)
    settings.TESTBED_WEBHOOKS_ALLOW_HTTP = False
    delivery = _one_delivery(org)
    delivery_attempt(delivery_id=delivery.pk)
    assert "localhost" in WebhookAttempt.objects.get(delivery=delivery).error
    assert receiver.requests == []


def test_after_a_rotation_both_secrets_sign_for_a_day(org, manager, make_endpoint, receiver):
    endpoint = make_endpoint(receiver.url)
    old = endpoint.secret
    endpoint, new = services.webhook_endpoint_rotate_secret(
        actor=manager, endpoint=endpoint, channel="api"
    )
    assert new != old and new.startswith("whsec_")
    delivery_attempt(delivery_id=_one_delivery(org).pk)
    (received,) = receiver.wait_for(1)
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(received.body, received.headers)
    Webhook(new).verify(received.body, received.headers)

    services.webhook_endpoint_rotate_secret(
        actor=manager, endpoint=endpoint, keep_previous=False, channel="api"
    )
    endpoint.refresh_from_db()
    delivery_attempt(delivery_id=_one_delivery(org, _event(org, data={"n": 2})).pk)
    received = receiver.wait_for(2)[1]
    assert len(received.headers["webhook-signature"].split(" ")) == 1
    Webhook(endpoint.secret).verify(received.body, received.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(received.body, received.headers)


def test_redelivery_sends_the_same_event_again(org, manager, make_endpoint, receiver):
    endpoint = make_endpoint(receiver.url)
    delivery = _one_delivery(org)
    delivery_attempt(delivery_id=delivery.pk)
    services.webhook_delivery_redeliver(
        actor=manager, endpoint=endpoint, delivery=delivery, channel="api"
    )
    assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.SUCCEEDED
    one, two = receiver.wait_for(2)
    assert one.headers["webhook-id"] == two.headers["webhook-id"]
    assert json.loads(one.body) == json.loads(two.body)
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 2


def test_the_sweep_takes_back_lapsed_attempts_and_queues_due_ones(org, make_endpoint):
    endpoint = make_endpoint("https://hooks.acme.kr/hook")
    now = timezone.now()
    lapsed = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id="evt_1", event_type="booking.confirmed", body="{}",
        status=DeliveryStatus.SENDING, claimed_until=now - dt.timedelta(seconds=1),
    )  # fmt: skip
    later = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id="evt_2", event_type="booking.confirmed", body="{}",
        next_attempt_at=now + dt.timedelta(hours=1),
    )  # fmt: skip
    assert deliveries_retry_due(now=now) == 1
    lapsed.refresh_from_db()
    later.refresh_from_db()
    assert lapsed.status == DeliveryStatus.PENDING
    assert later.status == DeliveryStatus.PENDING and later.next_attempt_at > now


def test_the_log_is_pruned_after_its_retention(org, make_endpoint, settings):
    settings.TESTBED_WEBHOOKS_LOG_DAYS = 30
    endpoint = make_endpoint("https://hooks.acme.kr/hook")
    rows = {}
    for name, status in [("old_done", "succeeded"), ("old_failed", "failed"),
                         ("old_pending", "pending"), ("new_done", "succeeded")]:  # fmt: skip
        rows[name] = WebhookDelivery.objects.create(
            endpoint=endpoint, event_id=name, event_type="booking.confirmed", body="{}",
            status=status,
        )  # fmt: skip
        WebhookAttempt.objects.create(delivery=rows[name], number=1, at=timezone.now())
    WebhookDelivery.objects.filter(event_id__startswith="old").update(
        created_at=timezone.now() - dt.timedelta(days=31)
    )
    assert deliveries_prune() == 2
    assert set(WebhookDelivery.objects.values_list("event_id", flat=True)) == {
        "old_pending",
        "new_done",
    }
    assert WebhookAttempt.objects.count() == 2


def test_after_two_rotations_in_a_day_every_earlier_secret_still_verifies(
    org, manager, make_endpoint, receiver
):
    endpoint = make_endpoint(receiver.url)
    first = endpoint.secret
    endpoint, second = services.webhook_endpoint_rotate_secret(
        actor=manager, endpoint=endpoint, channel="api"
    )
    endpoint, third = services.webhook_endpoint_rotate_secret(
        actor=manager, endpoint=endpoint, channel="api"
    )
    delivery = _one_delivery(org)

    assert delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.SUCCEEDED

    (received,) = receiver.wait_for(1)
    assert len(received.headers["webhook-signature"].split()) == 3
    for secret in (third, second, first):  # a receiver still on the first secret loses nothing
        assert Webhook(secret).verify(received.body, received.headers)["data"] == BOOKING
