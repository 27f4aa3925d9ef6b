"""Who may do what: `access_*` fetch and check permission in one step."""

from __future__ import annotations

from booking.choices import Role
from booking.models import Booking, Membership, Organization
from testbed.errors import NotFound, PermissionDenied


def is_operator(user) -> bool:
    return bool(user and user.is_authenticated and user.is_staff)


def role_in(user, organization: Organization) -> str | None:
    if not (user and user.is_authenticated):
        return None
    cached = getattr(organization, "_role_of", None)  # set by default_organization_for
    if cached is not None and cached[0] == user.pk:
        return cached[1]
    return (
        Membership.objects.filter(user=user, organization=organization)
        .order_by("pk")  # not Meta.ordering, which joins organisations to sort by name
        .values_list("role", flat=True)
        .first()
    )


def access_organization(*, actor, slug: str, manage: bool = False) -> Organization:
    """The organisation with this slug, if the actor may see it (or manage it, with manage=True).

    Outsiders get NotFound, never PermissionDenied: another organisation's existence is private.
    """
    org = Organization.objects.filter(slug=slug).first()
    if org is None:
        raise NotFound(f"No organisation has the slug {slug!r}.", field="organization")
    if is_operator(actor):
        return org
    role = role_in(actor, org)
    if role is None:
        raise NotFound(f"No organisation has the slug {slug!r}.", field="organization")
    if manage and role != Role.MANAGER:
        raise PermissionDenied(
            "Only a manager of this organisation may do this: ask your organisation's manager."
        )
    return org


def default_organization_for(actor) -> Organization:
    """The actor's organisation when they have exactly one (with their role remembered on it)."""
    memberships = list(
        Membership.objects.filter(user=actor, organization__is_active=True)
        .select_related("organization")
        .order_by()[:2]  # only how many there are matters: no sort by name
    )
    if len(memberships) == 1:
        org = memberships[0].organization
        org._role_of = (actor.pk, memberships[0].role)  # type: ignore[attr-defined]
        return org
    if not memberships:
        raise PermissionDenied(
            "You are not a member of any organisation: ask your organisation's manager to add you.",
            field="organization",
        )
    raise PermissionDenied(
        "You belong to several organisations: say which one with the `organization` field (its slug).",
        code="invalid",
        field="organization",
    )


def check_can_book_for(*, actor, organization: Organization) -> None:
    if is_operator(actor):
        return
    if not organization.is_active:
        raise PermissionDenied(
            "This organisation is deactivated: ask a facility operator.", field="organization"
        )
    if role_in(actor, organization) is None:
        raise NotFound(f"No organisation has the slug {organization.slug!r}.", field="organization")


def check_can_change_booking(*, actor, booking: Booking) -> None:
    """Booker, a manager of the booking's organisation, or an operator."""
    if is_operator(actor) or booking.user_id == getattr(actor, "pk", None):
        return
    role = role_in(actor, booking.organization)
    if role is None:
        raise NotFound("No booking with this id.")
    if role != Role.MANAGER:
        raise PermissionDenied(
            "Only the person who booked, a manager of the organisation or an operator may change this booking."
        )
