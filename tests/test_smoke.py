import pytest


@pytest.mark.postgres
def test_it_runs_on_postgres(db):
    from django.db import connection

    assert connection.vendor == "postgresql"


def test_it_serves_healthz(client, db):
    response = client.get("/healthz")
    assert response.status_code in (200, 503)
    assert set(response.json()) == {"database", "broker"}
