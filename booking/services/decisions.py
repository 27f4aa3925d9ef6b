"""Telling waiting requests that a booking was decided.

The worker publishes on a Redis channel after its transaction commits; a request waiting with
`Prefer: wait=N` subscribes and wakes at once. Without Redis (the embedded default) the web
falls back to polling the row. Either way the web holds no transaction while it waits.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from django.conf import settings

from booking.choices import BookingStatus
from booking.models import Booking

logger = logging.getLogger(__name__)
CHANNEL = "testbed:booking-decided:{}"


@lru_cache(maxsize=1)
def _redis():
    if not settings.REDIS_URL:
        return None
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)


def decision_publish(booking_id: int, status: str) -> None:
    client = _redis()
    if client is None:
        return
    try:
        client.publish(CHANNEL.format(booking_id), status)
    except Exception:  # waiting clients fall back to their final read
        logger.warning("could not publish the decision of booking %s", booking_id, exc_info=True)


def _status(booking_id: int) -> str | None:
    return Booking.objects.filter(pk=booking_id).values_list("status", flat=True).first()


def decision_wait(booking_id: int, seconds: float) -> str | None:
    """Block up to `seconds` until the booking leaves `pending`; its status then (or still pending)."""
    deadline = time.monotonic() + seconds
    client = _redis()
    if client is not None:
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(CHANNEL.format(booking_id))
            try:
                status = _status(booking_id)  # after subscribing, so a decision cannot slip between
                while status == BookingStatus.PENDING and (left := deadline - time.monotonic()) > 0:
                    message = pubsub.get_message(timeout=min(left, 1.0))
                    if message is not None:  # sent after the decision committed: it is the status
                        data = message["data"]
                        return data.decode() if isinstance(data, bytes) else str(data)
                return status
            finally:
                pubsub.close()
        except Exception:
            logger.warning(
                "Redis wait failed for booking %s; polling instead", booking_id, exc_info=True
            )
    pause = 0.005
    status = _status(booking_id)
    while status == BookingStatus.PENDING and time.monotonic() < deadline:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.05)
        status = _status(booking_id)
    return status
