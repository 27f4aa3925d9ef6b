"""Managing webhook endpoints: register, change, rotate the secret, delete, test, redeliver.

Who may: booking.services.access.access_organization_webhooks (managers and keys with
`webhooks:manage`; operators read only). Every change writes an audit entry. The signing secret
is returned only by `webhook_endpoint_create` and `webhook_endpoint_rotate_secret`.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets as random_secrets

from django.db import IntegrityError, transaction
from django.utils import timezone

from booking.events import PUBLIC_EVENTS
from booking.models import Organization
from booking.services.access import access_organization_webhooks
from integrations.webhooks import delivery as deliveries
from integrations.webhooks.addresses import check_endpoint_url
from integrations.webhooks.models import (
    DeliveryStatus,
    DisabledReason,
    WebhookDelivery,
    WebhookEndpoint,
)
from testbed.audit import audit_record
from testbed.errors import Conflict, NotFound, ServiceError

MAX_ENDPOINTS_PER_ORGANIZATION = 20
PREVIOUS_SECRET_VALIDITY = dt.timedelta(hours=24)
# Rotated-out secrets that may sign at once besides the current one (each for its 24 hours):
# rotating more often than this drops the oldest early.
MAX_PREVIOUS_SECRETS = 3
SECRET_BYTES = 32


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(random_secrets.token_bytes(SECRET_BYTES)).decode()


def check_event_types(event_types) -> list[str]:
    """The subscribed types, in the documented order, if they are a non-empty set of public events."""
    if isinstance(event_types, str) or not isinstance(event_types, list | tuple):
        raise ServiceError(
            f'`event_types` is a list of event names, e.g. ["{PUBLIC_EVENTS[0]}"].',
            field="event_types",
        )
    unknown = sorted({str(t) for t in event_types} - set(PUBLIC_EVENTS))
    if unknown:
        raise ServiceError(
            f"Unknown event type(s) {', '.join(unknown)}: choose among {', '.join(PUBLIC_EVENTS)}.",
            field="event_types",
        )
    if not event_types:
        raise ServiceError(
            f"Subscribe to at least one event: {', '.join(PUBLIC_EVENTS)}.", field="event_types"
        )
    return [t for t in PUBLIC_EVENTS if t in event_types]


def _check_description(description: str) -> str:
    description = (description or "").strip()
    if len(description) > 200:
        raise ServiceError("Keep the description within 200 characters.", field="description")
    return description


def _check_url_unused(*, organization: Organization, url: str, endpoint_id: int | None = None):
    """Conflict if another endpoint of the organisation has this URL (it would get every event
    twice). The unique constraint backs this up against a race."""
    others = WebhookEndpoint.objects.filter(organization=organization, url=url)
    if endpoint_id is not None:
        others = others.exclude(pk=endpoint_id)
    existing = others.values_list("pk", flat=True).first()
    if existing is not None:
        raise Conflict(
            f"Endpoint {existing} of this organisation already has this URL: subscribe it to "
            "more events instead of registering the URL twice (each event would arrive twice).",
            field="url",
        )


# --- reads with access ---------------------------------------------------------------------------


def access_webhook_endpoint(*, actor, endpoint_id: int, write: bool = False) -> WebhookEndpoint:
    """The endpoint, if the actor may see it (and change it, with `write`). Another
    organisation's endpoint answers NotFound, as if it did not exist."""
    endpoint = (
        WebhookEndpoint.objects.select_related("organization", "created_by")
        .filter(pk=endpoint_id)
        .first()
    )
    if endpoint is None:
        raise NotFound("No webhook endpoint with this id.")
    try:
        access_organization_webhooks(actor=actor, slug=endpoint.organization.slug, write=write)
    except NotFound:
        raise NotFound("No webhook endpoint with this id.") from None
    return endpoint


def access_webhook_delivery(*, actor, endpoint_id: int, delivery_id: int, write: bool = False):
    endpoint = access_webhook_endpoint(actor=actor, endpoint_id=endpoint_id, write=write)
    found = WebhookDelivery.objects.filter(pk=delivery_id, endpoint=endpoint).first()
    if found is None:
        raise NotFound("No delivery with this id for this endpoint.", field="delivery_id")
    found.endpoint = endpoint
    return endpoint, found


# --- changes -------------------------------------------------------------------------------------


def webhook_endpoint_create(
    *,
    actor,
    organization: Organization,
    url: str,
    event_types,
    description: str = "",
    channel: str,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its secret (shown once)."""
    url = check_endpoint_url(url)
    event_types = check_event_types(event_types)
    description = _check_description(description)
    secret = new_secret()
    with transaction.atomic():
        # One organisation at a time: the count below cannot be raced past the limit.
        Organization.objects.select_for_update().filter(pk=organization.pk).first()
        if (
            WebhookEndpoint.objects.filter(organization=organization).count()
            >= MAX_ENDPOINTS_PER_ORGANIZATION
        ):
            raise Conflict(
                f"An organisation has at most {MAX_ENDPOINTS_PER_ORGANIZATION} webhook endpoints: "
                "delete one you no longer use, or subscribe an existing one to more events.",
                field="url",
            )
        _check_url_unused(organization=organization, url=url)
        endpoint = WebhookEndpoint.objects.create(
            organization=organization,
            url=url,
            description=description,
            event_types=event_types,
            secret=secret,
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        audit_record(
            actor=actor,
            channel=channel,
            action="webhook_endpoint.create",
            obj=endpoint,
            to_state="active",
            data={"url": url, "event_types": event_types},
        )
    return endpoint, secret


def webhook_endpoint_update(
    *, actor, endpoint: WebhookEndpoint, channel: str, **changes
) -> WebhookEndpoint:
    """Change url, description, event_types or is_active. Turning an endpoint back on clears
    its failure record; turning it off (by a manager) fails nothing already sent."""
    fields: dict = {}
    if "url" in changes:
        fields["url"] = check_endpoint_url(changes["url"])
        _check_url_unused(
            organization=endpoint.organization, url=fields["url"], endpoint_id=endpoint.pk
        )
    if "event_types" in changes:
        fields["event_types"] = check_event_types(changes["event_types"])
    if "description" in changes:
        fields["description"] = _check_description(changes["description"])
    from_state = "active" if endpoint.is_active else "disabled"
    if "is_active" in changes and bool(changes["is_active"]) != endpoint.is_active:
        if changes["is_active"]:
            fields.update(
                is_active=True, disabled_reason=DisabledReason.NONE, disabled_at=None,
                failing_since=None,
            )  # fmt: skip
        else:
            fields.update(
                is_active=False, disabled_reason=DisabledReason.MANAGER, disabled_at=timezone.now()
            )
    if not fields:
        return endpoint
    try:
        with transaction.atomic():
            for name, value in fields.items():
                setattr(endpoint, name, value)
            endpoint.save(update_fields=[*fields, "updated_at"])
            audit_record(
                actor=actor,
                channel=channel,
                action="webhook_endpoint.update",
                obj=endpoint,
                from_state=from_state,
                to_state="active" if endpoint.is_active else "disabled",
                data={
                    k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                    for k, v in fields.items()
                    if k in ("url", "event_types", "description", "is_active")
                },
            )
    except IntegrityError:  # the same URL saved by someone else a moment ago
        if "url" not in fields:
            raise
        _check_url_unused(
            organization=endpoint.organization, url=fields["url"], endpoint_id=endpoint.pk
        )
        raise
    return endpoint


def webhook_endpoint_rotate_secret(
    *, actor, endpoint: WebhookEndpoint, keep_previous: bool = True, channel: str
) -> tuple[WebhookEndpoint, str]:
    """A new secret (returned, shown once). The one it replaces keeps signing alongside it for
    24 hours, and so do those rotated out earlier that are still inside their own 24 hours (at
    most MAX_PREVIOUS_SECRETS, the oldest dropped first), unless `keep_previous` is False (a
    leaked secret: every old one stops at once)."""
    secret = new_secret()
    now = timezone.now()
    with transaction.atomic():
        # Two rotations at once: the second sees the first's secret, not a stale copy.
        endpoint = (
            WebhookEndpoint.objects.select_for_update(of=("self",))
            .select_related("organization", "created_by")
            .get(pk=endpoint.pk)
        )
        if keep_previous:
            retired = {
                "secret": endpoint.secret,
                "until": (now + PREVIOUS_SECRET_VALIDITY).isoformat(),
            }
            previous = [retired, *deliveries.live_previous_secrets(endpoint, now)][
                :MAX_PREVIOUS_SECRETS
            ]
        else:
            previous = []
        endpoint.previous_secrets = previous
        endpoint.secret = secret
        endpoint.save(update_fields=["secret", "previous_secrets", "updated_at"])
        audit_record(
            actor=actor,
            channel=channel,
            action="webhook_endpoint.rotate_secret",
            obj=endpoint,
            data={"previous_valid_until": [entry["until"] for entry in previous]},
        )
    return endpoint, secret


def webhook_endpoint_delete(*, actor, endpoint: WebhookEndpoint, channel: str) -> None:
    """Delete the endpoint and its delivery log; nothing more is sent to it."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            channel=channel,
            action="webhook_endpoint.delete",
            obj=endpoint,
            from_state="active" if endpoint.is_active else "disabled",
            to_state="deleted",
            data={"url": endpoint.url, "organization": endpoint.organization_id},
        )
        endpoint.delete()


def webhook_endpoint_test(*, actor, endpoint: WebhookEndpoint, channel: str) -> WebhookDelivery:
    """Send a `webhook.test` event to this endpoint now (one attempt, logged like any other)."""
    with transaction.atomic():
        delivery = deliveries.test_delivery_create(endpoint=endpoint)
        audit_record(
            actor=actor, channel=channel, action="webhook_endpoint.test", obj=endpoint,
            data={"delivery": delivery.pk},
        )  # fmt: skip
    return delivery


def webhook_delivery_redeliver(
    *, actor, endpoint: WebhookEndpoint, delivery: WebhookDelivery, channel: str
) -> WebhookDelivery:
    """Send a logged delivery again now, with the same body and webhook-id."""
    if not endpoint.is_active and delivery.event_type != deliveries.TEST_EVENT:
        raise Conflict(
            "This endpoint is disabled: enable it first (is_active: true), then send again.",
            code="invalid_state",
            field="is_active",
        )
    if delivery.status == DeliveryStatus.SENDING:
        raise Conflict(
            "This delivery is being sent right now: wait for the attempt to finish.",
            code="invalid_state",
        )
    with transaction.atomic():
        delivery = deliveries.redeliver(delivery=delivery)
        audit_record(
            actor=actor, channel=channel, action="webhook_delivery.redeliver", obj=delivery,
            data={"endpoint": endpoint.pk, "event_id": delivery.event_id},
        )  # fmt: skip
    return delivery
