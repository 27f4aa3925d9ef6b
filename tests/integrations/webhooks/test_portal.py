"""The webhooks page of my organisation: managers add, test, rotate and read the log."""

from __future__ import annotations

import re

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
    endpoint = WebhookEndpoint.objects.get()
    # Post/redirect/get: the answer to the POST holds no secret, so a reload cannot post again.
    assert made.status_code == 302 and made["Location"] == f"/organization/webhooks/{endpoint.pk}/"
    assert endpoint.secret not in made.content.decode()
    shown = client.get(made["Location"])
    assert shown.status_code == 200 and endpoint.secret in shown.content.decode()
    assert shown["Cache-Control"].startswith("no-store")
    reloaded = client.get(made["Location"])
    assert reloaded.status_code == 200 and endpoint.secret not in reloaded.content.decode()
    assert WebhookEndpoint.objects.count() == 1


def test_the_secret_is_shown_only_to_the_session_that_made_it(manager, org):
    client = _client(manager)
    client.post(
        "/organization/webhooks/",
        {"org": org.slug, "url": "http://127.0.0.1:9/hook", "event_types": ["booking.confirmed"]},
    )
    endpoint = WebhookEndpoint.objects.get()
    elsewhere = _client(manager).get(f"/organization/webhooks/{endpoint.pk}/")
    assert elsewhere.status_code == 200 and endpoint.secret not in elsewhere.content.decode()
    assert endpoint.secret in client.get(f"/organization/webhooks/{endpoint.pk}/").content.decode()


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
    assert rotated.status_code == 302 and endpoint.secret not in rotated.content.decode()
    assert endpoint.secret != old
    shown = client.get(rotated["Location"])
    assert endpoint.secret in shown.content.decode() and "no-store" in shown["Cache-Control"]
    assert endpoint.secret not in client.get(rotated["Location"]).content.decode()
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


HANGUL = re.compile(r"[\uac00-\ud7a3]")


def test_the_english_pages_say_delete_and_name_events_as_events(manager, make_endpoint):
    endpoint = make_endpoint("http://127.0.0.1:9/hook", events=("booking.cancelled",))
    client = _client(manager)
    client.cookies["django_language"] = "en"
    page = client.get(f"/organization/webhooks/{endpoint.pk}/").content.decode()
    assert ">Delete</button>" in page and "삭제" not in page
    assert "Booking cancelled" in page and "Cancel booking" not in page


def test_the_admin_lists_speak_one_language(admin_client, make_endpoint):
    make_endpoint("http://127.0.0.1:9/hook")
    admin_client.cookies["django_language"] = "en"
    english = admin_client.get("/admin/webhooks/webhookendpoint/").content.decode()
    headers = re.findall(r'<th scope="col"[^>]*>.*?</th>', english, flags=re.S)
    texts = [re.sub(r"<[^>]+>", " ", h).strip() for h in headers]
    assert {"URL", "Organisation", "Active", "Why it is off", "Last success"} <= {
        " ".join(t.split()) for t in texts
    }, texts
    assert not [t for t in texts if HANGUL.search(t)], texts
    assert "Webhook endpoints" in english  # the plural is its own msgid
    admin_client.cookies["django_language"] = "ko"
    korean = admin_client.get("/admin/webhooks/webhookendpoint/").content.decode()
    assert "볼 웹훅 엔드포인트 선택" in korean and "1웹훅" not in korean
    korean_headers = re.findall(r'<th scope="col"[^>]*>.*?</th>', korean, flags=re.S)
    assert "기관" in " ".join(korean_headers) and "Organization" not in " ".join(korean_headers)
