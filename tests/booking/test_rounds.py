"""Contested rounds: collected until the cutoff, then placed in fair-share order."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from booking.fairshare import Claim, Standing, fair_share_order
from booking.models import Booking, ContestedRound, QuotaGrant, QuotaLedgerEntry
from booking.services.bookings import booking_request, bookings_requeue_lost
from booking.services.rounds import round_standing, rounds_allocate_due
from tests.factories import OrganizationFactory, UserFactory, add_member, aware, make_pool

T0 = aware(2026, 12, 1, 8)


def claim(i, org, hours=8.0, minute=0):
    return Claim(
        booking_id=i,
        organization_id=org,
        hours=hours,
        submitted_at=T0 + dt.timedelta(minutes=minute),
    )


def test_it_puts_within_quota_before_over_quota_then_low_use_then_early():
    standings = {
        1: Standing(100, 0.5),
        2: Standing(100, 0.1),
        3: Standing(None, 1.0),
        4: Standing(10, 0.0),
    }
    claims = [
        claim(1, 1, minute=0),
        claim(2, 2, minute=5),
        claim(3, 3, minute=1),
        claim(4, 4, hours=20, minute=2),
        claim(5, 2, minute=9),
    ]
    order = [r.claim.booking_id for r in fair_share_order(claims, standings)]
    assert order == [2, 5, 1, 4, 3]
    assert [r.position for r in fair_share_order(claims, standings)] == [1, 2, 3, 4, 5]


def test_it_draws_an_organisations_quota_down_along_the_order():
    ranked = fair_share_order(
        [claim(1, 1, hours=6), claim(2, 1, hours=6, minute=1)], {1: Standing(10, 0.0)}
    )
    assert [(r.claim.booking_id, r.within_quota) for r in ranked] == [(1, True), (2, False)]


@pytest.mark.django_db
def test_it_collects_requests_until_the_cutoff_and_places_them_fairly(settings):
    pool = make_pool(nodes=1, per_node=8, contested_lead_days=7, max_lead_days=120)
    heavy, light = OrganizationFactory(slug="heavy"), OrganizationFactory(slug="light")
    users = {}
    for org in (heavy, light):
        users[org.slug] = UserFactory(username=f"u-{org.slug}")
        add_member(org, users[org.slug])
        QuotaGrant.objects.create(
            organization=org,
            scope=pool.code,
            period_start=dt.date(2026, 1, 1),
            period_end=dt.date(2026, 12, 31),
            limit_hours=Decimal("1000"),
        )
    # `heavy` used a lot recently, so `light` goes first although it asked later.
    QuotaLedgerEntry.objects.create(
        grant=QuotaGrant.objects.get(organization=heavy),
        kind="consume",
        hours=Decimal("500"),
        at=T0 - dt.timedelta(days=3),
    )
    week = aware(2026, 12, 21, 0)  # a Monday; the round closes on 12-14 00:00
    with time_machine.travel(T0, tick=False):
        first = booking_request(
            actor=users["heavy"],
            organization=heavy,
            resource_code=pool.code,
            quantity=8,
            start=week,
            end=week + dt.timedelta(hours=8),
        )
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        second = booking_request(
            actor=users["light"],
            organization=light,
            resource_code=pool.code,
            quantity=8,
            start=week,
            end=week + dt.timedelta(hours=8),
        )
    assert first.round_id == second.round_id is not None
    round_ = ContestedRound.objects.get()
    assert round_.cutoff_at == aware(2026, 12, 14, 0)
    assert [r.claim.booking_id for r in round_standing(round_, now=T0)] == [second.pk, first.pk]
    with time_machine.travel(aware(2026, 12, 13, 23), tick=False):
        assert rounds_allocate_due() == 0
        assert (
            bookings_requeue_lost(older_than=dt.timedelta(minutes=1)) == []
        )  # round bookings are not lost
    with time_machine.travel(aware(2026, 12, 14, 0, 1), tick=False):
        assert rounds_allocate_due() == 2
        assert rounds_allocate_due() == 0
    assert Booking.objects.get(pk=second.pk).status == "confirmed"
    assert Booking.objects.get(pk=first.pk).status == "rejected"
    # after the cutoff, requests are first come, first served again
    with time_machine.travel(aware(2026, 12, 15, 9), tick=False):
        late = booking_request(
            actor=users["heavy"],
            organization=heavy,
            resource_code=pool.code,
            quantity=1,
            start=week + dt.timedelta(days=1),
            end=week + dt.timedelta(days=1, hours=1),
        )
    assert late.round_id is None
