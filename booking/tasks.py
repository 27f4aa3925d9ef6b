"""Celery entry points: fetch by id, call one service. Every task is safe to run twice."""

from __future__ import annotations

import datetime as dt
import random

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from booking.services.allocation import AllocationBusy, allocation_run_shard, booking_allocate
from booking.services.bookings import (
    bookings_complete_ended,
    bookings_mark_no_shows,
    bookings_requeue_lost,
    bookings_start_pool_sessions,
)


@shared_task(bind=True, name="booking.allocate_booking", max_retries=50, acks_late=True)
def allocate_booking(self, booking_id: int) -> str:
    try:
        return booking_allocate(booking_id=booking_id)
    except AllocationBusy as exc:
        # A lock timeout is retried, never shown to a user as a crash; jitter spreads the herd.
        raise self.retry(exc=exc, countdown=random.uniform(0.05, 0.5)) from exc  # noqa: S311


@shared_task(bind=True, name="booking.allocate_shard", max_retries=None, acks_late=True)
def allocate_shard(self, shard: int) -> int:
    """Decide a shard's pending bookings until none is left (booking/services/wakeup.py)."""
    try:
        return allocation_run_shard(shard)
    except AllocationBusy as exc:
        raise self.retry(exc=exc, countdown=random.uniform(0.05, 0.5)) from exc  # noqa: S311
    except (OperationalError, InterfaceError) as exc:
        # The database went away: try again with backoff (the flag is renewed by the retry's
        # first batch; if the worker dies meanwhile, the flag expires and the sweep queues it).
        delay = min(30.0, 0.5 * 2 ** min(self.request.retries, 6))
        raise self.retry(exc=exc, countdown=delay, max_retries=20) from exc


@shared_task(name="booking.send_booking_email", acks_late=True, max_retries=5)
def send_booking_email(booking_id: int, event: str) -> int:
    from booking.services.emails import booking_email_send

    return booking_email_send(booking_id=booking_id, event=event)


@shared_task(name="booking.sweep_pending", ignore_result=False)
def sweep_pending() -> int:
    return len(
        bookings_requeue_lost(
            older_than=dt.timedelta(seconds=settings.TESTBED_PENDING_SWEEP_SECONDS)
        )
    )


@shared_task(name="booking.mark_no_shows")
def mark_no_shows() -> int:
    return bookings_mark_no_shows()


@shared_task(name="booking.expire_unapproved")
def expire_unapproved() -> int:
    from booking.services.expiry import bookings_expire_unapproved

    return bookings_expire_unapproved()


@shared_task(name="booking.start_pool_sessions")
def start_pool_sessions() -> int:
    return bookings_start_pool_sessions()


@shared_task(name="booking.complete_ended")
def complete_ended() -> int:
    return bookings_complete_ended()


@shared_task(name="booking.allocate_due_rounds")
def allocate_due_rounds() -> int:
    from booking.services.rounds import rounds_allocate_due

    return rounds_allocate_due()


@shared_task(name="booking.flag_idle")
def flag_idle() -> dict[str, int]:
    from booking.services.idle import bookings_flag_idle

    return bookings_flag_idle()


@shared_task(name="booking.reclaim_idle")
def reclaim_idle() -> list[int]:
    from booking.services.idle import bookings_reclaim_idle

    return bookings_reclaim_idle()


@shared_task(name="booking.rollup_usage")
def rollup_usage() -> dict:
    from booking.services.usage import usage_rollup_recent

    return usage_rollup_recent()


@shared_task(name="booking.quota_reminders")
def quota_reminders() -> int:
    from booking.services.reminders import quota_reminders_send

    return len(quota_reminders_send())
