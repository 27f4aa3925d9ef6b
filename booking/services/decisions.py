"""Telling waiting requests that a booking was decided.

The worker publishes `"<booking id> <decision JSON>"` (status, rejection, allocations: what the
booking's API answer needs; `"<booking id> <status>"` from older workers) on one Redis channel
after its transaction commits, so the request answers from it without reading the booking again. Each web process keeps one subscription to it, in a background thread, and wakes the
requests waiting with `Prefer: wait=N` on the bookings they created: no Redis connection, no
subscribe and no database read per request. The listener also remembers the last few thousand
decisions, so a decision that arrives before its request starts waiting is not missed.
Without Redis (the embedded default) the web polls the row instead. Either way the web holds
no transaction while it waits.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from functools import lru_cache

from django.conf import settings

from booking.choices import BookingStatus
from booking.models import Booking

logger = logging.getLogger(__name__)
CHANNEL = "testbed:booking-decided"
REMEMBERED = 4096  # recent decisions kept per process
SAFETY_POLL_SECONDS = 1.0  # a waiter also reads the row this often, in case a message was lost


@lru_cache(maxsize=1)
def _redis():
    if not settings.REDIS_URL:
        return None
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)


Decision = dict  # {"status": ..., and when the worker sent them: the decided fields}


def decisions_publish(outcomes: Mapping[int, str | Decision]) -> None:
    """Publish the decisions of a batch (booking id → status, or the decision with its status) in
    one round trip, after commit."""
    client = _redis()
    if client is None or not outcomes:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for booking_id, decision in outcomes.items():
            text = decision if isinstance(decision, str) else json.dumps(decision, default=str)
            pipe.publish(CHANNEL, f"{booking_id} {text}")
        pipe.execute()
    except Exception:  # waiting clients fall back to reading the row
        logger.warning("could not publish the decisions of %s", sorted(outcomes), exc_info=True)


class _Waiter:
    __slots__ = ("event", "decision")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.decision: Decision | None = None


class _Listener:
    """One subscription per process; dispatches decisions to the threads waiting for them."""

    def __init__(self, client) -> None:
        self.client = client
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.ready = threading.Event()  # subscribed: decisions published from now on arrive
        self.waiters: dict[int, list[_Waiter]] = {}
        self.recent: OrderedDict[int, Decision] = OrderedDict()
        self.thread = threading.Thread(target=self._run, name="booking-decisions", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(CHANNEL)
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self.ready.set()
                    elif message["type"] == "message":
                        self._deliver(message["data"])
            except Exception:
                # Decisions published while disconnected are not seen: waiters read the row
                # every SAFETY_POLL_SECONDS, so they learn them a little later, never wrongly.
                self.ready.clear()
                logger.warning("decision listener lost Redis; reconnecting", exc_info=True)
                time.sleep(1)
            finally:
                try:
                    pubsub.close()
                except Exception:  # noqa: S110 - already broken
                    pass

    def _deliver(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else str(data)
        raw_id, _, rest = text.partition(" ")
        try:
            booking_id = int(raw_id)
            decision = json.loads(rest) if rest.startswith("{") else {"status": rest}
            if not isinstance(decision, dict) or not isinstance(decision.get("status"), str):
                return
        except ValueError:
            return
        with self.lock:
            self.recent[booking_id] = decision
            if len(self.recent) > REMEMBERED:
                self.recent.popitem(last=False)
            for waiter in self.waiters.pop(booking_id, ()):
                waiter.decision = decision
                waiter.event.set()

    def expect(self, booking_id: int) -> _Waiter:
        waiter = _Waiter()
        with self.lock:
            known = self.recent.get(booking_id)
            if known is not None:
                waiter.decision = known
                waiter.event.set()
            else:
                self.waiters.setdefault(booking_id, []).append(waiter)
        return waiter

    def forget(self, booking_id: int, waiter: _Waiter) -> None:
        with self.lock:
            waiting = self.waiters.get(booking_id)
            if waiting and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self.waiters[booking_id]


_listener_lock = threading.Lock()
_listener_instance: _Listener | None = None


def _listener() -> _Listener | None:
    global _listener_instance
    client = _redis()
    if client is None:
        return None
    current = _listener_instance
    if current is not None and current.pid == os.getpid():
        return current
    with _listener_lock:  # first use in this process (or first after a fork)
        if _listener_instance is None or _listener_instance.pid != os.getpid():
            if _listener_instance is not None:  # inherited through fork: its thread is gone
                _redis.cache_clear()
                client = _redis()
            _listener_instance = _Listener(client)
        return _listener_instance


def decision_listen(timeout: float = 1.0) -> bool:
    """Make sure this process is subscribed before a booking is queued; False without Redis.

    Called before creating a booking that will be waited for: once subscribed, its decision
    cannot be published unseen.
    """
    listener = _listener()
    return listener is not None and listener.ready.wait(timeout)


def _status(booking_id: int) -> str | None:
    return Booking.objects.filter(pk=booking_id).values_list("status", flat=True).first()


def decision_wait(booking_id: int, seconds: float, *, listened: bool = False) -> str | None:
    """Block up to `seconds` until the booking leaves `pending`; its status then (or still pending)."""
    return decision_await(booking_id, seconds, listened=listened)["status"]


def decision_await(booking_id: int, seconds: float, *, listened: bool = False) -> Decision:
    """Block up to `seconds` until the booking leaves `pending`: the decision as the worker
    published it (with the decided fields), or {"status": ...} as read from the row.

    `listened=True` says decision_listen() answered True before the booking was created, so no
    first read of the row is needed.
    """
    deadline = time.monotonic() + seconds
    listener = _listener() if listened else None
    if listener is None and decision_listen(timeout=min(seconds, 1.0)):
        listener = _listener()
    if listener is not None:
        waiter = listener.expect(booking_id)
        try:
            # Listening since before the booking existed: nothing can have been missed yet.
            status = BookingStatus.PENDING if listened else _status(booking_id)
            while status == BookingStatus.PENDING:
                left = deadline - time.monotonic()
                if left <= 0:
                    return {"status": status}
                if waiter.event.wait(min(left, SAFETY_POLL_SECONDS)):
                    return waiter.decision or {"status": BookingStatus.PENDING}
                status = _status(booking_id)
            return {"status": status}
        finally:
            listener.forget(booking_id, waiter)
    pause = 0.005
    status = _status(booking_id)
    while status == BookingStatus.PENDING and time.monotonic() < deadline:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.05)
        status = _status(booking_id)
    return {"status": status}
