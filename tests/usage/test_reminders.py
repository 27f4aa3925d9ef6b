"""Quota reminders to managers at 80% and 100%, each once per grant."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail

from booking.choices import LedgerKind
from booking.models import QuotaGrant, QuotaLedgerEntry
from booking.services import reminders
from booking.services.reminders import quota_reminders_send
from testbed.models import AuditEntry
from tests.factories import aware

pytestmark = pytest.mark.django_db

NOW = aware(2026, 11, 20, 9)


@pytest.fixture
def grant(org, manager, member):
    return QuotaGrant.objects.create(
        organization=org,
        scope="*",
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 11, 30),
        limit_hours=Decimal("10"),
    )


def use(grant, hours: str, kind: str = LedgerKind.HOLD) -> None:
    QuotaLedgerEntry.objects.create(grant=grant, kind=kind, hours=Decimal(hours))


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    def run(now=NOW):
        with django_capture_on_commit_callbacks(execute=True):
            return quota_reminders_send(now=now)

    return run


def test_it_reminds_managers_once_at_80_and_once_at_100_percent(grant, send, manager):
    use(grant, "7.9")
    assert send() == []
    assert mail.outbox == []

    use(grant, "0.6", LedgerKind.CONSUME)  # 8.5 of 10: held and consumed both count
    assert send() == [(grant.pk, 80)]
    assert send() == []
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [manager.email]  # managers only, not members
    assert "80%" in mail.outbox[0].subject

    use(grant, "1.5")
    assert send() == [(grant.pk, 100)]
    assert send() == []
    assert len(mail.outbox) == 2
    assert "100%" in mail.outbox[1].subject
    grant.refresh_from_db()
    assert grant.reminded_80 and grant.reminded_100
    audits = AuditEntry.objects.filter(action="quota.reminder", object_id=str(grant.pk))
    assert sorted(a.data["threshold"] for a in audits) == [80, 100]


def test_it_sends_only_the_100_percent_reminder_when_a_grant_jumps_past_it(grant, send):
    use(grant, "12")
    assert send() == [(grant.pk, 100)]
    assert send() == []
    assert len(mail.outbox) == 1


def test_it_leaves_grants_outside_their_period_alone(grant, send):
    use(grant, "10")
    assert (
        send(now=aware(2026, 12, 1, 0, 30)) == []
    )  # 1 December in Seoul, still 30 November in UTC
    assert send(now=aware(2026, 10, 31, 23)) == []
    assert mail.outbox == []
    assert send(now=aware(2026, 11, 30, 23, 59)) == [(grant.pk, 100)]


def test_it_never_sends_twice_when_two_runs_race(grant, send, monkeypatch):
    use(grant, "9")
    real_balances = reminders.grant_balances

    def balances_then_another_run_claims(ids):
        result = real_balances(ids)
        monkeypatch.setattr(reminders, "grant_balances", real_balances)
        assert quota_reminders_send(now=NOW) == [
            (grant.pk, 80)
        ]  # the other run, between read and claim
        return result

    monkeypatch.setattr(reminders, "grant_balances", balances_then_another_run_claims)
    assert send() == []  # its conditional UPDATE found the flag set: nothing sent by this run
    assert AuditEntry.objects.filter(action="quota.reminder").count() == 1
    assert len(mail.outbox) == 1
