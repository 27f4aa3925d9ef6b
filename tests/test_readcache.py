"""The read-mostly cache (testbed/readcache.py): fast on repeat, dropped on every change, never
the reason a valid request is refused or a revoked credential accepted."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from booking.models import Membership
from equipment.models import EquipmentUnit
from equipment.selectors import resource_get
from testbed import readcache
from testbed.api.auth import token_for
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def queries(fn):
    with CaptureQueriesContext(connection) as captured:
        result = fn()
    return result, len(captured.captured_queries)


@pytest.fixture
def lab():
    t = EquipmentTypeFactory(code="RC-LAB", slot_minutes=30, min_minutes=30, max_minutes=240)
    EquipmentUnitFactory(equipment_type=t, code="RC-LAB-01")
    return t


def test_a_second_read_in_a_later_request_costs_no_query_until_something_changes(lab):
    with readcache.scope():
        first, n1 = queries(lambda: resource_get("RC-LAB"))
    with readcache.scope():
        again, n2 = queries(lambda: resource_get("RC-LAB"))
    assert (first.pk, again.pk) == (lab.pk, lab.pk)
    assert n1 == 1 and n2 == 0
    assert again is not first  # each caller gets its own copy

    lab.max_minutes = 120
    lab.save()  # commits (no transaction open): the generation moves on
    with readcache.scope():
        fresh, n3 = queries(lambda: resource_get("RC-LAB"))
    assert n3 == 1 and fresh.max_minutes == 120


def test_nothing_is_cached_inside_a_transaction(lab):
    with readcache.scope():
        resource_get("RC-LAB")
        with transaction.atomic():
            _, n = queries(lambda: resource_get("RC-LAB"))
    assert n == 1


def test_without_redis_every_read_goes_to_the_database(lab, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    readcache.clear_local()
    with readcache.scope():
        resource_get("RC-LAB")
        _, n = queries(lambda: resource_get("RC-LAB"))
    assert n == 1
    readcache.clear_local()


def booking_body(code="RC-LAB", quantity=1):
    start = (timezone.localtime() + dt.timedelta(days=3)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    return {
        "resource": code,
        "quantity": quantity,
        "start": start.isoformat(),
        "end": (start + dt.timedelta(hours=1)).isoformat(),
    }


def test_a_revoked_token_or_a_removed_member_is_refused_at_once(lab, org, member):
    token = token_for(member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.post("/api/v1/bookings", booking_body(), format="json").status_code == 201
    assert client.get("/api/v1/bookings").status_code == 200  # token and membership now cached

    Membership.objects.filter(user=member).delete()
    refused = client.post("/api/v1/bookings", booking_body(), format="json")
    assert refused.status_code in (403, 404), refused.content

    member.is_active = False
    member.save()
    assert client.get("/api/v1/bookings").status_code == 401

    member.is_active = True
    member.save()
    assert client.get("/api/v1/bookings").status_code == 200
    assert client.post("/api/v1/auth/logout").status_code in (200, 204)
    assert client.get("/api/v1/bookings").status_code == 401


def test_a_stale_entry_never_refuses_a_valid_request(lab, org, member):
    """A unit added without signals (bulk) leaves the cached capacity stale: the refusal it
    would give is checked again against the database and the request goes through."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(member)}")
    assert client.post("/api/v1/bookings", booking_body(), format="json").status_code == 201
    EquipmentUnit.objects.bulk_create([EquipmentUnit(equipment_type=lab, code="RC-LAB-02")])
    response = client.post("/api/v1/bookings", booking_body(quantity=2), format="json")
    assert response.status_code == 201, response.content
