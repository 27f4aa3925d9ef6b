"""Read-mostly rows kept in each web process and dropped everywhere on any change.

What a booking request reads on every call and an operator changes a few times a month (who a
token belongs to, a member's organisations and role, a resource's policy, its unit and node
counts, its maintenance windows) is kept in a per-process dictionary. Every entry is stamped with
the generation it was read at: a counter in Redis that `bump()` increments after the commit of
any change to those tables (model signals, connected in TestbedConfig.ready; bulk writes call
bump() themselves). A request reads the counter once (`ReadCacheMiddleware`) and uses an entry only
if it carries that generation and is younger than MAX_AGE_SECONDS; otherwise it reads the database.

Inside a transaction nothing is cached: services that write (the allocation worker's decisions,
maintenance windows, moves) read what they decide on from the database, under their locks.
Why a stale entry can never admit a booking the database would refuse: the allocation worker
reads the resource row, its units or devices and its maintenance under its locks and checks
again (booking/services/allocation.py); and every refusal found through the cache is checked again
with the cache off (booking/services/requests.py), so a stale entry cannot refuse wrongly either.
Credentials: logging out, revoking a key, deactivating a user or removing a member bump the
generation, so the next request reads the database. Without Redis (the embedded default) or when
Redis fails, nothing is cached: every read goes to the database.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction

logger = logging.getLogger(__name__)

GENERATION_KEY = "testbed:readcache:generation"
MAX_AGE_SECONDS = 60.0
MAX_ENTRIES = 20_000

T = TypeVar("T")
_local = threading.local()
_lock = threading.Lock()
_entries: OrderedDict[Any, tuple[int, float, Any]] = OrderedDict()


@lru_cache(maxsize=1)
def _redis():
    if not settings.REDIS_URL or not getattr(settings, "TESTBED_READ_CACHE", True):
        return None
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def _read_generation() -> int | None:
    client = _redis()
    if client is None:
        return None
    try:
        return int(client.get(GENERATION_KEY) or 0)
    except Exception:
        logger.warning("read cache: Redis failed; reading the database", exc_info=True)
        return None


def _generation() -> int | None:
    """The generation this request (or scope) validated; outside one, read it now. None (read
    the database) inside a transaction: what a write decides on is read fresh, under its locks."""
    if connection.in_atomic_block:
        return None
    if getattr(_local, "depth", 0):
        return _local.generation
    return _read_generation()


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """One generation read for everything inside (a request, a batch)."""
    depth = getattr(_local, "depth", 0)
    if depth == 0:
        _local.generation = _read_generation()
    _local.depth = depth + 1
    try:
        yield
    finally:
        _local.depth = depth


@contextlib.contextmanager
def bypassed() -> Iterator[None]:
    """Read the database, whatever is cached (to confirm a refusal)."""
    depth = getattr(_local, "depth", 0)
    saved = getattr(_local, "generation", None)
    _local.depth, _local.generation = depth + 1, None
    try:
        yield
    finally:
        _local.depth, _local.generation = depth, saved


def used() -> bool:
    """Is the cache on for this request? (False: every read already went to the database.)"""
    return _generation() is not None


def get(key: Any, load: Callable[[], T]) -> T:
    """The cached value for `key` (a copy of it), or `load()` read now and kept. None is not kept."""
    generation = _generation()
    if generation is None:
        return load()
    now = time.monotonic()
    with _lock:
        entry = _entries.get(key)
    if entry is not None:
        stamp, loaded_at, kept = entry
        if stamp == generation and now - loaded_at < MAX_AGE_SECONDS:
            return copy.copy(kept)
    value = load()
    if value is not None:
        with _lock:
            _entries[key] = (generation, now, value)
            _entries.move_to_end(key)
            while len(_entries) > MAX_ENTRIES:
                _entries.popitem(last=False)
        value = copy.copy(value)
    return value


def _increment() -> None:
    client = _redis()
    with _lock:
        _entries.clear()  # this process at once; the others at their next request
    if client is None:
        return
    try:
        client.incr(GENERATION_KEY)
    except Exception:  # entries still expire after MAX_AGE_SECONDS
        logger.error("read cache: could not bump the generation", exc_info=True)


def bump() -> None:
    """Something cached changed: every process drops what it holds, after this transaction commits."""
    transaction.on_commit(_increment, robust=True)


def clear_local() -> None:
    """Forget this process's entries (tests)."""
    with _lock:
        _entries.clear()
    _redis.cache_clear()


class ReadCacheMiddleware:
    """One generation read per request."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request):
        with scope():
            return self.get_response(request)


# --- what changes bump it ------------------------------------------------------------------------

# Fields whose writes do not change anything cached (they are written on every use).
_IGNORED_UPDATES = {
    "knox.AuthToken": {"expiry"},
    "booking.ApiKey": {"last_used_at"},
    "auth.User": {"last_login"},
}


def _changed(sender, instance=None, update_fields=None, **kwargs) -> None:
    ignored = _IGNORED_UPDATES.get(sender._meta.label)
    if ignored and update_fields and set(update_fields) <= ignored:
        return
    bump()


CACHED_MODELS = (
    "equipment.Center",
    "equipment.EquipmentType",
    "equipment.EquipmentUnit",
    "equipment.AcceleratorPool",
    "equipment.Node",
    "equipment.Device",
    "equipment.MaintenanceWindow",
    "booking.Organization",
    "booking.Membership",
    "booking.ApiKey",
    "knox.AuthToken",
    "auth.User",
)


def watch(model) -> None:
    """Saving or deleting a row of `model` drops what every process has cached (apps whose rows
    feed cached reads call this from their AppConfig.ready)."""
    from django.db.models.signals import post_delete, post_save

    label = model._meta.label
    post_save.connect(_changed, sender=model, dispatch_uid=f"readcache-save-{label}")
    post_delete.connect(_changed, sender=model, dispatch_uid=f"readcache-delete-{label}")


def connect_signals() -> None:
    from django.apps import apps
    from django.db.models.signals import m2m_changed

    for label in CACHED_MODELS:
        watch(apps.get_model(label))
    user = apps.get_model("auth.User")
    m2m_changed.connect(_changed, sender=user.groups.through, dispatch_uid="readcache-user-groups")
