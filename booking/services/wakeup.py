"""Waking the deciders: at most one queued allocation task per shard at a time (docs/allocation.md).

Pending bookings are split into TESTBED_ALLOCATION_SHARDS shards by resource (every booking of one
equipment type or pool is in the same shard). The protocol, with F(s) a Redis key per shard:

    web, after the booking's transaction committed:  SET F(s) NX EX ttl → won? queue allocate_shard(s)
    task allocate_shard(s):  repeat { decide batches until the shard has nothing pending;
                                      DEL F(s); if nothing pending (unlocked) in s: stop;
                                      SET F(s) NX EX ttl → lost? stop }

No lost wake-up: a web process that loses the SET saw F(s) set, so the task holding it has not yet
deleted it; that task deletes F(s) only after its last batch and then looks for pending bookings
again, in a new transaction that starts after the booking committed, so it sees the booking
(and decides it, or a web process that won the SET in between queues a task that will). A task that
dies holding F(s) wakes nobody: F(s) expires after its TTL, which the task renews while it works,
and the pending sweep (`booking.sweep_pending`) queues the shard of any booking pending longer than
TESTBED_PENDING_SWEEP_SECONDS regardless of the flag. Two tasks on one shard at once (a sweep, a
redelivered message) are harmless: batches are claimed with SKIP LOCKED and decided under the
locking rule. Without Redis (the embedded default) every commit queues a task.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from django.conf import settings
from django.db.models import F, IntegerField, Q, QuerySet
from django.db.models.functions import Coalesce, Mod

logger = logging.getLogger(__name__)

FLAG = "testbed:alloc:flag:{shard}"


def shard_count() -> int:
    return max(1, int(getattr(settings, "TESTBED_ALLOCATION_SHARDS", 4)))


def shard_of(*, equipment_type_id: int | None, pool_id: int | None) -> int:
    """The shard of a resource: types and pools interleave (2·id and 2·id+1) before the modulo."""
    key = equipment_type_id * 2 if equipment_type_id else (pool_id or 0) * 2 + 1
    return key % shard_count()


def in_shard(queryset: QuerySet, shard: int) -> QuerySet:
    """Bookings of `queryset` in `shard`, computed by PostgreSQL from the same formula."""
    key = Coalesce(F("equipment_type_id") * 2, F("pool_id") * 2 + 1, output_field=IntegerField())
    return queryset.alias(_shard=Mod(key, shard_count())).filter(Q(_shard=shard))


@lru_cache(maxsize=1)
def _redis():
    if not settings.REDIS_URL:
        return None
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def _ttl() -> int:
    return max(1, int(getattr(settings, "TESTBED_ALLOCATION_FLAG_TTL", 10)))


def flag_take(shard: int) -> bool:
    """SET NX the shard's flag; True when this caller won it (and so must queue the task).
    Without Redis, or when Redis fails, answers True: an extra task is harmless, a missing one not."""
    client = _redis()
    if client is None or not getattr(settings, "TESTBED_ALLOCATION_COALESCE", True):
        return True
    try:
        return bool(client.set(FLAG.format(shard=shard), "1", nx=True, ex=_ttl()))
    except Exception:
        logger.warning("allocation flag %s: Redis failed; queueing anyway", shard, exc_info=True)
        return True


def flag_renew(shard: int) -> None:
    """The task is still working: push the flag's expiry out again."""
    client = _redis()
    if client is None:
        return
    try:
        client.set(FLAG.format(shard=shard), "1", ex=_ttl())
    except Exception:
        logger.warning("allocation flag %s: could not renew", shard, exc_info=True)


def flag_drop(shard: int) -> None:
    client = _redis()
    if client is None:
        return
    try:
        client.delete(FLAG.format(shard=shard))
    except Exception:  # it expires by itself; the task still looks again afterwards
        logger.warning("allocation flag %s: could not delete", shard, exc_info=True)


def _queue(shard: int) -> None:
    from booking.tasks import allocate_shard

    try:
        allocate_shard.delay(shard)
    except Exception:
        # The broker is down: the booking is committed and the sweep will find it. Let the flag
        # go, or the next booking of this shard would not try to queue either.
        logger.exception("could not queue allocate_shard(%s); the pending sweep will", shard)
        flag_drop(shard)


def allocation_wake(shard: int) -> None:
    """After a commit that left a booking pending in `shard`: make sure a decider is coming."""
    if flag_take(shard):
        _queue(shard)


def allocation_wake_forced(shard: int) -> None:
    """The sweep: queue the shard's task whatever the flag says (its holder may be dead)."""
    flag_renew(shard)
    _queue(shard)


def flags_clear() -> int:
    """Drop every shard's flag (after purging the broker's queue, whose tasks held them)."""
    client = _redis()
    if client is None:
        return 0
    return int(client.delete(*[FLAG.format(shard=s) for s in range(shard_count())]) or 0)
