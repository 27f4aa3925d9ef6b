"""Writing audit entries. Call inside the transaction that makes the change."""

from __future__ import annotations

from typing import Any

from django.db import models

from testbed.choices import Channel
from testbed.models import AuditEntry


def audit_record(
    *,
    actor: Any,
    channel: str,
    action: str,
    obj: models.Model,
    from_state: str = "",
    to_state: str = "",
    data: dict | None = None,
) -> AuditEntry:
    if channel not in Channel.values:
        raise ValueError(f"unknown audit channel {channel!r}")
    return AuditEntry.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        channel=channel,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        from_state=from_state,
        to_state=to_state,
        data=data or {},
    )
