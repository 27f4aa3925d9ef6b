"""testbed/postgresql: a persistent connection's health check without a round trip, on the real server.

An idle healthy connection is usable without a statement; one the server ended (here with
`pg_terminate_backend` from another session, as a restart or an idle timeout would) is not, and
the next request reconnects by itself.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]


def _admin_dsn() -> str:
    settings = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"] or "postgres",
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
    )


def test_the_backend_is_ours():
    assert type(connections["default"]).__module__ == "testbed.postgresql.base"


def test_a_healthy_idle_connection_is_usable_without_asking_the_server(monkeypatch):
    connection.ensure_connection()
    asked = []
    monkeypatch.setattr(
        "django.db.backends.postgresql.base.DatabaseWrapper.is_usable",
        lambda self: asked.append(1) or True,
    )
    with CaptureQueriesContext(connection) as captured:
        assert connection.is_usable() is True
    assert asked == [] and captured.captured_queries == []


def test_a_connection_the_server_ended_is_not_usable_and_the_next_use_reconnects():
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with psycopg.connect(_admin_dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while connection.is_usable() and time.monotonic() < deadline:
        time.sleep(0.05)  # the server's goodbye reaches the socket
    assert connection.is_usable() is False

    # What Django does before a request's or task's first query (CONN_HEALTH_CHECKS on):
    connection.health_check_done = False
    connection.close_if_health_check_failed()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def test_inside_a_transaction_the_check_asks_the_server(monkeypatch):
    from django.db import transaction

    asked = []
    monkeypatch.setattr(
        "django.db.backends.postgresql.base.DatabaseWrapper.is_usable",
        lambda self: asked.append(1) or True,
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert connection.is_usable() is True
    assert asked == [1]
