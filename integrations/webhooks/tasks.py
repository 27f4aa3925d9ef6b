"""Celery entry points of webhook delivery: thin, idempotent (see integrations/webhooks/delivery.py)."""

from __future__ import annotations

from celery import shared_task

from integrations.webhooks import delivery


@shared_task(name="webhooks.deliver")
def deliver(delivery_id: int) -> str | None:
    """One attempt of a due delivery; running it twice sends once (the claim is row-count checked)."""
    return delivery.delivery_attempt(delivery_id=delivery_id)


@shared_task(name="webhooks.retry_due")
def retry_due() -> int:
    """Beat: queue the retries that are due, and take back attempts whose worker died."""
    return delivery.deliveries_retry_due()


@shared_task(name="webhooks.prune_log")
def prune_log() -> int:
    """Beat: delete finished deliveries older than TESTBED_WEBHOOKS_LOG_DAYS."""
    return delivery.deliveries_prune()
