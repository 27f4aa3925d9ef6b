"""Contested rounds: for pools where demand outstrips supply (the national GPU centre had 2.69
applicants per slot), requests far enough ahead are collected until a cutoff and then placed
in fair-share order instead of first come, first served.

A pool opts in with `contested_lead_days` = L. Rounds cover facility-local weeks (Monday
00:00 to Monday 00:00); a week's round closes L days before the week starts. A request for a
window in that week made before the cutoff joins the round (it stays `pending` and is not
queued); a request made after the cutoff is first come, first served as usual.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from booking.choices import LedgerKind
from booking.fairshare import Claim, Ranked, Standing, fair_share_order
from booking.models import Booking, ContestedRound, QuotaLedgerEntry
from booking.services.quotas import grant_balances, grants_candidates, hours_of
from equipment.models import AcceleratorPool

TZ = zoneinfo.ZoneInfo(settings.TIME_ZONE)
RECENT = dt.timedelta(days=30)


def _week_bounds(moment: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    local = moment.astimezone(TZ)
    monday = (local - dt.timedelta(days=local.weekday())).date()
    start = dt.datetime.combine(monday, dt.time.min, tzinfo=TZ)
    return start, start + dt.timedelta(days=7)


def round_for_request(
    *, pool: AcceleratorPool, start: dt.datetime, now: dt.datetime
) -> ContestedRound | None:
    """The open round this request joins, or None for first come, first served."""
    if pool.contested_lead_days is None:
        return None
    week_start, week_end = _week_bounds(start)
    cutoff = week_start - dt.timedelta(days=pool.contested_lead_days)
    if now >= cutoff:
        return None
    contested, _created = ContestedRound.objects.get_or_create(
        pool=pool, window_start=week_start, window_end=week_end, defaults={"cutoff_at": cutoff}
    )
    return contested if contested.allocated_at is None else None


def _standings(
    round_: ContestedRound, bookings: list[Booking], now: dt.datetime
) -> dict[int, Standing]:
    standings: dict[int, Standing] = {}
    for org_id in {b.organization_id for b in bookings}:
        grants = list(
            grants_candidates(
                organization_id=org_id,
                resource=round_.pool,
                start=round_.window_start,
                end=round_.window_end,
            ).order_by("pk")
        )
        if not grants:
            standings[org_id] = Standing(remaining_hours=None, recent_use_ratio=1.0)
            continue
        # The most specific grant covering the window's start speaks for the organisation.
        grant = min(
            grants,
            key=lambda g: (0 if g.scope == round_.pool.code else 1 if g.scope != "*" else 2, g.pk),
        )
        balance = grant_balances([grant.pk])[grant.pk]
        recent = QuotaLedgerEntry.objects.filter(
            grant=grant, kind__in=[LedgerKind.CONSUME, LedgerKind.ADJUST], at__gte=now - RECENT
        ).aggregate(total=Sum("hours"))["total"] or Decimal(0)
        ratio = float(recent / grant.limit_hours) if grant.limit_hours else 1.0
        standings[org_id] = Standing(
            remaining_hours=float(balance.remaining), recent_use_ratio=ratio
        )
    return standings


def round_standing(round_: ContestedRound, *, now: dt.datetime | None = None) -> list[Ranked]:
    """Where each waiting request stands now (the order the cutoff would use)."""
    now = now or timezone.now()
    bookings = list(
        Booking.objects.filter(round=round_, status="pending").order_by("created_at", "pk")
    )
    claims = [
        Claim(
            booking_id=b.pk,
            organization_id=b.organization_id,
            hours=float(hours_of(b.quantity, b.start, b.end)),
            submitted_at=b.created_at,
        )
        for b in bookings
    ]
    return fair_share_order(claims, _standings(round_, bookings, now))


def rounds_allocate_due(*, now: dt.datetime | None = None) -> int:
    """Place every round whose cutoff has passed, in fair-share order. Safe to run twice."""
    from booking.services.allocation import booking_allocate

    now = now or timezone.now()
    placed = 0
    for round_ in ContestedRound.objects.filter(
        cutoff_at__lte=now, allocated_at__isnull=True
    ).select_related("pool"):
        with transaction.atomic():
            claimed = ContestedRound.objects.filter(pk=round_.pk, allocated_at__isnull=True).update(
                allocated_at=now
            )
        if claimed != 1:
            continue  # another beat run took it
        for ranked in round_standing(round_, now=now):
            booking_allocate(booking_id=ranked.claim.booking_id)
            placed += 1
    return placed


def rounds_visible_to(*, user, auth=None):
    from booking.services.access import visible_organization_ids

    qs = ContestedRound.objects.select_related("pool").order_by("-cutoff_at")
    visible = visible_organization_ids(user)
    if visible is None:
        return qs
    return qs.filter(Q(bookings__organization_id__in=visible)).distinct()
