"""Idempotency-Key: a repeated POST with the same key returns the first result and creates nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from django.db import IntegrityError, transaction

from booking.models import IdempotencyRecord
from testbed.errors import ServiceError


def request_fingerprint(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def idempotent_create(
    *, user, endpoint: str, key: str | None, fingerprint: str, create: Callable[[], int]
) -> tuple[int, bool]:
    """(object id, created now?). Without a key, just creates."""
    if not key:
        return create(), True
    if len(key) > 200:
        raise ServiceError(
            "Idempotency-Key is longer than 200 characters: use a UUID.", field="Idempotency-Key"
        )

    def existing() -> tuple[int, bool] | None:
        record = IdempotencyRecord.objects.filter(user=user, endpoint=endpoint, key=key).first()
        if record is None:
            return None
        if record.request_hash != fingerprint:
            raise ServiceError(
                "This Idempotency-Key was already used for a different request: use a new key for a new request.",
                code="idempotency_conflict",
                field="Idempotency-Key",
                status=422,
            )
        if record.object_id is None:  # the first request is still being created: let it finish
            raise ServiceError(
                "A request with this Idempotency-Key is still being processed: retry in a moment.",
                code="idempotency_in_progress",
                field="Idempotency-Key",
                status=409,
            )
        return record.object_id, False

    found = existing()
    if found:
        return found
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                user=user, endpoint=endpoint, key=key, request_hash=fingerprint
            )
            object_id = create()
            record.object_id = object_id
            record.save(update_fields=["object_id"])
            return object_id, True
    except IntegrityError:
        found = existing()  # a concurrent request with the same key won the race
        if found:
            return found
        raise
