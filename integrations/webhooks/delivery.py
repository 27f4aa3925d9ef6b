"""Delivering events to webhook endpoints: fan-out, one attempt, retries, disabling, the log's end.

1. `event_fan_out` (the `event_published` receiver, after commit): one indexed query for the
   organisation's active endpoints, one delivery row per endpoint subscribed to the event, one
   Celery task per delivery (queued on commit). An organisation without endpoints costs one
   query that finds nothing; no cache to keep right (measured: docs/webhooks.md).
2. `delivery_attempt` (the task): claim the delivery with a conditional UPDATE (so a task run
   twice sends once), send outside any transaction, then record the attempt and decide: success;
   a retry at the next step of the schedule (settings.TESTBED_WEBHOOKS_RETRY_SCHEDULE, with
   jitter, never past the retry window); or failed. An endpoint that has failed without a single
   success for the whole window is disabled, its waiting deliveries failed, and its
   organisation's managers emailed.
3. `deliveries_retry_due` (beat, every 30 s) queues retries that are due — long delays are not
   left to the broker — and takes back deliveries whose worker died mid-request;
   `deliveries_prune` (beat, daily) deletes finished deliveries older than the log's retention.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from booking.choices import Role
from booking.events import PUBLIC_EVENTS, DomainEvent
from booking.models import Membership
from integrations.webhooks import sender
from integrations.webhooks.models import (
    DeliveryStatus,
    DisabledReason,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from integrations.webhooks.schedule import next_attempt_at, parse_schedule
from testbed import readcache
from testbed.audit import audit_record
from testbed.choices import Channel

logger = logging.getLogger(__name__)

TEST_EVENT = "webhook.test"  # sent by the test-delivery action only: one attempt, no retries
# Retries due within this many seconds are queued with a countdown; later ones wait for the
# beat sweep (a broker holding a message for hours may deliver it twice, or lose it).
COUNTDOWN_LIMIT_SECONDS = 900
CLAIM_GRACE = dt.timedelta(seconds=60)
SWEEP_BATCH = 500


def retry_window() -> dt.timedelta:
    return dt.timedelta(seconds=settings.TESTBED_WEBHOOKS_RETRY_WINDOW_SECONDS)


def event_body(*, type_: str, occurred_at: dt.datetime, data: dict) -> str:
    """The JSON every endpoint receives: {"type", "timestamp", "data"} (Standard Webhooks)."""
    return json.dumps(
        {"type": type_, "timestamp": timezone.localtime(occurred_at).isoformat(), "data": data},
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )


def _queue(delivery_id: int, *, countdown: float = 0) -> None:
    from integrations.webhooks.tasks import deliver

    def send() -> None:
        try:
            deliver.apply_async((delivery_id,), countdown=countdown or None)
        except Exception:  # the broker is down: the beat sweep queues it once it is back
            logger.warning("could not queue webhook delivery %s", delivery_id, exc_info=True)

    transaction.on_commit(send, robust=True)


# --- 1. fan-out ----------------------------------------------------------------------------------


def event_fan_out(event: DomainEvent) -> list[int]:
    """Delivery rows (and their tasks) for the endpoints of the event's organisation that asked
    for this event type. Returns their ids."""
    if event.type not in PUBLIC_EVENTS or event.organization_id is None:
        return []
    organization_id = event.organization_id
    # Read on every decision the organisation gets: kept in the read cache (testbed/readcache.py),
    # which any change to an endpoint drops.
    endpoints = readcache.get(
        ("webhook-endpoints", organization_id),
        lambda: list(
            WebhookEndpoint.objects.filter(
                organization_id=organization_id, is_active=True
            ).values_list("pk", "event_types")
        ),
    )
    targets = [pk for pk, types in endpoints if event.type in (types or ())]
    if not targets:
        return []
    body = event_body(type_=event.type, occurred_at=event.occurred_at, data=event.data)
    now = timezone.now()
    rows = [
        WebhookDelivery(
            endpoint_id=pk,
            event_id=event.id,
            event_type=event.type,
            body=body,
            next_attempt_at=now,
        )
        for pk in targets
    ]
    try:
        with transaction.atomic():
            created = WebhookDelivery.objects.bulk_create(rows)
    except IntegrityError:  # the same event announced twice: the first fan-out stands
        return []
    for row in created:
        _queue(row.pk)
    return [row.pk for row in created]


def on_event_published(sender, event: DomainEvent, **kwargs) -> None:
    """The `booking.events.event_published` receiver (connected in WebhooksConfig.ready)."""
    event_fan_out(event)


def test_delivery_create(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` event for this one endpoint, sent now (even while it is disabled, so a
    manager can check a fix before turning it back on)."""
    event = DomainEvent(
        type=TEST_EVENT,
        organization_id=endpoint.organization_id,
        data={
            "endpoint": {"id": endpoint.pk, "url": endpoint.url},
            "organization": endpoint.organization.slug,
            "message": "테스트 전송입니다 / This is a test delivery from testbed.",
        },
    )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id=event.id,
        event_type=TEST_EVENT,
        body=event_body(type_=TEST_EVENT, occurred_at=event.occurred_at, data=event.data),
        next_attempt_at=timezone.now(),
    )
    _queue(delivery.pk)
    return delivery


def redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now (same body, same webhook-id). A failed one gets one attempt; one
    still in its retry window continues its schedule if this attempt fails too."""
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).exclude(status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.PENDING, next_attempt_at=now, claimed_until=None
    )
    _queue(delivery.pk)
    delivery.refresh_from_db()
    return delivery


# --- 2. one attempt ------------------------------------------------------------------------------


def _claim(delivery_id: int, now: dt.datetime) -> bool:
    """Take the delivery for one attempt if it is due and nobody holds it (row count checked)."""
    lease = dt.timedelta(seconds=settings.TESTBED_WEBHOOKS_TIMEOUT_SECONDS * 2) + CLAIM_GRACE
    return bool(
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
        ).update(status=DeliveryStatus.SENDING, claimed_until=now + lease)
    )


def signing_secrets(endpoint: WebhookEndpoint, now: dt.datetime | None = None) -> list[str]:
    """The secrets a delivery is signed with now: the current one, then every rotated-out one
    still inside its 24 hours (newest first)."""
    return [endpoint.secret, *(entry["secret"] for entry in live_previous_secrets(endpoint, now))]


def live_previous_secrets(endpoint: WebhookEndpoint, now: dt.datetime | None = None) -> list[dict]:
    """The rotated-out secrets that still sign, newest first: [{"secret", "until"}]."""
    now = now or timezone.now()
    return [
        entry
        for entry in endpoint.previous_secrets or []
        if dt.datetime.fromisoformat(entry["until"]) > now
    ]


def delivery_attempt(*, delivery_id: int) -> str | None:
    """Make one attempt of a due delivery; returns its new status (None: not due, or taken)."""
    now = timezone.now()
    if not _claim(delivery_id, now):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    is_test = delivery.event_type == TEST_EVENT
    if not endpoint.is_active and not is_test:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED,
            next_attempt_at=None,
            claimed_until=None,
            last_error="the endpoint is disabled: not sent",
        )
        return DeliveryStatus.FAILED
    result = sender.send(
        url=endpoint.url,
        secrets=signing_secrets(endpoint, now),
        event_id=delivery.event_id,
        body=delivery.body,
    )
    return _record(delivery=delivery, endpoint=endpoint, result=result, started=now)


def _record(
    *,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
    result: sender.SendResult,
    started: dt.datetime,
) -> str:
    now = timezone.now()
    number = delivery.attempts + 1
    first = delivery.first_attempt_at or started
    is_test = delivery.event_type == TEST_EVENT
    if result.ok:
        status, following = DeliveryStatus.SUCCEEDED, None
    else:
        following = None
        if not is_test:
            following = next_attempt_at(
                attempts_made=number,
                first_attempt_at=first,
                now=now,
                schedule=parse_schedule(settings.TESTBED_WEBHOOKS_RETRY_SCHEDULE),
                window=retry_window(),
            )
        status = DeliveryStatus.PENDING if following else DeliveryStatus.FAILED
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            at=started,
            duration_ms=result.duration_ms,
            response_status=result.status,
            response_body=result.body,
            error=result.error,
            succeeded=result.ok,
        )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=status,
            attempts=number,
            first_attempt_at=first,
            last_attempt_at=started,
            next_attempt_at=following,
            claimed_until=None,
            last_error=result.error,
        )
        if not is_test:
            _endpoint_health(endpoint=endpoint, ok=result.ok, now=now, error=result.error)
    if following is not None:
        wait = max((following - timezone.now()).total_seconds(), 0)
        if wait <= COUNTDOWN_LIMIT_SECONDS:
            _queue(delivery.pk, countdown=wait)
    return status


def _endpoint_health(*, endpoint: WebhookEndpoint, ok: bool, now: dt.datetime, error: str) -> None:
    """Call inside the attempt's transaction. A success clears `failing_since`; a failure sets it
    (once), and disables the endpoint when it has failed for the whole retry window."""
    rows = WebhookEndpoint.objects.filter(pk=endpoint.pk)
    if ok:
        rows.update(failing_since=None, last_success_at=now)
        return
    rows.filter(failing_since=None).update(failing_since=now)
    disabled = rows.filter(is_active=True, failing_since__lte=now - retry_window()).update(
        is_active=False, disabled_reason=DisabledReason.FAILING, disabled_at=now
    )
    if disabled:
        endpoint.refresh_from_db()
        endpoint_disabled(endpoint=endpoint, error=error, now=now)


def endpoint_disabled(*, endpoint: WebhookEndpoint, error: str, now: dt.datetime) -> None:
    """The endpoint was just turned off for failing: fail what waits for it, audit, tell the
    managers (by email, after commit)."""
    WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.FAILED,
        next_attempt_at=None,
        last_error="the endpoint was disabled after failing for the whole retry window",
    )
    audit_record(
        actor=None,
        channel=Channel.SYSTEM,
        action="webhook_endpoint.disable",
        obj=endpoint,
        from_state="active",
        to_state="disabled",
        data={"failing_since": endpoint.failing_since.isoformat() if endpoint.failing_since else None,
              "last_error": error},
    )  # fmt: skip
    transaction.on_commit(
        lambda: endpoint_disabled_email_send(endpoint_id=endpoint.pk, error=error), robust=True
    )


def _managers_emails(organization_id: int) -> list[str]:
    return sorted(
        set(
            Membership.objects.filter(organization_id=organization_id, role=Role.MANAGER)
            .exclude(user__email="")
            .filter(user__is_active=True)
            .values_list("user__email", flat=True)
        )
    )


def endpoint_disabled_email_send(*, endpoint_id: int, error: str) -> int:
    """Tell the organisation's managers their endpoint was disabled, and how to turn it back on."""
    endpoint = WebhookEndpoint.objects.select_related("organization").filter(pk=endpoint_id).first()
    if endpoint is None:
        return 0
    recipients = _managers_emails(endpoint.organization_id)
    if not recipients:
        return 0
    hours = settings.TESTBED_WEBHOOKS_RETRY_WINDOW_SECONDS / 3600
    since = (
        f"{timezone.localtime(endpoint.failing_since):%Y-%m-%d %H:%M} (KST)"
        if endpoint.failing_since
        else "—"
    )
    base = settings.TESTBED_PUBLIC_URL or ""
    page = f"{base}/organization/webhooks/?org={endpoint.organization.slug}"
    subject = "[testbed] 웹훅 엔드포인트를 껐습니다 / webhook endpoint disabled"
    body = (
        f"{endpoint.organization.name}: {endpoint.url}\n"
        f"실패 시작 / failing since: {since}\n"
        f"마지막 오류 / last error: {error or '—'}\n\n"
        f"이 엔드포인트로 보낸 이벤트가 {hours:g}시간 동안 한 번도 성공하지 못해 전송을 멈췄습니다. "
        "수신 서버를 고친 뒤 테스트 전송으로 확인하고 다시 켜 주세요. 꺼져 있는 동안의 이벤트는 "
        "전송 기록에서 다시 보낼 수 있습니다.\n"
        f"Every delivery to this endpoint failed for {hours:g} hours, so it was disabled. Fix the "
        "receiver, check it with a test delivery, then enable the endpoint again (PATCH "
        '/api/v1/webhook-endpoints/{id} {"is_active": true}, or the page below). Failed '
        "deliveries can be sent again from the delivery log.\n\n"
        f"{page}\n"
    ).replace("{id}", str(endpoint.pk))
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)


# --- 3. periodic work ----------------------------------------------------------------------------


def deliveries_retry_due(*, now: dt.datetime | None = None) -> int:
    """Queue the deliveries whose next attempt is due, and take back lapsed claims."""
    now = now or timezone.now()
    WebhookDelivery.objects.filter(status=DeliveryStatus.SENDING, claimed_until__lt=now).update(
        status=DeliveryStatus.PENDING, claimed_until=None, next_attempt_at=now
    )
    due = list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for pk in due:
        _queue(pk)
    return len(due)


def deliveries_prune(*, now: dt.datetime | None = None) -> int:
    """Delete finished deliveries (and their attempts) older than TESTBED_WEBHOOKS_LOG_DAYS."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.TESTBED_WEBHOOKS_LOG_DAYS)
    total = 0
    while True:
        batch = list(
            WebhookDelivery.objects.filter(
                created_at__lt=cutoff,
                status__in=[DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED],
            ).values_list("pk", flat=True)[:1000]
        )
        if not batch:
            return total
        WebhookAttempt.objects.filter(delivery_id__in=batch).delete()
        total += (
            WebhookDelivery.objects.filter(pk__in=batch)
            .delete()[1]
            .get(WebhookDelivery._meta.label, 0)
        )
