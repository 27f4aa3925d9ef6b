"""Who may do what: the one place every permission of the API, the admin and the web portal is decided.

Three kinds of caller:
- an operator (a Django staff user signed in as a person): everything, for every organisation;
- a person, by their membership role in each organisation: `manager` or `member`;
- an organisation API key: acts as its organisation with exactly its scopes (testbed.choices.KeyScope),
  through the key's own service account. A key never carries the rights of the person who made it,
  never operator rights, and never reaches another organisation.

`access_*` fetch and check in one step; `check_*` raise when not allowed; `can_*` answer yes or no.
Another organisation's things answer NotFound, never PermissionDenied: their existence is private.
What a route needs from a key is declared on the view (`required_scopes`) and enforced by
testbed.api.permissions.KeyScopes, which asks `key_has_scope` here.
"""

from __future__ import annotations

import copy
import re

from booking.choices import Role
from booking.models import ApiKey, Booking, Membership, Organization
from testbed import readcache
from testbed.choices import KeyScope
from testbed.errors import NotFound, PermissionDenied, ServiceError

# Organisation attributes that change prices (discounts by category, region, youth start-up) or
# identity and rights (slug, business number, active): only operators set them.
OPERATOR_ONLY_ORGANIZATION_FIELDS = (
    "slug",
    "business_number",
    "category",
    "region",
    "youth_startup",
    "is_active",
)
_KEY_ATTRIBUTE = "_testbed_api_key"


# --- who is calling ------------------------------------------------------------------------------


def bind_api_key(user, key: ApiKey) -> None:
    """Remember on the key's service account which key authenticated it (set at authentication)."""
    setattr(user, _KEY_ATTRIBUTE, key)


def api_key_of(actor) -> ApiKey | None:
    """The API key this actor is acting through, or None for a person."""
    return getattr(actor, _KEY_ATTRIBUTE, None)


def is_operator(actor) -> bool:
    """Facility staff signed in as themselves (an API key is never an operator)."""
    return bool(
        actor
        and actor.is_authenticated
        and actor.is_staff
        and actor.is_active
        and api_key_of(actor) is None
    )


def key_has_scope(actor, scope: str) -> bool:
    """People are governed by roles, not scopes: True for them. A key: the scope is one of its own."""
    key = api_key_of(actor)
    return key is None or scope in key.scopes


def check_scope(actor, scope: str) -> None:
    if not key_has_scope(actor, scope):
        raise PermissionDenied(
            f"This API key lacks the '{scope}' scope: ask your organisation's manager for a key with it.",
            code="insufficient_scope",
        )


def role_in(actor, organization: Organization) -> str | None:
    """The actor's role in the organisation, or None. A key counts as a member of its own organisation."""
    if not (actor and actor.is_authenticated):
        return None
    key = api_key_of(actor)
    if key is not None:
        return Role.MEMBER if key.organization_id == organization.pk else None
    cached = getattr(organization, "_role_of", None)  # set by default_organization_for
    if cached is not None and cached[0] == actor.pk:
        return cached[1]
    return (
        Membership.objects.filter(user=actor, organization=organization)
        .order_by("pk")  # not Meta.ordering, which joins organisations to sort by name
        .values_list("role", flat=True)
        .first()
    )


def visible_organization_ids(actor):
    """None for operators (all); else a subquery or list of the organisations the actor sees."""
    key = api_key_of(actor)
    if key is not None:
        return [key.organization_id]
    if is_operator(actor):
        return None
    if not (actor and actor.is_authenticated):
        return []
    return Membership.objects.filter(user=actor).values("organization_id")


def _hidden(slug: str) -> NotFound:
    return NotFound(f"No organisation has the slug {slug!r}.", field="organization")


# --- organisations -------------------------------------------------------------------------------


def access_organization(*, actor, slug: str) -> Organization:
    """The organisation with this slug, if the actor may see it (operators, its members, its keys)."""
    org = Organization.objects.filter(slug=slug).first()
    if org is None:
        raise _hidden(slug)
    if is_operator(actor):
        return org
    if role_in(actor, org) is None:
        raise _hidden(slug)
    return org


def access_organization_to_edit(*, actor, slug: str) -> Organization:
    """Its managers and operators edit an organisation's profile; keys never do."""
    org = access_organization(actor=actor, slug=slug)
    if is_operator(actor):
        return org
    if api_key_of(actor) is not None:
        raise PermissionDenied(
            "API keys cannot edit the organisation: a manager does it, signed in as themselves."
        )
    if role_in(actor, org) != Role.MANAGER:
        raise PermissionDenied(
            "Only a manager of this organisation may do this: ask your organisation's manager."
        )
    return org


def access_organization_members(*, actor, slug: str) -> Organization:
    """Members (with their emails) are listed and invited by managers, operators and
    keys with the `members:manage` scope."""
    org = access_organization(actor=actor, slug=slug)
    if is_operator(actor):
        return org
    if api_key_of(actor) is not None:
        check_scope(actor, KeyScope.MEMBERS_MANAGE)
        return org
    if role_in(actor, org) != Role.MANAGER:
        raise PermissionDenied(
            "Only managers see and change the member list: ask your organisation's manager."
        )
    return org


def access_organization_api_keys(*, actor, slug: str) -> Organization:
    """API keys are made, listed and revoked by a manager (or operator) signed in as a person."""
    if api_key_of(actor) is not None:
        raise PermissionDenied("API keys cannot manage API keys: sign in as a manager.")
    return access_organization_to_edit(actor=actor, slug=slug)


def access_organization_webhooks(*, actor, slug: str, write: bool = False) -> Organization:
    """Webhook endpoints and their delivery log: the organisation's managers and its keys with
    `webhooks:manage`. Operators read them (to see failing endpoints) but never change them: the
    endpoint's URL and secret are the organisation's own."""
    org = access_organization(actor=actor, slug=slug)
    if is_operator(actor):
        if write:
            raise PermissionDenied(
                "Operators see webhook endpoints but only the organisation's managers change them."
            )
        return org
    if api_key_of(actor) is not None:
        check_scope(actor, KeyScope.WEBHOOKS_MANAGE)
        return org
    if role_in(actor, org) != Role.MANAGER:
        raise PermissionDenied(
            "Only managers see and change webhook endpoints: ask your organisation's manager."
        )
    return org


def webhook_organization_ids(actor):
    """None for operators (all); else the organisations whose webhooks the actor manages."""
    key = api_key_of(actor)
    if key is not None:
        return [key.organization_id] if KeyScope.WEBHOOKS_MANAGE in key.scopes else []
    if is_operator(actor):
        return None
    if not (actor and actor.is_authenticated):
        return []
    return Membership.objects.filter(user=actor, role=Role.MANAGER).values("organization_id")


def check_organization_fields(*, actor, organization: Organization, fields: dict) -> None:
    """Refuse, naming the field, any change a non-operator asks for to an operator-only attribute."""
    if is_operator(actor):
        return
    for name in OPERATOR_ONLY_ORGANIZATION_FIELDS:
        if name in fields and not _same(name, fields[name], getattr(organization, name)):
            raise PermissionDenied(
                f"Only facility operators change `{name}`: it decides prices or rights. "
                "Ask an operator, or leave the field out.",
                field=name,
            )


def _same(name: str, sent, current) -> bool:
    """Whether a sent value leaves the attribute as it is (before any validation of its form)."""
    if name == "business_number":
        return re.sub(r"\D", "", str(sent or "")) == re.sub(r"\D", "", str(current or ""))
    if isinstance(current, bool):
        return str(sent).lower() in ("true", "1") if not isinstance(sent, bool) else sent == current
    return str(sent) == str(current)


def default_organization_for(actor) -> Organization:
    """The actor's organisation when they have exactly one (with their role remembered on it)."""
    key = api_key_of(actor)
    if key is not None:
        return key.organization
    memberships = readcache.get(
        ("memberships", actor.pk),
        lambda: [
            (m.role, m.organization)
            for m in Membership.objects.filter(user=actor, organization__is_active=True)
            .select_related("organization")
            .order_by()[:2]  # only how many there are matters: no sort by name
        ],
    )
    if len(memberships) == 1:
        role, cached = memberships[0]
        org = copy.copy(cached)  # this request's own: the role is remembered on it
        org._role_of = (actor.pk, role)  # type: ignore[attr-defined]
        return org
    if len(memberships) > 1:
        raise ServiceError(
            "You belong to several organisations: say which one with the `organization` field "
            "(its slug).",
            field="organization",
        )
    if is_operator(actor):
        raise ServiceError(
            "Operators book for an organisation: name it with the `organization` field (its slug).",
            field="organization",
        )
    if Membership.objects.filter(user=actor).exists():
        raise PermissionDenied(
            "Your organisation is deactivated: ask a facility operator.", field="organization"
        )
    raise PermissionDenied(
        "You are not a member of any organisation: ask your organisation's manager to add you.",
        field="organization",
    )


def access_booking_organization(*, actor, slug: str | None) -> Organization:
    """The organisation a new booking is for: the one named (if the actor may book for it), else the
    actor's own. A key naming any organisation but its own is refused, never silently ignored."""
    if slug:
        org = access_organization(actor=actor, slug=slug)
    else:
        org = default_organization_for(actor)
    check_can_book_for(actor=actor, organization=org)
    return org


# --- bookings ------------------------------------------------------------------------------------


def check_can_book_for(*, actor, organization: Organization) -> None:
    if is_operator(actor):
        return
    if role_in(actor, organization) is None:
        raise _hidden(organization.slug)
    check_scope(actor, KeyScope.BOOKINGS_WRITE)
    if not organization.is_active:
        raise PermissionDenied(
            "This organisation is deactivated: ask a facility operator.", field="organization"
        )


def _is_booker(actor, booking: Booking) -> bool:
    return booking.user_id == getattr(actor, "pk", None)


def check_can_see_booking(*, actor, booking: Booking) -> None:
    if is_operator(actor):
        return
    if role_in(actor, booking.organization) is None:
        raise NotFound("No booking with this id.")


def check_can_change_booking(*, actor, booking: Booking) -> None:
    """Cancel: the booker (a key: the bookings it made), a manager of the organisation, or an operator."""
    check_can_see_booking(actor=actor, booking=booking)
    if is_operator(actor):
        return
    check_scope(actor, KeyScope.BOOKINGS_WRITE)
    if _is_booker(actor, booking):
        return
    if api_key_of(actor) is not None:
        raise PermissionDenied(
            "An API key changes only the bookings it made itself: this one was made by a person."
        )
    if role_in(actor, booking.organization) == Role.MANAGER:
        return
    raise PermissionDenied(
        "Only the person who booked, a manager of the organisation or an operator may change this booking."
    )


def check_can_use_booking(*, actor, booking: Booking) -> None:
    """Check-in and check-out: the booker (a key: the bookings it made) or an operator."""
    check_can_see_booking(actor=actor, booking=booking)
    if is_operator(actor):
        return
    check_scope(actor, KeyScope.BOOKINGS_WRITE)
    if not _is_booker(actor, booking):
        raise PermissionDenied(
            "Only the person who booked or a facility operator may check this booking in or out."
        )


def check_is_operator(actor) -> None:
    if not is_operator(actor):
        raise PermissionDenied(
            "Only facility operators may do this: ask an operator of the centre."
        )
