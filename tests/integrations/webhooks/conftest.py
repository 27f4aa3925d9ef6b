"""Webhook tests: plain http to 127.0.0.1 allowed, short timeouts, a real receiving server."""

from __future__ import annotations

import pytest

from integrations.webhooks.models import WebhookEndpoint
from integrations.webhooks.services import new_secret
from tests.integrations.webhooks.receiver import Receiver, start_receiver

TIMEOUT_SECONDS = 1


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.TESTBED_WEBHOOKS_ALLOW_HTTP = True
    settings.DEBUG = False
    settings.TESTBED_WEBHOOKS_TIMEOUT_SECONDS = TIMEOUT_SECONDS
    settings.TESTBED_WEBHOOKS_RETRY_SCHEDULE = "5,300,1800,7200,18000,36000,36000"
    settings.TESTBED_WEBHOOKS_RETRY_WINDOW_SECONDS = 86400
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return settings


@pytest.fixture
def receiver():
    r = start_receiver(Receiver())
    yield r
    assert r.server is not None
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def make_endpoint(org, manager):
    def make(url: str, *, organization=None, events=("booking.confirmed",), **fields):
        return WebhookEndpoint.objects.create(
            organization=organization or org,
            url=url,
            event_types=list(events),
            secret=new_secret(),
            created_by=manager,
            **fields,
        )

    return make
