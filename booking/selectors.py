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
    """Free count as a step function over [start, end), and the windows of `duration` that fit.

    Computed from allocation rows (one range query) and a sweep: no counters.
    """
    from booking.allocator import choose_devices, choose_units
    from booking.availability import slot_starts, timeline
    from booking.policy import check_maintenance
    from booking.services.resources import (
        buffer_of,
        node_states,
        policy_for,
        resource_maintenance,
        unit_states,
    )
    from equipment.models import EquipmentType

    buffer = buffer_of(resource)
    windows = resource_maintenance(resource, start, end + buffer)
    if isinstance(resource, EquipmentType):
        units = unit_states(resource, start, end + buffer)
        ids = [u.id for u in units]
        busy = {u.id: list(u.busy) for u in units}

        def fits(s, e):
            return choose_units(units, s, e + buffer, quantity) is not None
    else:
        nodes = node_states(resource, start, end + buffer)
        ids = [d.id for n in nodes for d in n.devices]
        busy = {d.id: list(d.busy) for n in nodes for d in n.devices}

        def fits(s, e):
            return choose_devices(nodes, s, e, quantity) is not None

    for w_start, w_end, _reason in windows:  # maintenance of the whole resource: nothing is free
        for key in ids:
            busy.setdefault(key, []).append((w_start, w_end))
    for intervals in busy.values():
        intervals.sort()
    steps = timeline(ids, busy, start, end)
    policy = policy_for(resource)
    fit_windows = [
        (s, s + duration)
        for s in slot_starts(policy, start, end, duration)
        if check_maintenance(windows, s, s + duration) is None and fits(s, s + duration)
    ]
    return {"capacity": len(ids), "timeline": steps, "fits": fit_windows}
