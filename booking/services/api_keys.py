"""Organisation API keys: made by a manager, scoped (read, book), revocable; only a hash is kept."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone
from rest_framework import exceptions

from booking.models import ApiKey, Organization
from testbed.audit import audit_record
from testbed.errors import ServiceError


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(
    *, actor, organization: Organization, name: str, scopes: list[str], channel: str
) -> tuple[ApiKey, str]:
    """Returns the key and its secret, shown once."""
    unknown = sorted(set(scopes) - set(ApiKey.SCOPES))
    if unknown or not scopes:
        raise ServiceError(
            f"Scopes must be some of {', '.join(ApiKey.SCOPES)} (got {scopes!r}).", field="scopes"
        )
    if not name.strip():
        raise ServiceError("Name the key after the system that will use it.", field="name")
    prefix = secrets.token_hex(4)
    raw = f"tbk_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        organization=organization,
        name=name.strip(),
        prefix=prefix,
        key_hash=_hash(raw),
        scopes=sorted(set(scopes)),
        created_by=actor,
    )
    audit_record(
        actor=actor, channel=channel, action="api_key.create", obj=key, data={"scopes": key.scopes}
    )
    return key, raw


def api_key_revoke(*, actor, key: ApiKey, channel: str) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(actor=actor, channel=channel, action="api_key.revoke", obj=key)
    return key


def api_key_authenticate(*, raw_key: str):
    """(user, key) for a valid key: the user is the manager who made it, limited to the key's org and scopes."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3:
        raise exceptions.AuthenticationFailed(
            "This API key is malformed: copy it again from where it was shown."
        )
    key = (
        ApiKey.objects.select_related("created_by", "organization").filter(prefix=parts[1]).first()
    )
    if key is None or not secrets.compare_digest(key.key_hash, _hash(raw_key)):
        raise exceptions.AuthenticationFailed(
            "This API key is not valid: ask your organisation manager for a new one."
        )
    if key.revoked_at is not None:
        raise exceptions.AuthenticationFailed(
            "This API key was revoked: ask your organisation manager for a new one."
        )
    if not key.created_by.is_active:
        raise exceptions.AuthenticationFailed(
            "The account that made this key is disabled: make a new key."
        )
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return key.created_by, key
