"""Organisations, their members and invitations: who joins an organisation, and how."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from booking.choices import Role
from booking.models import Invitation, Membership, Organization
from booking.services.access import api_key_of, check_organization_fields
from testbed.audit import audit_record
from testbed.errors import Conflict, NotFound, PermissionDenied, ServiceError

RESERVED_USERNAME_PREFIX = "apikey-"  # API keys' service accounts


def organization_create(*, actor, channel: str, **fields) -> Organization:
    if Organization.objects.filter(slug=fields["slug"]).exists():
        raise Conflict(f"The slug {fields['slug']!r} is taken: choose another.", field="slug")
    try:
        with transaction.atomic():
            org = Organization.objects.create(**fields)
            audit_record(actor=actor, channel=channel, action="organization.create", obj=org)
    except IntegrityError:
        raise Conflict(
            "Another organisation has this business registration number.", field="business_number"
        ) from None
    return org


def organization_update(
    *, actor, organization: Organization, channel: str, **fields
) -> Organization:
    check_organization_fields(actor=actor, organization=organization, fields=fields)
    changed = [k for k, v in fields.items() if getattr(organization, k) != v]
    for key in changed:
        setattr(organization, key, fields[key])
    if changed:
        try:
            with transaction.atomic():
                organization.save(update_fields=changed)
                audit_record(
                    actor=actor,
                    channel=channel,
                    action="organization.update",
                    obj=organization,
                    data={"fields": changed},
                )
        except IntegrityError:
            raise Conflict(
                "Another organisation has this business registration number.",
                field="business_number",
            ) from None
    return organization


def member_add(
    *,
    actor,
    organization: Organization,
    username: str,
    email: str,
    role: str,
    channel: str,
    password: str | None = None,
) -> Membership | Invitation:
    """Add a person to the organisation.

    A new username creates the account and its membership at once. An existing member gets the
    role asked for. Any other existing account is only *invited* (an Invitation they accept or
    decline themselves): a manager can never capture somebody else's account.
    """
    if username.lower().startswith(RESERVED_USERNAME_PREFIX):
        raise ServiceError(
            f"Usernames starting with {RESERVED_USERNAME_PREFIX!r} belong to API keys: choose another.",
            field="username",
        )
    if api_key_of(actor) is not None:
        # A key adds people, never power: no managers, no passwords, no role changes (else a
        # `members:manage` key could make itself a manager, or demote the real ones).
        if role != Role.MEMBER:
            raise PermissionDenied(
                "An API key may add members only: a manager signs in to make someone a manager.",
                field="role",
            )
        if password:
            raise PermissionDenied(
                "An API key cannot set passwords: leave `password` out; the person sets theirs.",
                field="password",
            )
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.filter(username=username).first()
        if user is None:
            if password:
                from django.contrib.auth.password_validation import validate_password
                from django.core.exceptions import ValidationError

                try:
                    validate_password(password)
                except ValidationError as exc:
                    raise ServiceError(" ".join(exc.messages), field="password") from None
            user = User.objects.create_user(
                username=username, email=email, password=password or secrets.token_urlsafe(16)
            )
            membership = Membership.objects.create(organization=organization, user=user, role=role)
        else:
            existing = Membership.objects.filter(organization=organization, user=user).first()
            if existing is None:
                return _invite(
                    actor=actor, organization=organization, user=user, role=role, channel=channel
                )
            membership = existing
            if membership.role == role:
                raise Conflict(
                    f"{username} is already a {role} of {organization.slug}.", field="username"
                )
            if api_key_of(actor) is not None:
                raise PermissionDenied(
                    "An API key cannot change a member's role: a manager does it, signed in.",
                    field="role",
                )
            if membership.role == Role.MANAGER:
                _check_not_last_manager(organization, username)
            membership.role = role
            membership.save(update_fields=["role"])
        audit_record(
            actor=actor, channel=channel, action="membership.set", obj=membership, to_state=role
        )
    return membership


def _check_not_last_manager(organization: Organization, username: str) -> None:
    """Lock the organisation's managers; refuse to leave it without one."""
    managers = list(
        Membership.objects.select_for_update()
        .filter(organization=organization, role=Role.MANAGER)
        .values_list("pk", flat=True)
    )
    if len(managers) <= 1:
        raise Conflict(
            f"{username} is the last manager of {organization.slug}: make another member a "
            "manager first.",
            code="last_manager",
            field="role",
        )


def _invite(*, actor, organization: Organization, user, role: str, channel: str) -> Invitation:
    if user.is_staff or hasattr(user, "api_key"):
        raise ServiceError(
            f"{user.username} is a facility operator or an API key's account and cannot join an "
            "organisation: invite a person's own account.",
            field="username",
        )
    if Invitation.objects.filter(
        organization=organization, user=user, answered_at__isnull=True
    ).exists():
        raise Conflict(
            f"{user.username} already has an open invitation to {organization.slug}: "
            "they accept it with POST /api/v1/invitations/{id}/accept.",
            field="username",
        )
    invitation = Invitation.objects.create(
        organization=organization, user=user, role=role, invited_by=actor
    )
    audit_record(
        actor=actor, channel=channel, action="invitation.create", obj=invitation, to_state=role
    )
    if user.email:
        subject = f"[testbed] {organization.name} 초대 / invitation to {organization.name}"
        body = (
            f"{organization.name}에서 {role}(으)로 초대했습니다. 로그인 후 수락하거나 거절하세요.\n"
            f"{organization.name} invited you as {role}. Sign in to accept or decline:\n"
            f"POST /api/v1/invitations/{invitation.pk}/accept\n"
        )
        transaction.on_commit(
            lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email]),
            robust=True,
        )
    return invitation


def invitation_answer(*, actor, invitation_id: int, accept: bool, channel: str) -> Invitation:
    """The invited person, and only they, accepts (becoming a member) or declines."""
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .select_related("organization")
            .filter(pk=invitation_id, user_id=actor.pk)
            .first()
        )
        if invitation is None:
            raise NotFound("No invitation of yours has this id.")
        if invitation.answered_at is not None:
            raise Conflict(
                "This invitation was already answered.", code="invalid_state", field="invitation"
            )
        invitation.answered_at = timezone.now()
        invitation.accepted = accept
        invitation.save(update_fields=["answered_at", "accepted"])
        if accept:
            membership, _created = Membership.objects.update_or_create(
                organization=invitation.organization,
                user=actor,
                defaults={"role": invitation.role},
            )
            audit_record(
                actor=actor,
                channel=channel,
                action="membership.set",
                obj=membership,
                to_state=invitation.role,
            )
        audit_record(
            actor=actor,
            channel=channel,
            action="invitation.accept" if accept else "invitation.decline",
            obj=invitation,
        )
    return invitation


def member_remove(*, actor, organization: Organization, username: str, channel: str) -> None:
    """Take a person out of the organisation (their account and bookings stay).

    Call after the access module allowed the actor to manage members
    (`access_organization_members`). The organisation's memberships are locked first, so two
    managers removing each other at once cannot leave it without a manager: the last manager is
    never removed (make someone else a manager first).
    """
    with transaction.atomic():
        memberships = list(
            Membership.objects.select_for_update(of=("self",))
            .filter(organization=organization)
            .select_related("user")
            .order_by("pk")
        )
        membership = next((m for m in memberships if m.user.username == username), None)
        if membership is None:
            raise NotFound(f"{username} is not a member of {organization.slug}.", field="username")
        managers = [m for m in memberships if m.role == Role.MANAGER]
        if membership.role == Role.MANAGER and len(managers) == 1:
            raise Conflict(
                f"{username} is the last manager of {organization.slug}: make another member a "
                "manager first.",
                code="last_manager",
                field="username",
            )
        audit_record(
            actor=actor,
            channel=channel,
            action="membership.remove",
            obj=membership,
            from_state=membership.role,
            data={"username": username, "organization": organization.slug},
        )
        membership.delete()
