"""Telemetry from node agents: node keys, and ingesting batches of device samples.

A node agent (`python -m booking.agent`) authenticates with a node key `tbn_<hostname>_<secret>`
made by `manage.py node_key <hostname>`; only the key's SHA-256 is stored on the node. Each
sample is attributed on ingest to the booking whose active allocation held the device at that
moment, with one query for the whole batch and a bisect per sample: no per-sample queries, so
a batch of thousands costs a handful of round trips.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
import uuid
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from booking.models import Allocation, TelemetrySample
from equipment.models import Device, Node
from testbed.audit import audit_record
from testbed.choices import Channel
from testbed.errors import ServiceError

NODE_KEY_PREFIX = "tbn_"
MAX_BATCH = 10_000
# A node's clock may run a little ahead; much further ahead is a wrong clock, whose samples
# would be attributed to bookings that have not started.
MAX_CLOCK_AHEAD = dt.timedelta(minutes=10)
# The agent's spool keeps about two weeks of an outage (booking/agent/spool.py); a sample older
# than this is a wrong clock or a replay, and could not be attributed or billed any more.
MAX_SAMPLE_AGE = dt.timedelta(days=31)
MAX_ERRORS_LISTED = 20
OPTIONAL_FIELDS = ("memory_used_mb", "power_w", "energy_j")


# --- node keys ------------------------------------------------------------------------------


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def node_key_create(*, node: Node, actor=None, channel: str = Channel.ADMIN) -> str:
    """Give the node a new agent key and return it; only its hash is kept, so show it once.

    The previous key, if any, stops working at once.
    """
    raw_key = f"{NODE_KEY_PREFIX}{node.hostname}_{secrets.token_hex(32)}"
    with transaction.atomic():
        Node.objects.filter(pk=node.pk).update(agent_key_hash=_digest(raw_key))
        node.agent_key_hash = _digest(raw_key)
        audit_record(actor=actor, channel=channel, action="node.key_create", obj=node)
    return raw_key


def node_key_revoke(*, node: Node, actor=None, channel: str = Channel.ADMIN) -> None:
    with transaction.atomic():
        Node.objects.filter(pk=node.pk).update(agent_key_hash="")
        node.agent_key_hash = ""
        audit_record(actor=actor, channel=channel, action="node.key_revoke", obj=node)


def _not_authenticated(detail: str) -> ServiceError:
    return ServiceError(detail, code="not_authenticated", status=401)


def node_authenticate(*, authorization: str) -> Node:
    """The node whose key is in this `Authorization` header value; ServiceError 401 otherwise.

    User tokens and organisation API keys are refused here: only a node's agent sends telemetry.
    """
    scheme, _, raw_key = authorization.strip().partition(" ")
    raw_key = raw_key.strip()
    if scheme.lower() != "bearer" or not raw_key:
        raise _not_authenticated(
            "Send the node key as `Authorization: Bearer tbn_<hostname>_<secret>` "
            "(an operator makes one with `manage.py node_key <hostname>`)."
        )
    if not raw_key.startswith(NODE_KEY_PREFIX) or "_" not in raw_key[len(NODE_KEY_PREFIX) :]:
        raise _not_authenticated(
            "This endpoint takes a node key (tbn_…), not a user token or API key: run the node agent "
            "with the key from `manage.py node_key <hostname>`."
        )
    hostname = raw_key[len(NODE_KEY_PREFIX) :].rsplit("_", 1)[0]
    node = Node.objects.select_related("pool").filter(hostname=hostname).first()
    stored = node.agent_key_hash if node is not None else ""
    # Compare even when the node is unknown or keyless, so timing says nothing about host names.
    matches = secrets.compare_digest(_digest(raw_key), stored or _digest(""))
    if node is None or not stored or not matches:
        raise _not_authenticated(
            "This node key is not valid (revoked, replaced, or mistyped): ask an operator for a new one "
            "with `manage.py node_key <hostname>`."
        )
    return node


# --- ingest ---------------------------------------------------------------------------------


class _BatchErrors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, index: int, field: str, message: str) -> None:
        if len(self.errors) < MAX_ERRORS_LISTED:
            self.errors.setdefault(f"samples.{index}.{field}", []).append(message)

    def raise_if_any(self) -> None:
        if not self.errors:
            return
        first_key, first = next(iter(self.errors.items()))
        raise ServiceError(
            f"The batch was refused and nothing was stored: {first_key}: {first[0]}",
            code="invalid",
            extra={"errors": self.errors},
        )


def _number(value: Any) -> float | None:
    """A finite float from a JSON number; None for anything else (bools, strings, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _device_index(node: Node) -> dict[str, int]:
    """`device` values an agent may send for this node's devices → device id (index or UUID)."""
    keys: dict[str, int] = {}
    for device_id, index, device_uuid in Device.objects.filter(node=node).values_list(
        "id", "index", "uuid"
    ):
        keys[str(index)] = device_id
        keys[str(device_uuid)] = device_id
    return keys


def _device_key(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return str(int(text))
    # NVML writes UUIDs as GPU-xxxxxxxx-… (MIG-… for partitions).
    for prefix in ("GPU-", "MIG-"):
        if text.upper().startswith(prefix):
            text = text[len(prefix) :]
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def check_samples(*, node: Node, samples: Any, now: dt.datetime) -> list[TelemetrySample]:
    """Validate a batch as a whole and build its (unsaved) rows; refuse it all if any sample is bad.

    Errors name the sample by its position: `samples.<index>.<field>`.
    """
    if not isinstance(samples, list):
        raise ServiceError('Send {"samples": [...]}: a list of device readings.', field="samples")
    if not samples:
        raise ServiceError("The batch is empty: send at least one sample.", field="samples")
    if len(samples) > MAX_BATCH:
        raise ServiceError(
            f"A batch holds at most {MAX_BATCH:,} samples; this one has {len(samples):,}: send smaller batches.",
            field="samples",
        )
    devices = _device_index(node)
    latest = now + MAX_CLOCK_AHEAD
    earliest = now - MAX_SAMPLE_AGE
    errors = _BatchErrors()
    rows: list[TelemetrySample] = []
    node_id = node.pk
    parse = dt.datetime.fromisoformat
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict):
            errors.add(i, "device", "Each sample is an object with device, at and utilization_pct.")
            continue
        key = _device_key(sample.get("device"))
        device_id = devices.get(key) if key is not None else None
        if device_id is None:
            errors.add(
                i,
                "device",
                f"Device {sample.get('device')!r} is not a device of node {node.hostname}: "
                "send its index on the node or its UUID.",
            )
        raw_at = sample.get("at")
        at = None
        if not isinstance(raw_at, str):
            errors.add(
                i,
                "at",
                "Give `at` as an ISO 8601 time with an offset, e.g. 2026-12-01T09:00:00+09:00.",
            )
        else:
            try:
                if not raw_at.isascii() or not raw_at.isprintable():
                    raise ValueError(raw_at)  # fromisoformat lets some control characters by
                at = parse(raw_at)
            except ValueError:
                errors.add(
                    i, "at", f"{raw_at!r} is not an ISO 8601 time: e.g. 2026-12-01T09:00:00+09:00."
                )
            else:
                if at.tzinfo is None or at.utcoffset() is None:
                    errors.add(
                        i, "at", f"{raw_at!r} has no offset: add one, e.g. +00:00 or +09:00."
                    )
                    at = None
                # The year is compared first: zone arithmetic on year 1 or 9999 would overflow.
                elif at.year < earliest.year or at < earliest:
                    errors.add(
                        i,
                        "at",
                        f"{raw_at!r} is more than {MAX_SAMPLE_AGE.days} days old: samples that old "
                        "are not accepted; check the node's clock (NTP).",
                    )
                    at = None
                elif at.year > latest.year or at > latest:
                    errors.add(
                        i,
                        "at",
                        f"{raw_at!r} is in the future by this server's clock: check the node's "
                        "clock (NTP).",
                    )
                    at = None
        utilization = _number(sample.get("utilization_pct"))
        if utilization is None or not 0 <= utilization <= 100:
            errors.add(i, "utilization_pct", "Give utilization_pct as a number from 0 to 100.")
        extra: dict[str, float | None] = {}
        for name in OPTIONAL_FIELDS:
            value = sample.get(name)
            if value is None:
                extra[name] = None
                continue
            number = _number(value)
            if number is None or number < 0:
                errors.add(i, name, f"Give {name} as a number of at least 0, or leave it out.")
            extra[name] = number
        if errors.errors or device_id is None or at is None or utilization is None:
            continue
        rows.append(
            TelemetrySample(
                device_id=device_id,
                node_id=node_id,
                at=at,
                utilization_pct=utilization,
                received_at=now,
                **extra,
            )
        )
    errors.raise_if_any()
    return rows


def _holders(
    device_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> dict[int, tuple[list, list]]:
    """Per device: (sorted starts, [(end, booking id)]) of the active allocations meeting [start, end]."""
    spans: dict[int, list[tuple[dt.datetime, dt.datetime, int]]] = defaultdict(list)
    for device_id, a_start, a_end, booking_id in Allocation.objects.filter(
        device_id__in=list(device_ids),
        active=True,
        start__lte=end,
        end__gt=start,
    ).values_list("device_id", "start", "end", "booking_id"):
        spans[device_id].append((a_start, a_end, booking_id))
    out: dict[int, tuple[list, list]] = {}
    for device_id, rows in spans.items():
        rows.sort()
        out[device_id] = ([r[0] for r in rows], [(r[1], r[2]) for r in rows])
    return out


def attribute(rows: list[TelemetrySample]) -> int:
    """Set each row's booking to the one whose active allocation held its device at `at`.

    Allocations of one device never overlap (the exclusion constraint), so the holder is the
    last allocation starting at or before `at`, if it has not ended. Returns how many found one.
    """
    if not rows:
        return 0
    first = min(r.at for r in rows)
    last = max(r.at for r in rows)
    holders = _holders({r.device_id for r in rows}, first, last)  # type: ignore[arg-type]
    attributed = 0
    for row in rows:
        held = holders.get(row.device_id)  # type: ignore[arg-type]
        if held is None:
            continue
        starts, ends = held
        position = bisect_right(starts, row.at) - 1
        if position >= 0:
            end, booking_id = ends[position]
            if row.at < end:
                row.booking_id = booking_id
                attributed += 1
    return attributed


def telemetry_ingest(*, node: Node, samples: Any, now: dt.datetime | None = None) -> dict[str, int]:
    """Store a batch of samples from `node`'s agent, each attributed to the booking that held its device.

    Re-sending a batch adds nothing: (device, at) is unique and conflicts are ignored, so an agent
    that lost our reply can safely send again. Returns {"accepted", "duplicates", "attributed"}
    (attributed counts the accepted samples that fell inside a booking). Two agents racing to
    send the same sample can make the counts off by that sample; the rows never are.
    """
    now = now or timezone.now()
    rows = check_samples(node=node, samples=samples, now=now)
    unique: dict[tuple[int, dt.datetime], TelemetrySample] = {}
    for row in rows:
        unique.setdefault((row.device_id, row.at), row)  # type: ignore[arg-type]
    first = min(at for _d, at in unique)
    last = max(at for _d, at in unique)
    stored = set(
        TelemetrySample.objects.filter(
            device_id__in={d for d, _at in unique}, at__gte=first, at__lte=last
        ).values_list("device_id", "at")
    )
    fresh = [row for key, row in unique.items() if key not in stored]
    attributed = attribute(fresh)
    if fresh:
        TelemetrySample.objects.bulk_create(fresh, ignore_conflicts=True)
    return {"accepted": len(fresh), "duplicates": len(rows) - len(fresh), "attributed": attributed}
