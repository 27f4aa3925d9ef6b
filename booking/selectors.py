"""Reads with permission filtering: nobody sees another organisation's rows."""

from __future__ import annotations

from django.db.models import Prefetch, Q, QuerySet

from booking.models import Allocation, Booking, Invitation, Organization, QuotaGrant
from booking.services.access import visible_organization_ids


def _org_scope(user, auth=None) -> Q | None:
    """None for operators (everything); else the organisations this caller may see.

    A subquery, not a join: no duplicate rows, so no DISTINCT over whole rows (which cost
    PostgreSQL a sort of every visible booking). `auth` is kept for callers that pass it; the
    access module reads the key from the user it authenticated.
    """
    visible = visible_organization_ids(user)
    return None if visible is None else Q(organization_id__in=visible)


# What a booking's `allocations` field shows, in one query for any number of bookings.
ALLOCATIONS_PREFETCH = Prefetch(
    "allocations",
    queryset=Allocation.objects.select_related("unit", "node", "device").order_by("pk"),
)


def booking_list(*, user, auth=None) -> QuerySet[Booking]:
    qs = Booking.objects.select_related(
        "organization", "user", "equipment_type", "pool", "affected_by_maintenance"
    ).prefetch_related(ALLOCATIONS_PREFETCH)
    scope = _org_scope(user, auth)
    return qs if scope is None else qs.filter(scope)


def organization_list(*, user, auth=None) -> QuerySet[Organization]:
    visible = visible_organization_ids(user)
    return (
        Organization.objects.all()
        if visible is None
        else Organization.objects.filter(pk__in=visible)
    )


def invitation_list(*, user) -> QuerySet[Invitation]:
    """The invitations addressed to this person, newest first."""
    if not (user and user.is_authenticated):
        return Invitation.objects.none()
    return Invitation.objects.filter(user_id=user.pk).select_related("organization", "invited_by")


def quota_grant_list(*, user, auth=None) -> QuerySet[QuotaGrant]:
    qs = QuotaGrant.objects.select_related("organization")
    scope = _org_scope(user, auth)
    return qs if scope is None else qs.filter(scope).distinct()


def availability(*, resource, start, end, quantity: int, duration) -> dict:
    """Free count as a step function over [start, end), and every window of `duration` that fits.

    The whole window is searched (the API bounds the window, not the search); computed from the
    occupancy PostgreSQL derives from the allocation rows in their writing transaction (or from
    the rows themselves), never from counters. How: booking/occupancy.py.
    """
    from booking.occupancy import availability as compute

    return compute(resource=resource, start=start, end=end, quantity=quantity, duration=duration)
