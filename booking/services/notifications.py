"""Side effects after commit: emails to bookers, managers and operators. Never called while locks are held.

Each function only queues a Celery task, so a slow mail server never slows a decision.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def _queue(name: str, *args) -> None:
    from booking import tasks

    try:
        getattr(tasks, name).delay(*args)
    except Exception:  # the broker being down must not undo a committed decision
        logger.exception("could not queue %s%s", name, args)


def booking_decided(booking_id: int) -> None:
    _queue("send_booking_email", booking_id, "decided")


def booking_changed(booking_id: int, event: str) -> None:
    _queue("send_booking_email", booking_id, event)


def maintenance_affects(booking_ids: list[int], window_id: int) -> None:
    for booking_id in booking_ids:
        _queue("send_booking_email", booking_id, f"maintenance:{window_id}")


def allocation_failed(booking_id: int) -> None:
    """Alert the operators: deciding this booking raised, so it was rejected as an internal error."""
    _queue("send_booking_email", booking_id, "allocation_failed")
