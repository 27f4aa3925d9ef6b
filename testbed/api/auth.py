"""Authentication: `Authorization: Bearer <token>` for user tokens and organisation API keys.

User tokens are django-rest-knox tokens: only a SHA-512 digest is stored, each has an expiry
(TOKEN_TTL_HOURS, renewed on use up to TOKEN_MAX_TTL_HOURS after sign-in), and signing out
deletes them. Organisation API keys (`tbk_...`) go to booking.services.api_keys.
"""

from __future__ import annotations

import binascii
import copy
from collections.abc import Callable
from hmac import compare_digest
from typing import Any, TypeVar

from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS, knox_settings
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header

from testbed import readcache
from testbed.audit import audit_record
from testbed.choices import Channel

T = TypeVar("T")
SIGN_IN_AGAIN = "Sign in again with POST /api/v1/auth/token for a new token."


def token_issue(*, user: Any) -> tuple[AuthToken, str]:
    """A new sign-in token for `user`: (the stored row, the token to hand over once).

    The user's expired tokens are deleted on the way, so they do not pile up.
    """
    AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
    return AuthToken.objects.create(user=user, expiry=knox_settings.TOKEN_TTL)


def token_for(user: Any) -> str:
    """A working Bearer token for `user` (tests, benches, scripts)."""
    return token_issue(user=user)[1]


def tokens_revoke(*, user: Any, token: AuthToken | None = None) -> int:
    """Delete one token of `user`, or all of them when `token` is None; the number deleted.

    Writes an audit entry (auth.sign_out or auth.sign_out_everywhere) on the user.
    """
    tokens = AuthToken.objects.filter(user=user)
    if token is not None:
        tokens = tokens.filter(digest=token.digest)
    with transaction.atomic():
        deleted, _ = tokens.delete()
        audit_record(
            actor=user,
            channel=Channel.API,
            action="auth.sign_out" if token is not None else "auth.sign_out_everywhere",
            obj=user,
            data={"tokens_revoked": deleted},
        )
    return deleted


class BearerTokenAuthentication(KnoxTokenAuthentication):
    """A user's token, or an organisation API key (prefix `tbk_`), sent as a Bearer token."""

    keyword = "Bearer"

    def authenticate_header(self, request: Any) -> str:
        return self.keyword

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        auth = get_authorization_header(request).split()
        if not auth:
            return None
        if auth[0].lower() != self.keyword.lower().encode():
            raise exceptions.AuthenticationFailed(
                "Send the token as `Authorization: Bearer <token>` (this API knows no other scheme)."
            )
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed(
                "Send the header as `Authorization: Bearer <token>` with one token and no spaces in it."
            )
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(
                "The token has characters a token never has."
            ) from None
        if key.startswith("tbk_"):
            from booking.services.api_keys import api_key_authenticate

            return _confirmed_refusal(lambda: api_key_authenticate(raw_key=key))
        return _confirmed_refusal(lambda: self.authenticate_credentials(key))

    def authenticate_credentials(self, token: Any) -> tuple[Any, AuthToken]:
        """The rows sharing the token's first characters, with their user: from the read cache
        (testbed/readcache.py) or one query.

        (knox's own version also reads every other token of the user on each request to
        clean up; token_issue cleans up at sign-in instead.)
        """
        key = token.decode() if isinstance(token, bytes) else token
        try:
            digest = hash_token(key)
        except (TypeError, binascii.Error, UnicodeError):
            digest = ""
        prefix = key[: CONSTANTS.TOKEN_KEY_LENGTH]
        candidates = readcache.get(
            ("token", prefix),
            lambda: list(AuthToken.objects.filter(token_key=prefix).select_related("user")),
        )
        for cached in candidates:
            # This request's own copies: DRF and the access module set attributes on them.
            auth_token = copy.copy(cached)
            auth_token.user = copy.copy(cached.user)
            if not digest or not compare_digest(digest, auth_token.digest):
                continue
            if auth_token.expiry is not None and auth_token.expiry <= timezone.now():
                if not readcache.used():  # a cached expiry may be older than the row: no delete
                    auth_token.delete()
                raise exceptions.AuthenticationFailed(f"This token has expired. {SIGN_IN_AGAIN}")
            if not auth_token.user.is_active:
                raise exceptions.AuthenticationFailed(
                    "This user account is disabled: ask an operator."
                )
            if knox_settings.AUTO_REFRESH and auth_token.expiry is not None:
                self.renew_token(auth_token)
                cached.expiry = auth_token.expiry  # or every later request would write it again
            return (auth_token.user, auth_token)
        raise exceptions.AuthenticationFailed(
            f"This token is not valid: it was revoked, has expired or never existed. {SIGN_IN_AGAIN}"
        )


def _confirmed_refusal(authenticate: Callable[[], T]) -> T:
    """A refusal based on cached rows is checked again against the database (a token made, or
    renewed by another process, a moment ago), so the cache never refuses a valid credential."""
    try:
        return authenticate()
    except exceptions.AuthenticationFailed:
        if not readcache.used():
            raise
        with readcache.bypassed():
            return authenticate()


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "testbed.api.auth.BearerTokenAuthentication"
    name = "bearerAuth"
    priority = 1  # over drf-spectacular's own knox extension, which would name it "knoxApiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}
