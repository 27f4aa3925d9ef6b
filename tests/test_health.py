"""GET /healthz: 200 when the database and the broker both answer, 503 otherwise."""

from __future__ import annotations

import socket
import time

import pytest
from django.db import OperationalError

from testbed.celery import app as celery_app

URL = "/healthz"


def closed_port() -> int:
    """A local port nothing listens on (just released by us)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def broker_down(monkeypatch):
    """Point the Celery app at a closed port.

    Celery reads CELERY_BROKER_URL from the environment before its own configuration, so
    both are changed.
    """
    url = f"redis://127.0.0.1:{closed_port()}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    monkeypatch.setitem(celery_app.conf, "broker_url", url)
    assert celery_app.conf.broker_write_url == url
    return url


@pytest.mark.redis
def test_it_answers_200_when_the_database_and_redis_answer(client, db):
    response = client.get(URL)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"database": "ok", "broker": "ok"}


def test_it_needs_no_sign_in(client, db):
    assert client.get(URL).status_code in (200, 503)


def test_it_answers_503_when_the_broker_is_down(client, db, broker_down):
    started = time.monotonic()
    response = client.get(URL)

    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "unavailable"}
    assert time.monotonic() - started < 15, "a dead broker must not hang the health check"


def test_it_answers_503_when_the_database_is_down(client, db, monkeypatch):
    from django.db import connection

    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:  # undone before the db fixture rolls back
        patch.setattr(connection, "cursor", refuse)
        response = client.get(URL)

    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"


def test_it_only_answers_get(client, db):
    assert client.post(URL).status_code == 405
