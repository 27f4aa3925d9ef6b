"""Organisation API keys: made by a manager, scoped (testbed.choices.KeyScope), revocable; only a hash is kept.

Each key gets a service account of its own (`ApiKey.user`, username `apikey-<prefix>`, no password,
no membership, never staff): bookings made with the key name it, and the access module gives it
its organisation's rights limited to the key's scopes, whoever made the key.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions

from booking.models import ApiKey, Organization
from booking.services.access import bind_api_key
from testbed import readcache
from testbed.audit import audit_record
from testbed.choices import LEGACY_KEY_SCOPES
from testbed.errors import ServiceError

# `last_used_at` is written at most this often per key and process.
LAST_USED_PRECISION = dt.timedelta(minutes=1)
_last_used_written: dict[int, dt.datetime] = {}


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def normalise_scopes(scopes: list[str]) -> list[str]:
    """The key's scopes, sorted; the first version's names (read, book) expand to the new ones."""
    expanded: set[str] = set()
    for scope in scopes:
        expanded.update(LEGACY_KEY_SCOPES.get(scope, (scope,)))
    unknown = sorted(expanded - set(ApiKey.SCOPES))
    if unknown or not scopes:
        raise ServiceError(
            f"Scopes must be some of {', '.join(ApiKey.SCOPES)} (got {scopes!r}).", field="scopes"
        )
    return sorted(expanded)


def service_account_for(prefix: str):
    """A new user that only a key can act as: no usable password, no membership, not staff."""
    user = get_user_model()(username=f"apikey-{prefix}", is_active=True, is_staff=False)
    user.set_unusable_password()
    user.save()
    return user


def api_key_create(
    *, actor, organization: Organization, name: str, scopes: list[str], channel: str
) -> tuple[ApiKey, str]:
    """Returns the key and its secret, shown once."""
    scopes = normalise_scopes(scopes)
    if not name.strip():
        raise ServiceError("Name the key after the system that will use it.", field="name")
    prefix = secrets.token_hex(4)
    raw = f"tbk_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = ApiKey.objects.create(
            organization=organization,
            name=name.strip(),
            prefix=prefix,
            key_hash=_hash(raw),
            scopes=scopes,
            created_by=actor,
            user=service_account_for(prefix),
        )
        audit_record(
            actor=actor,
            channel=channel,
            action="api_key.create",
            obj=key,
            data={"scopes": key.scopes},
        )
    return key, raw


def api_key_revoke(*, actor, key: ApiKey, channel: str) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(actor=actor, channel=channel, action="api_key.revoke", obj=key)
    return key


def api_key_authenticate(*, raw_key: str):
    """(service account, key) for a valid key; the access module then limits it to the key's
    organisation and scopes. The maker's own rights never come into it."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3:
        raise exceptions.AuthenticationFailed(
            "This API key is malformed: copy it again from where it was shown."
        )
    key = readcache.get(
        ("api-key", parts[1]),
        lambda: (
            ApiKey.objects.select_related("user", "organization").filter(prefix=parts[1]).first()
        ),
    )
    if key is not None and key.user is not None:
        key.user = copy.copy(key.user)  # this request's own: the access module marks it
    if key is None or not secrets.compare_digest(key.key_hash, _hash(raw_key)):
        raise exceptions.AuthenticationFailed(
            "This API key is not valid: ask your organisation manager for a new one."
        )
    if key.revoked_at is not None:
        raise exceptions.AuthenticationFailed(
            "This API key was revoked: ask your organisation manager for a new one."
        )
    if not key.organization.is_active:
        raise exceptions.AuthenticationFailed(
            "This organisation is deactivated, and its API keys with it: ask a facility operator."
        )
    if key.user is None or not key.user.is_active:
        raise exceptions.AuthenticationFailed(
            "This API key has no active service account: make a new key."
        )
    now = timezone.now()
    written = _last_used_written.get(key.pk) or key.last_used_at
    if written is None or now - written > LAST_USED_PRECISION:
        # Once a minute at most per process: not a write on every request.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        _last_used_written[key.pk] = now
    bind_api_key(key.user, key)
    return key.user, key
