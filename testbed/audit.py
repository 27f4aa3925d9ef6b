"""Writing audit entries. Call inside the transaction that makes the change."""

from __future__ import annotations

from typing import Any

from django.db import models

from testbed.choices import Channel
from testbed.models import AuditEntry


def audit_entry(
    *,
    actor: Any,
    channel: str,
    action: str,
    obj: models.Model,
    from_state: str = "",
    to_state: str = "",
    data: dict | None = None,
) -> AuditEntry:
    """An unsaved entry, for writing many at once with bulk_create."""
    if channel not in Channel.values:
        raise ValueError(f"unknown audit channel {channel!r}")
    return AuditEntry(
        actor=actor if getattr(actor, "pk", None) else None,
        channel=channel,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        from_state=from_state,
        to_state=to_state,
        data=data or {},
    )


def audit_record(**kwargs: Any) -> AuditEntry:
    """Write one entry now (same arguments as audit_entry)."""
    entry = audit_entry(**kwargs)
    entry.save(force_insert=True)
    return entry
