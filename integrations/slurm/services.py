"""The Slurm sync: the reservations a Slurm-backed pool should have, and the reconciler that makes
the cluster hold exactly those (creates, updates, deletes, each written to the audit log).

Desired state of a pool, from our database only:
- each confirmed or active booking with active allocations → `<prefix><booking id>` on the Slurm
  names of its nodes, from its allocations' start to their end (the end includes the pool's
  buffer), for the organisation's account and users. A booking that holds only some devices of
  a node gets Flags=OVERLAP, so the other bookings on that node can have their reservations too
  (Slurm 22.05 without slurmdbd reserves whole nodes, not GPUs: docs/slurm.md);
- each maintenance window on the pool or one of its nodes → `<prefix>maint-<window id>`,
  Flags=MAINT,IGNORE_JOBS, for the cluster's maintenance users.

Slurm is never called while a booking is decided: the booking path publishes events, a receiver
queues `reconcile_cluster` (tasks.py), and the beat reconciles every cluster periodically. A
cluster that cannot be reached keeps its pending count and last error for the operators.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections import Counter
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from booking.choices import BookingStatus
from booking.models import Allocation, Booking, Organization
from equipment.choices import DeviceStatus
from equipment.models import Device, MaintenanceWindow, Node
from integrations.slurm.models import SlurmAccount, SlurmCluster, SlurmNode, split_names
from integrations.slurm.reconcile import Action, Plan, plan
from integrations.slurm.scontrol import Reservation, Scontrol, SlurmRefused, SlurmUnavailable
from testbed import readcache
from testbed.audit import audit_entry
from testbed.choices import Channel
from testbed.models import AuditEntry

logger = logging.getLogger(__name__)

RESERVED_STATUSES = (BookingStatus.CONFIRMED, BookingStatus.ACTIVE)
LOCK_TTL_SECONDS = 300

# --- which pools are Slurm-backed (cached: every domain event asks) ------------------------------


def slurm_index() -> dict:
    """{"by_code": {pool code: cluster id}, "by_pool": {pool id: cluster id}} of enabled clusters."""
    return readcache.get(("slurm-index",), _slurm_index_read)


def _slurm_index_read() -> dict:
    rows = SlurmCluster.objects.filter(enabled=True).values_list("pk", "pool_id", "pool__code")
    return {
        "by_code": {code: pk for pk, _pool, code in rows},
        "by_pool": {str(pool): pk for pk, pool, _code in rows},
    }


def slurm_index_forget() -> None:
    """Call after a cluster is added, changed or removed (saves do it through the read cache's
    signals; this is for bulk changes)."""
    readcache.bump()


def clusters_for_event(event) -> list[int]:
    """The enabled clusters a domain event concerns (none, for most events: no query then)."""
    index = slurm_index()
    if not index["by_code"]:
        return []
    data = event.data or {}
    booking = data.get("booking")
    if isinstance(booking, dict):
        resource = booking.get("resource") or {}
        if resource.get("kind") == "pool" and resource.get("code") in index["by_code"]:
            return [index["by_code"][resource["code"]]]
        return []
    target = (data.get("maintenance") or {}).get("target") or {}
    if target.get("kind") == "pool":
        cluster = index["by_pool"].get(str(target.get("id")))
        return [cluster] if cluster else []
    if target.get("kind") == "node" and isinstance(target.get("id"), int):
        pool_id = Node.objects.filter(pk=target["id"]).values_list("pool_id", flat=True).first()
        cluster = index["by_pool"].get(str(pool_id))
        return [cluster] if cluster else []
    return []


def clusters_mark_pending(cluster_ids: list[int]) -> None:
    """One more change waits for Slurm (shown to operators until a sync succeeds)."""
    SlurmCluster.objects.filter(pk__in=cluster_ids).update(pending_changes=F("pending_changes") + 1)


# --- desired state -------------------------------------------------------------------------------


def reservation_name(
    cluster: SlurmCluster, *, booking_id: int | None = None, window_id: int | None = None
) -> str:
    if booking_id is not None:
        return f"{cluster.reservation_prefix}{booking_id}"
    return f"{cluster.reservation_prefix}maint-{window_id}"


def _slurm_names(nodes: list[Node]) -> dict[int, str]:
    mapped = dict(
        SlurmNode.objects.filter(node__in=[n.pk for n in nodes]).values_list(
            "node_id", "slurm_name"
        )
    )
    return {n.pk: mapped.get(n.pk, n.hostname) for n in nodes}


def _who(organization_ids: set[int]) -> dict[int, tuple[frozenset[str], frozenset[str]]]:
    """Organisation → (accounts, users); without a mapping, the account is the slug."""
    mapped = {
        a.organization_id: a for a in SlurmAccount.objects.filter(organization__in=organization_ids)
    }
    slugs = dict(Organization.objects.filter(pk__in=organization_ids).values_list("pk", "slug"))
    result: dict[int, tuple[frozenset[str], frozenset[str]]] = {}
    for org_id in organization_ids:
        account = mapped.get(org_id)
        if account is None:
            result[org_id] = (frozenset({slugs[org_id]}), frozenset())
        else:
            accounts = frozenset({account.account}) if account.account else frozenset()
            result[org_id] = (accounts, frozenset(split_names(account.users)))
    return result


def desired_reservations(cluster: SlurmCluster, *, now: dt.datetime) -> list[Reservation]:
    """What Slurm should hold for the cluster's pool from `now` on (see the module docstring)."""
    nodes = list(Node.objects.filter(pool=cluster.pool_id).order_by("pk"))
    slurm_name = _slurm_names(nodes)
    capacity = Counter(
        Device.objects.filter(node__pool=cluster.pool_id, status=DeviceStatus.ACTIVE).values_list(
            "node_id", flat=True
        )
    )
    rows = (
        Allocation.objects.filter(
            booking__pool=cluster.pool_id,
            booking__status__in=RESERVED_STATUSES,
            active=True,
            device__isnull=False,
            end__gt=now,
        )
        .values_list("booking_id", "booking__organization_id", "device__node_id", "start", "end")
        .order_by("booking_id")
    )
    per_booking: dict[int, dict] = {}
    for booking_id, org_id, node_id, start, end in rows:
        entry = per_booking.setdefault(
            booking_id, {"org": org_id, "nodes": Counter(), "start": start, "end": end}
        )
        entry["nodes"][node_id] += 1
        entry["start"] = min(entry["start"], start)
        entry["end"] = max(entry["end"], end)
    who = _who({e["org"] for e in per_booking.values()})
    desired = []
    for booking_id, entry in per_booking.items():
        accounts, users = who[entry["org"]]
        shared = any(count < capacity.get(node, 0) for node, count in entry["nodes"].items())
        desired.append(
            Reservation(
                name=reservation_name(cluster, booking_id=booking_id),
                nodes=frozenset(slurm_name[n] for n in entry["nodes"]),
                start=entry["start"],
                end=entry["end"],
                accounts=accounts,
                users=users,
                flags=frozenset({"OVERLAP"}) if shared else frozenset(),
                partition=cluster.partition,
            )
        )
    windows = MaintenanceWindow.objects.filter(
        Q(pool_id=cluster.pool_id) | Q(node__pool_id=cluster.pool_id), end__gt=now
    )
    for window in windows.order_by("pk"):
        names = [slurm_name[window.node_id]] if window.node_id else list(slurm_name.values())
        if not names:
            continue
        desired.append(
            Reservation(
                name=reservation_name(cluster, window_id=window.pk),
                nodes=frozenset(names),
                start=window.start,
                end=window.end,
                users=frozenset(split_names(cluster.maintenance_users)),
                flags=frozenset({"MAINT", "IGNORE_JOBS"}),
                partition=cluster.partition,
            )
        )
    return desired


# --- the reconciler ------------------------------------------------------------------------------


@dataclass
class SyncResult:
    """What one reconcile did: applied actions, refused ones (name → Slurm's message), conflicts."""

    applied: list[Action] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    conflicts: list[dict] = field(default_factory=list)
    skipped: str = ""  # why nothing was done (disabled, another reconcile running)

    def summary(self) -> str:
        if self.skipped:
            return self.skipped
        kinds = Counter(a.kind for a in self.applied)
        done = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "in step"
        return done + (f"; {len(self.refused)} refused" if self.refused else "")


def scontrol_for(cluster: SlurmCluster) -> Scontrol:
    return Scontrol(
        binary=cluster.scontrol_path, slurm_conf=cluster.slurm_conf, timeout=cluster.timeout_seconds
    )


def _why(action: Action, cluster: SlurmCluster) -> str:
    """An audit reason a person understands: why the reservation is created, changed or removed."""
    if action.kind == "create":
        return "missing"
    if action.kind in {"update", "recreate"}:
        return "changed"
    suffix = action.name[len(cluster.reservation_prefix) :]
    if suffix.isdigit():
        status = Booking.objects.filter(pk=int(suffix), pool=cluster.pool_id).values_list(
            "status", flat=True
        )
        found = status.first()
        return f"booking {found}" if found else "unknown (no such booking: made by hand?)"
    if suffix.startswith("maint-") and suffix[6:].isdigit():
        return "maintenance window ended or removed"
    return "unknown (made by hand?)"


def _apply(client: Scontrol, action: Action) -> None:
    if action.kind == "create":
        client.create(action.desired)  # type: ignore[arg-type]
    elif action.kind == "update":
        started = "start" not in action.changes and (
            action.actual is not None
            and (action.actual.state == "ACTIVE" or action.actual.start <= timezone.now())
        )
        client.update(action.desired, started=started)  # type: ignore[arg-type]
    elif action.kind == "recreate":
        client.delete(action.name)
        client.create(action.desired)  # type: ignore[arg-type]
    elif action.kind == "delete":
        client.delete(action.name)


def _describe(reservation: Reservation | None) -> dict:
    if reservation is None:
        return {}
    return {
        "nodes": ",".join(sorted(reservation.nodes)),
        "start": reservation.start.isoformat(),
        "end": reservation.end.isoformat(),
        "accounts": ",".join(sorted(reservation.accounts)),
        "users": ",".join(sorted(reservation.users)),
        "flags": ",".join(sorted(reservation.flags)),
    }


def cluster_reconcile(*, cluster_id: int, now: dt.datetime | None = None) -> SyncResult:
    """Make the cluster hold exactly the desired reservations; record each repair and the status.

    Raises SlurmUnavailable when the controller cannot be reached (the task retries); the status
    then shows the error and the pending count stays. One reconcile per cluster at a time: a
    request that arrives while one runs makes it go round once more instead of waiting."""
    lock_key, again_key = f"slurm:reconcile:{cluster_id}", f"slurm:reconcile-again:{cluster_id}"
    token = secrets.token_hex(8)
    if not cache.add(lock_key, token, LOCK_TTL_SECONDS):
        cache.set(again_key, 1, LOCK_TTL_SECONDS)
        return SyncResult(
            skipped="another reconcile of this cluster is running: it goes round again"
        )
    try:
        for _round in range(5):
            cache.delete(again_key)
            result = _reconcile_once(cluster_id=cluster_id, now=now)
            if not cache.get(again_key):
                return result
        return result
    finally:
        if cache.get(lock_key) == token:
            cache.delete(lock_key)


def _reconcile_once(*, cluster_id: int, now: dt.datetime | None) -> SyncResult:
    cluster = SlurmCluster.objects.select_related("pool").filter(pk=cluster_id).first()
    if cluster is None or not cluster.enabled:
        return SyncResult(skipped="cluster removed or disabled")
    now = now or timezone.now()
    started_at = timezone.now()
    SlurmCluster.objects.filter(pk=cluster.pk).update(last_attempt_at=started_at)
    client = scontrol_for(cluster)
    try:
        actual = client.reservations()
        the_plan: Plan = plan(
            desired=desired_reservations(cluster, now=now),
            actual=actual,
            prefix=cluster.reservation_prefix,
            now=now,
        )
        result = SyncResult(conflicts=the_plan.conflicts)
        for action in the_plan.actions:
            try:
                _apply(client, action)
            except SlurmRefused as exc:
                result.refused[action.name] = str(exc)
                logger.warning(
                    "slurm %s: %s %s refused: %s", cluster.pool.code, action.kind, action.name, exc
                )
            else:
                result.applied.append(action)
    except SlurmUnavailable as exc:
        SlurmCluster.objects.filter(pk=cluster.pk).update(
            last_error=f"Slurm unreachable: {exc}"[:2000],
            last_error_at=timezone.now(),
            pending_changes=F("pending_changes") + (0 if cluster.pending_changes else 1),
        )
        raise
    _record(cluster, result)
    return result


def _record(cluster: SlurmCluster, result: SyncResult) -> None:
    """Audit each repair and new conflict; then the status (in one transaction)."""
    entries: list[AuditEntry] = []
    for action in result.applied:
        entries.append(
            audit_entry(
                actor=None,
                channel=Channel.SYSTEM,
                action=f"slurm.reservation_{action.kind}",
                obj=cluster,
                from_state=action.actual.state if action.actual else "",
                to_state="" if action.kind == "delete" else "reserved",
                data={
                    "reservation": action.name,
                    "reason": _why(action, cluster),
                    "changes": action.changes,
                    "was": _describe(action.actual),
                    "now": _describe(action.desired),
                },
            )
        )
    known = {c["reservation"] + "|" + ",".join(c["overlaps"]) for c in cluster.conflicts or []}
    for conflict in result.conflicts:
        if conflict["reservation"] + "|" + ",".join(conflict["overlaps"]) not in known:
            entries.append(
                audit_entry(
                    actor=None,
                    channel=Channel.SYSTEM,
                    action="slurm.foreign_reservation",
                    obj=cluster,
                    data=conflict,
                )
            )
    errors = "; ".join(f"{name}: {message}" for name, message in sorted(result.refused.items()))
    with transaction.atomic():
        AuditEntry.objects.bulk_create(entries)
        fields: dict = {
            "pending_changes": len(result.refused),
            "conflicts": result.conflicts,
            "last_error": errors[:2000],
        }
        if errors:
            fields["last_error_at"] = timezone.now()
        else:
            fields["last_success_at"] = timezone.now()
        SlurmCluster.objects.filter(pk=cluster.pk).update(**fields)


def cluster_status(cluster: SlurmCluster) -> dict:
    """What operators see: in step or pending, since when, and why."""
    return {
        "pool": cluster.pool.code,
        "enabled": cluster.enabled,
        "in_step": cluster.in_step,
        "pending_changes": cluster.pending_changes,
        "last_success_at": cluster.last_success_at,
        "last_attempt_at": cluster.last_attempt_at,
        "last_error": cluster.last_error,
        "last_error_at": cluster.last_error_at,
        "conflicts": cluster.conflicts,
    }


def clusters_enabled() -> list[int]:
    return list(
        SlurmCluster.objects.filter(enabled=True).order_by("pk").values_list("pk", flat=True)
    )
