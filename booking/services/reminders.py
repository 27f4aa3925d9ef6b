"""Quota reminders: tell an organisation's managers when a grant is 80% and then 100% used.

"Used" is what the ledger has taken from the grant: holds of confirmed bookings plus
consumption (grant_balances), so the reminder comes while there is still time to act. Each
threshold is sent at most once per grant: the flag is set by a conditional UPDATE whose row
count decides who sends, so two beat runs at once never both send. A grant that jumps past
100% at once gets only the 100% reminder. The email goes out after the commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from functools import partial

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from booking import events
from booking.models import QuotaGrant
from booking.services.quotas import TZ, grant_balances
from testbed.audit import audit_record
from testbed.choices import Channel
from testbed.db import sweep_step

logger = logging.getLogger(__name__)

THRESHOLDS = (100, 80)  # highest first: one reminder per run, the most urgent one


def _send(grant_id: int, threshold: int, used: Decimal) -> None:
    from booking.services.emails import quota_reminder_email_send

    quota_reminder_email_send(grant_id=grant_id, threshold=threshold, used_hours=used)


def quota_reminders_send(*, now: dt.datetime | None = None) -> list[tuple[int, int]]:
    """Remind about every grant whose period includes today and that crossed a threshold.

    Returns (grant id, threshold) for each reminder sent by this run.
    """
    now = now or timezone.now()
    today = timezone.localtime(now, TZ).date()
    grants = list(
        QuotaGrant.objects.filter(period_start__lte=today, period_end__gte=today, limit_hours__gt=0)
        .filter(Q(reminded_80=False) | Q(reminded_100=False))
        .order_by("pk")
    )
    balances = grant_balances(g.pk for g in grants)
    sent: list[tuple[int, int]] = []
    for grant in grants:
        balance = balances[grant.pk]
        used = balance.held + balance.consumed
        share = used * 100 / balance.limit
        threshold = next((t for t in THRESHOLDS if share >= t), None)
        if threshold is None:
            continue
        with sweep_step("quota reminder", grant.pk):
            if threshold == 100:
                claimed = QuotaGrant.objects.filter(pk=grant.pk, reminded_100=False).update(
                    reminded_100=True, reminded_80=True
                )
            else:
                claimed = QuotaGrant.objects.filter(pk=grant.pk, reminded_80=False).update(
                    reminded_80=True
                )
            if claimed != 1:
                continue  # reminded already, by an earlier or a concurrent run
            audit_record(
                actor=None,
                channel=Channel.SYSTEM,
                action="quota.reminder",
                obj=grant,
                data={
                    "threshold": threshold,
                    "used_hours": str(used),
                    "limit_hours": str(balance.limit),
                },
            )
            transaction.on_commit(partial(_send, grant.pk, threshold, used), robust=True)
            events.publish(
                events.QUOTA_THRESHOLD,
                organization_id=grant.organization_id,
                data={
                    "grant": {
                        "id": grant.pk,
                        "scope": grant.scope,
                        "enforcement": grant.enforcement,
                        "period_start": grant.period_start.isoformat(),
                        "period_end": grant.period_end.isoformat(),
                        "limit_hours": str(balance.limit),
                    },
                    "threshold_percent": threshold,
                    "used_hours": str(used),
                },
            )
        sent.append((grant.pk, threshold))
    if sent:
        logger.info("quota reminders sent: %s", sent)
    return sent
