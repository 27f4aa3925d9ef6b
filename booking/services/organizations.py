"""Organisations and their members."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from booking.models import Membership, Organization
from testbed.audit import audit_record
from testbed.errors import Conflict, ServiceError


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
    from booking.services.access import is_operator

    if not is_operator(actor):
        fields.pop("is_active", None)
        fields.pop("slug", None)
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
) -> Membership:
    """Add a user to the organisation, creating the account when missing."""
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
        membership, created = Membership.objects.get_or_create(
            organization=organization, user=user, defaults={"role": role}
        )
        if not created:
            if membership.role == role:
                raise Conflict(
                    f"{username} is already a {role} of {organization.slug}.", field="username"
                )
            membership.role = role
            membership.save(update_fields=["role"])
        audit_record(
            actor=actor, channel=channel, action="membership.set", obj=membership, to_state=role
        )
    return membership
