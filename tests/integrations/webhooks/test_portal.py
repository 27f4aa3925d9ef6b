"""The webhooks page of my organisation: managers add, test, rotate and read the log."""

from __future__ import annotations

import pytest
from django.test import Client

from integrations.webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_manager_adds_an_endpoint_and_sees_the_secret_once(manager, org):
    client = _client(manager)
    page = client.get("/organization/webhooks/")
    assert page.status_code == 200 and "새 엔드포인트" in page.content.decode()
    made = client.post(
        "/organization/webhooks/",
        {"org": org.slug, "url": "http://127.0.0.1:9/hook", "event_types": ["booking.confirmed"]},
    )
    assert made.status_code == 201
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret in made.content.decode()
    assert made["Cache-Control"].startswith("no-store")
    detail = client.get(f"/organization/webhooks/{endpoint.pk}/").content.decode()
    assert endpoint.secret not in detail


def test_bad_input_is_shown_on_the_form(manager, org):
    response = _client(manager).post(
        "/organization/webhooks/", {"org": org.slug, "url": "http://hooks.acme.kr/x"}
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "https" in body and "이벤트를 하나 이상 고르세요." in body
    assert not WebhookEndpoint.objects.exists()


def test_a_manager_tests_rotates_and_turns_off(manager, org, make_endpoint):
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    client = _client(manager)
    assert client.post(f"/organization/webhooks/{endpoint.pk}/test/").status_code == 302
    assert WebhookDelivery.objects.filter(endpoint=endpoint, event_type="webhook.test").exists()
    rotated = client.post(f"/organization/webhooks/{endpoint.pk}/rotate/")
    old = endpoint.secret
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.secret in rotated.content.decode()
    client.post(f"/organization/webhooks/{endpoint.pk}/update/", {"event_types": ["booking.moved"]})
    endpoint.refresh_from_db()
    assert (endpoint.event_types, endpoint.is_active) == (["booking.moved"], False)
    log = client.get(f"/organization/webhooks/{endpoint.pk}/").content.decode()
    assert "webhook.test" in log


def test_members_and_outsiders_are_kept_out(member, outsider, make_endpoint):
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    assert _client(member).get(f"/organization/webhooks/{endpoint.pk}/").status_code == 403
    assert _client(outsider).get(f"/organization/webhooks/{endpoint.pk}/").status_code == 404
    assert (
        _client(outsider).post(f"/organization/webhooks/{endpoint.pk}/delete/").status_code == 404
    )
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_an_operator_reads_but_does_not_change(operator, org, make_endpoint):
    endpoint = make_endpoint("http://127.0.0.1:9/hook")
    client = _client(operator)
    page = client.get(f"/organization/webhooks/?org={org.slug}")
    assert page.status_code == 200 and "새 엔드포인트" not in page.content.decode()
    assert client.get(f"/organization/webhooks/{endpoint.pk}/").status_code == 200
    assert client.post(f"/organization/webhooks/{endpoint.pk}/rotate/").status_code == 403
