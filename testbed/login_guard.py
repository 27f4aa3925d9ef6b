"""Per-account sign-in limit: after repeated wrong passwords an account is refused for a while.

Counted per account (the normalised username), not per address, so an attacker who rotates
addresses gets no more guesses, and colleagues behind the same NAT address are never locked
out by someone else's mistakes. A fixed window: the first failure starts it, up to
LOGIN_ACCOUNT_MAX_FAILURES failures fit in LOGIN_ACCOUNT_WINDOW_SECONDS, and after that every
sign-in to the account (even with the right password) is refused until the window ends. A
successful sign-in clears the count. Counts live in the default cache (Redis in production,
shared by every web process).
"""

from __future__ import annotations

import hashlib
import math
import time
import unicodedata
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


def normalise_username(username: str) -> str:
    """The form failures are counted under: `Member`, ` member ` and `ｍｅｍｂｅｒ` are one account."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def _keys(username: str) -> tuple[str, str]:
    digest = hashlib.sha256(normalise_username(username).encode()).hexdigest()[:32]
    return f"login-guard:count:{digest}", f"login-guard:since:{digest}"


def login_wait_seconds(*, username: str) -> int:
    """Seconds until `username` may try again; 0 when it may try now."""
    count_key, since_key = _keys(username)
    found = cache.get_many([count_key, since_key])
    if int(found.get(count_key) or 0) < settings.LOGIN_ACCOUNT_MAX_FAILURES:
        return 0
    window = settings.LOGIN_ACCOUNT_WINDOW_SECONDS
    since = found.get(since_key)
    if since is None:
        return window
    return max(1, math.ceil(float(since) + window - time.time()))


def login_failure_record(*, username: str) -> None:
    count_key, since_key = _keys(username)
    window = settings.LOGIN_ACCOUNT_WINDOW_SECONDS
    cache.add(since_key, time.time(), window)
    cache.add(count_key, 0, window)
    try:
        cache.incr(count_key)  # atomic in Redis: racing guesses are all counted
    except ValueError:  # the window ended between add and incr
        cache.set(count_key, 1, window)
        cache.set(since_key, time.time(), window)


def login_failures_clear(*, username: str) -> None:
    cache.delete_many(list(_keys(username)))


class LockoutModelBackend(ModelBackend):
    """Django's model backend with the per-account limit, for every sign-in path (API token,
    admin login): a locked account is refused before its password is checked."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        if login_wait_seconds(username=username):
            # PermissionDenied stops authenticate() at once: no other backend is tried.
            raise PermissionDenied("Too many wrong passwords for this account.")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            login_failure_record(username=username)
        else:
            login_failures_clear(username=username)
        return user
