"""The webhook endpoints API: managers and keys with `webhooks:manage`; operators read only."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from booking.services.api_keys import api_key_create
from integrations.webhooks.delivery import signing_secrets
from integrations.webhooks.models import WebhookDelivery, WebhookEndpoint
from testbed.models import AuditEntry

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhook-endpoints"


@pytest.fixture
def as_manager(api, manager):
    return api(manager)


def _create(client, **body):
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["booking.confirmed"], **body}
    return client.post(URL, body, format="json")


def test_it_registers_an_endpoint_and_shows_the_secret_once(as_manager, org, manager):
    response = _create(
        as_manager, description="ERP", event_types=["quota.threshold", "booking.confirmed"]
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["secret"].startswith("whsec_")
    Webhook(data["secret"])  # a valid Standard Webhooks secret
    assert data["organization"] == org.slug and data["created_by"] == manager.username
    assert data["event_types"] == ["booking.confirmed", "quota.threshold"]  # documented order
    assert response["Cache-Control"].startswith("no-store")
    again = as_manager.get(f"{URL}/{data['id']}").json()
    assert "secret" not in again
    listed = as_manager.get(URL).json()
    assert [e["id"] for e in listed["results"]] == [data["id"]]
    assert "secret" not in listed["results"][0]
    assert AuditEntry.objects.filter(action="webhook_endpoint.create").count() == 1


def test_a_repeated_create_with_the_same_idempotency_key_makes_one(as_manager):
    first = as_manager.post(
        URL, {"url": "http://127.0.0.1:9/h", "event_types": ["booking.confirmed"]},
        format="json", HTTP_IDEMPOTENCY_KEY="k-1",
    )  # fmt: skip
    second = as_manager.post(
        URL, {"url": "http://127.0.0.1:9/h", "event_types": ["booking.confirmed"]},
        format="json", HTTP_IDEMPOTENCY_KEY="k-1",
    )  # fmt: skip
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == second.json()
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"event_types": []}, "event_types", "at least one"),
        ({"event_types": ["booking.completed"]}, "event_types", "Unknown event"),
        ({"event_types": "booking.confirmed"}, "event_types", ""),
        ({"url": "http://hooks.acme.kr/x"}, "url", "https"),
        ({"url": "https://10.0.0.1/x"}, "url", "private"),
        ({"url": ""}, "url", ""),
    ],
)
def test_it_refuses_bad_input_naming_the_field(as_manager, body, field, says):
    response = _create(as_manager, **body)
    assert response.status_code == 400
    problem = response.json()
    assert response["Content-Type"].startswith("application/problem+json")
    assert field in problem["errors"]
    assert says in problem["detail"]
    assert not WebhookEndpoint.objects.exists()


def test_a_member_may_not_register_or_see_endpoints(api, member, as_manager):
    _create(as_manager)
    client = api(member)
    refused = _create(client)
    assert refused.status_code == 403
    listed = client.get(URL)  # refused as on one endpoint, not answered with an empty list
    assert listed.status_code == 403 and "managers" in listed.json()["detail"]
    endpoint = WebhookEndpoint.objects.get()
    assert client.get(f"{URL}/{endpoint.pk}").status_code == 403


def test_an_outsider_sees_nothing_of_another_organisation(api, as_manager, outsider):
    endpoint = _create(as_manager).json()
    client = api(outsider)
    assert client.get(f"{URL}/{endpoint['id']}").status_code == 404
    assert (
        client.patch(f"{URL}/{endpoint['id']}", {"is_active": False}, format="json").status_code
        == 404
    )
    assert client.get(URL).json()["results"] == []
    assert client.get(URL, {"organization": "acme"}).status_code == 404


def test_it_updates_events_and_turns_an_endpoint_off_and_on(as_manager):
    endpoint = _create(as_manager).json()
    WebhookEndpoint.objects.filter(pk=endpoint["id"]).update(
        is_active=False, disabled_reason="failing", failing_since="2026-01-01T00:00:00+09:00"
    )
    response = as_manager.patch(
        f"{URL}/{endpoint['id']}",
        {"event_types": ["booking.cancelled"], "is_active": True},
        format="json",
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["event_types"] == ["booking.cancelled"]
    assert (data["is_active"], data["disabled_reason"], data["failing_since"]) == (True, "", None)
    bad = as_manager.patch(f"{URL}/{endpoint['id']}", {"event_types": []}, format="json")
    assert bad.status_code == 400 and "event_types" in bad.json()["errors"]


def test_it_rotates_the_secret_and_deletes(as_manager):
    endpoint = _create(as_manager).json()
    rotated = as_manager.post(f"{URL}/{endpoint['id']}/rotate-secret", {}, format="json").json()
    assert rotated["secret"] != endpoint["secret"]
    assert rotated["previous_secret_valid_until"] is not None
    now_only = as_manager.post(
        f"{URL}/{endpoint['id']}/rotate-secret", {"keep_previous": False}, format="json"
    ).json()
    assert now_only["previous_secret_valid_until"] is None
    assert as_manager.delete(f"{URL}/{endpoint['id']}").status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_test_delivery_and_the_log(as_manager):
    endpoint = _create(as_manager).json()
    queued = as_manager.post(f"{URL}/{endpoint['id']}/test")
    assert queued.status_code == 202
    assert queued.json()["event_type"] == "webhook.test"
    log = as_manager.get(f"{URL}/{endpoint['id']}/deliveries").json()
    assert [d["event_type"] for d in log["results"]] == ["webhook.test"]
    one = as_manager.get(f"{URL}/{endpoint['id']}/deliveries/{queued.json()['id']}").json()
    assert one["body"]["type"] == "webhook.test"
    assert (
        as_manager.get(f"{URL}/{endpoint['id']}/deliveries", {"status": "bogus"}).status_code == 400
    )
    again = as_manager.post(f"{URL}/{endpoint['id']}/deliveries/{queued.json()['id']}/redeliver")
    assert again.status_code == 202


def test_redelivery_to_a_disabled_endpoint_is_refused(as_manager):
    endpoint = _create(as_manager).json()
    delivery = WebhookDelivery.objects.create(
        endpoint_id=endpoint["id"], event_id="evt_x", event_type="booking.confirmed", body="{}",
        status="failed",
    )  # fmt: skip
    as_manager.patch(f"{URL}/{endpoint['id']}", {"is_active": False}, format="json")
    response = as_manager.post(f"{URL}/{endpoint['id']}/deliveries/{delivery.pk}/redeliver")
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_state"


def test_operators_list_failing_endpoints_across_organisations_and_change_none(
    api, operator, as_manager, outsider
):
    ours = _create(as_manager).json()
    theirs = _create(api(outsider)).json()
    WebhookEndpoint.objects.filter(pk=theirs["id"]).update(
        failing_since="2026-01-01T00:00:00+09:00"
    )
    client = api(operator)
    assert {e["id"] for e in client.get(URL).json()["results"]} == {ours["id"], theirs["id"]}
    failing = client.get(URL, {"failing": "true"}).json()["results"]
    assert [e["id"] for e in failing] == [theirs["id"]]
    assert client.get(f"{URL}/{ours['id']}/deliveries").status_code == 200
    assert (
        client.patch(f"{URL}/{ours['id']}", {"is_active": False}, format="json").status_code == 403
    )
    assert _create(client, organization="acme").status_code == 403


def test_a_key_needs_the_webhooks_scope(org, manager):
    _k, with_scope = api_key_create(
        actor=manager, organization=org, name="erp", scopes=["webhooks:manage"], channel="api"
    )
    _k, without = api_key_create(
        actor=manager, organization=org, name="ro", scopes=["bookings:read"], channel="api"
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {with_scope}")
    made = _create(client)
    assert made.status_code == 201
    assert made.json()["organization"] == org.slug
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {without}")
    refused = _create(client)
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"


def test_the_schema_describes_each_event_body(api, operator):
    from booking.events import PUBLIC_EVENTS

    schema = api(operator).get("/api/schema/", {"format": "json"}).json()
    components = schema["components"]["schemas"]
    for event_type in PUBLIC_EVENTS:
        name = "WebhookEvent_" + event_type.replace(".", "_")
        assert components[name]["properties"]["type"]["enum"] == [event_type]
        assert name in str(schema["x-webhooks"][event_type])
    assert "/api/v1/webhook-endpoints/{id}/rotate-secret/" in schema["paths"]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("secret", "whsec_" + "A" * 44, "rotate-secret"),
        ("organization", "globex", "cannot move"),
        ("id", 99, "cannot be changed"),
    ],
)
def test_a_patch_of_a_field_that_cannot_change_is_refused_naming_it(as_manager, field, value, says):
    endpoint = _create(as_manager).json()
    response = as_manager.patch(
        f"{URL}/{endpoint['id']}", {"description": "x", field: value}, format="json"
    )
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [field] and says in response.json()["detail"]
    stored = WebhookEndpoint.objects.get()
    assert (stored.description, stored.organization.slug) == ("", "acme")
    assert stored.secret == endpoint["secret"]


def test_the_same_url_is_registered_once_per_organisation(as_manager, api, outsider):
    first = _create(as_manager, url="http://127.0.0.1:9/same").json()
    again = _create(as_manager, url=" http://127.0.0.1:9/same ")
    assert again.status_code == 409, again.content
    body = again.json()
    assert body["code"] == "conflict" and list(body["errors"]) == ["url"]
    assert str(first["id"]) in body["detail"]
    other = _create(as_manager, url="http://127.0.0.1:9/other").json()
    moved = as_manager.patch(
        f"{URL}/{other['id']}", {"url": "http://127.0.0.1:9/same"}, format="json"
    )
    assert moved.status_code == 409 and list(moved.json()["errors"]) == ["url"]
    assert _create(api(outsider), url="http://127.0.0.1:9/same").status_code == 201  # its own
    assert WebhookEndpoint.objects.filter(url="http://127.0.0.1:9/same").count() == 2


def test_rotating_twice_keeps_both_earlier_secrets_signing_for_their_24_hours(as_manager):
    made = _create(as_manager).json()
    first = made["secret"]
    second = as_manager.post(f"{URL}/{made['id']}/rotate-secret", {}, format="json").json()
    third = as_manager.post(f"{URL}/{made['id']}/rotate-secret", {}, format="json").json()
    endpoint = WebhookEndpoint.objects.get()
    assert signing_secrets(endpoint) == [third["secret"], second["secret"], first]
    assert len(third["previous_secrets_valid_until"]) == 2
    assert third["previous_secret_valid_until"] == third["previous_secrets_valid_until"][0]
    for _ in range(3):  # bounded: at most three earlier secrets sign alongside the current one
        as_manager.post(f"{URL}/{made['id']}/rotate-secret", {}, format="json")
    endpoint.refresh_from_db()
    assert len(signing_secrets(endpoint)) == 4 and first not in signing_secrets(endpoint)
    later = timezone.now() + dt.timedelta(hours=24, seconds=1)
    assert signing_secrets(endpoint, later) == [endpoint.secret]  # each lapses after 24 hours
    as_manager.post(f"{URL}/{made['id']}/rotate-secret", {"keep_previous": False}, format="json")
    endpoint.refresh_from_db()
    assert signing_secrets(endpoint) == [endpoint.secret]


def test_a_delivery_shows_the_exact_signed_bytes_and_the_documented_re_encoding_matches(
    as_manager,
):
    endpoint = _create(as_manager, description="한글 설명").json()
    queued = as_manager.post(f"{URL}/{endpoint['id']}/test").json()
    one = as_manager.get(f"{URL}/{endpoint['id']}/deliveries/{queued['id']}").json()
    stored = WebhookDelivery.objects.get(pk=queued["id"]).body
    assert one["raw_body"] == stored and isinstance(one["body"], dict)
    # docs/webhooks.md: re-encoding the parsed body this way gives the signed bytes back.
    again = json.dumps(one["body"], separators=(",", ":"), ensure_ascii=False)
    assert again.encode() == stored.encode()
