import pytest


@pytest.mark.postgres
def test_it_runs_on_postgres(db):
    from django.db import connection

    assert connection.vendor == "postgresql"


def test_it_serves_healthz(client, db):
    response = client.get("/healthz")
    assert response.status_code in (200, 503)
    assert set(response.json()) == {"database", "broker"}


def test_it_serves_the_portal_catalogue_at_the_root(client, db):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="catalogue-results"' in html
    assert '<form method="get" action="/" class="catalogue-filters"' in html


def test_the_old_front_page_is_gone():
    import importlib.util

    assert importlib.util.find_spec("booking.views") is None
    assert importlib.util.find_spec("booking.urls") is None
