"""Schemathesis over every operation of /api/schema/, as a member and as an operator.

Bounded (a few generated cases per operation, no shrinking) so the whole file runs in about a
minute on two cores. Every response must be a non-5xx whose status, content type and body the
schema documents. Requests go through the WSGI app inside the test's transaction, so nothing
is committed and no Celery task is queued (on_commit never fires).
"""

from __future__ import annotations

import collections
import datetime as dt
import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from booking.models import QuotaGrant
from booking.services.bookings import booking_request
from equipment.models import MaintenanceWindow
from testbed.wsgi import application
from tests.factories import EquipmentTypeFactory, EquipmentUnitFactory, aware, make_pool

pytestmark = pytest.mark.django_db

# Cases per operation and generation mode (valid-looking and deliberately invalid input);
# TESTBED_SCHEMATHESIS_EXAMPLES=200 explores further by hand.
EXAMPLES_PER_OPERATION = int(os.environ.get("TESTBED_SCHEMATHESIS_EXAMPLES", "4"))
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """As Django's test client does: a request must not close the connection holding the test's
    transaction (the WSGI handler would, at request start and finish)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def catalogue(org, member):
    equipment = EquipmentTypeFactory(code="HC-MRI", opens_at=dt.time(9), closes_at=dt.time(18))
    EquipmentUnitFactory(equipment_type=equipment, code="HC-MRI-1")
    pool = make_pool(nodes=1, per_node=4, code="GPU-H100")
    QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 1, 1),
        period_end=dt.date(2027, 12, 31),
        limit_hours=1000,
    )
    MaintenanceWindow.objects.create(
        pool=pool, start=aware(2026, 12, 20, 9), end=aware(2026, 12, 20, 12), reason="PM"
    )
    booking_request(
        actor=member,
        organization=org,
        resource_code=pool.code,
        quantity=1,
        start=aware(2026, 12, 10, 9),
        end=aware(2026, 12, 10, 12),
    )
    return equipment, pool


def bearer(user) -> str:
    try:
        from testbed.api.auth import token_for
    except ImportError:  # before sign-in tokens moved to knox
        from rest_framework.authtoken.models import Token

        return Token.objects.get_or_create(user=user)[0].key
    return token_for(user)


def run_all(user) -> tuple[list[str], collections.Counter]:
    """Every operation, a few cases each: one line per failure (empty when clean), and how many
    responses of each (operation, status) came back."""
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    failures: list[str] = []
    statuses: collections.Counter = collections.Counter()
    for result in schema.get_all_operations():
        for mode in MODES:
            check_operation(result.ok(), mode, user, failures, statuses)
    if os.environ.get("TESTBED_SCHEMATHESIS_REPORT"):
        print("\n".join(f"{label} {code}: {n}" for (label, code), n in sorted(statuses.items())))
    return failures, statuses


def check_operation(
    operation, mode, user, failures: list[str], statuses: collections.Counter
) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        try:
            # A fresh token each time: the sign-out operations revoke the caller's tokens.
            response = case.call(headers={"Authorization": f"Bearer {bearer(user)}"})
            statuses[(operation.label, response.status_code)] += 1
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # collect all, report at once
            text = str(exc).strip().splitlines()
            failures.append(f"{operation.label}: {' | '.join(text[:8])}")

    check()


def unique(failures: list[str]) -> list[str]:
    return sorted(set(failures))


def succeeded(statuses: collections.Counter) -> set[str]:
    return {label for (label, code), _n in statuses.items() if 200 <= code < 300}


def test_it_answers_every_operation_as_documented_for_a_member(catalogue, member):
    failures, statuses = run_all(member)

    assert not failures, "\n".join(unique(failures))
    # The run reached past authentication: reads of the catalogue and bookings succeeded.
    assert {"GET /api/v1/pools/", "GET /api/v1/bookings/"} <= succeeded(statuses)


def test_it_answers_every_operation_as_documented_for_an_operator(catalogue, operator):
    failures, statuses = run_all(operator)

    assert not failures, "\n".join(unique(failures))
    assert {"GET /api/v1/pools/", "GET /api/v1/maintenance-windows/"} <= succeeded(statuses)
