"""Fair-share order for contested rounds (pure: no Django).

Within-quota requests come before over-quota ones; then the organisation with the lowest
recent use relative to its grant; then the earliest submission. Ties keep the input order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    booking_id: int
    organization_id: int
    hours: float  # unit-hours the request needs
    submitted_at: dt.datetime


@dataclass(frozen=True)
class Standing:
    """What an organisation brings to a round: its grant's remaining hours and recent use."""

    remaining_hours: float | None  # None: no applicable grant
    recent_use_ratio: float  # recent consumption ÷ grant limit (1.0 when there is no grant)


@dataclass(frozen=True)
class Ranked:
    claim: Claim
    position: int
    within_quota: bool
    recent_use_ratio: float


def fair_share_order(claims: Sequence[Claim], standings: dict[int, Standing]) -> list[Ranked]:
    """Rank the claims. An organisation's remaining quota is drawn down by its own earlier
    claims in the order, so its third big request may fall to over-quota even if the first fit."""
    ordered = sorted(
        claims,
        key=lambda c: (standings[c.organization_id].recent_use_ratio, c.submitted_at, c.booking_id),
    )
    remaining = {org: s.remaining_hours for org, s in standings.items()}
    within: list[tuple[Claim, bool]] = []
    for claim in ordered:
        left = remaining.get(claim.organization_id)
        fits = left is not None and claim.hours <= left + 1e-9
        if fits:
            remaining[claim.organization_id] = left - claim.hours  # type: ignore[operator]
        within.append((claim, fits))
    ranked = [c for c, ok in within if ok] + [c for c, ok in within if not ok]
    flags = {c.booking_id: ok for c, ok in within}
    return [
        Ranked(
            claim=c,
            position=i + 1,
            within_quota=flags[c.booking_id],
            recent_use_ratio=standings[c.organization_id].recent_use_ratio,
        )
        for i, c in enumerate(ranked)
    ]
