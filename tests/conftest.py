"""Personas set up once per test: operator, manager, member (same org), outsider (other org)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from testbed.api.auth import token_for
from tests.factories import OrganizationFactory, UserFactory, add_member
from tests.worker import celery_worker, celery_worker_concurrency  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def deep_listen_backlog():
    """Django's live test server listens with socketserver's backlog of 5: 32 clients
    connecting at once would be reset by the kernel. (Production runs gunicorn.)"""
    from django.core.servers.basehttp import ThreadedWSGIServer

    previous = ThreadedWSGIServer.request_queue_size
    ThreadedWSGIServer.request_queue_size = 128
    yield
    ThreadedWSGIServer.request_queue_size = previous


@pytest.fixture(autouse=True)
def fresh_throttle_counts():
    """Throttle counters live in the cache (Redis under `make test`): start every test clean."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def fresh_read_cache():
    """Rows of an earlier test (flushed without signals) must not answer for this test's."""
    from testbed import readcache

    readcache.clear_local()
    yield
    readcache.clear_local()


@pytest.fixture
def operator(db):
    return UserFactory(username="operator", is_staff=True, is_superuser=True)


@pytest.fixture
def org(db):
    return OrganizationFactory(slug="acme", name="주식회사 에이크미")


@pytest.fixture
def other_org(db):
    return OrganizationFactory(slug="globex", name="글로벡스")


@pytest.fixture
def manager(org):
    user = UserFactory(username="manager")
    add_member(org, user, "manager")
    return user


@pytest.fixture
def member(org):
    user = UserFactory(username="member")
    add_member(org, user, "member")
    return user


@pytest.fixture
def outsider(other_org):
    user = UserFactory(username="outsider")
    add_member(other_org, user, "manager")
    return user


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    return client


@pytest.fixture
def api():
    """`api(user)` → an APIClient authenticated as that user (None: anonymous)."""
    return client_for
