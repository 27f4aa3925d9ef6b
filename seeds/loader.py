"""Make the catalogue files real: centres, equipment types and units, pools, nodes, devices.

`load_catalogue()` reads and checks every file first (seeds.schema), then writes in one
transaction. It is idempotent: rows are matched on their natural keys (code; host name;
(node, index)), created when missing and updated only where a field in the files differs,
so a second run reports nothing created or updated. Rows the files do not mention are left
alone (never deleted: bookings may point at them), as are fields the files do not manage
(a unit's or node's status, a device's UUID once it exists, agent keys).

`load_demo()` (seeds.demo) adds demonstration organisations and accounts on top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from django.db import models, transaction

from equipment.models import AcceleratorPool, Center, Device, EquipmentType, EquipmentUnit, Node
from seeds.demo import DEMO_PASSWORD, DEMO_REFUSED, demo_allowed_check, demo_summary, load_demo
from seeds.schema import Catalogue, SeedError, catalogue_read, device_uuid
from testbed.choices import Channel
from testbed.models import AuditEntry

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_REFUSED",
    "SeedError",
    "catalogue_summary",
    "demo_allowed_check",
    "demo_summary",
    "load_catalogue",
    "load_demo",
]

KINDS = ("centers", "equipment_types", "units", "pools", "nodes", "devices")


def _counts() -> dict[str, int]:
    return {"created": 0, "updated": 0, "unchanged": 0}


def _sync(
    model: type[models.Model],
    key_field: str,
    wanted: dict[str, dict[str, Any]],
    counts: dict[str, int],
) -> dict[str, Any]:
    """Create missing rows and update differing fields; return {key: pk} for all wanted keys.

    `wanted` maps each key to the field values the files manage (attribute names, so
    foreign keys as `<name>_id`). Updates are row by row (they are few); creates are bulk.
    """
    existing = model._default_manager.in_bulk(list(wanted), field_name=key_field)
    to_create = []
    for key, values in wanted.items():
        obj = existing.get(key)
        if obj is None:
            to_create.append(model(**{key_field: key}, **values))
            continue
        changed = [name for name, value in values.items() if getattr(obj, name) != value]
        if changed:
            for name in changed:
                setattr(obj, name, values[name])
            obj.save(update_fields=changed)
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    if to_create:
        model._default_manager.bulk_create(to_create, batch_size=1000)
        counts["created"] += len(to_create)
    return dict(
        model._default_manager.filter(**{f"{key_field}__in": list(wanted)}).values_list(
            key_field, "pk"
        )
    )


def _check_against_database(catalogue: Catalogue) -> None:
    """Codes in the files must not be taken by the other kind of resource already stored."""
    problems = []
    type_codes = {t.code.lower(): t for t in catalogue.types}
    pool_codes = {p.code.lower(): p for p in catalogue.pools}
    for code in AcceleratorPool.objects.values_list("code", flat=True):
        t = type_codes.get(code.lower())
        if t is not None and code.lower() not in pool_codes:
            problems.append(
                f"{t.where}: code: {t.code!r} is already the code of pool {code!r} in the database"
            )
    for code in EquipmentType.objects.values_list("code", flat=True):
        p = pool_codes.get(code.lower())
        if p is not None and code.lower() not in type_codes:
            problems.append(
                f"{p.where}: code: {p.code!r} is already the code of equipment type {code!r} in the database"
            )
    if problems:
        raise SeedError(problems)


def _write(catalogue: Catalogue) -> dict[str, dict[str, int]]:
    counts = {kind: _counts() for kind in KINDS}

    center_pks = _sync(
        Center, "code", {c.code: c.values for c in catalogue.centers}, counts["centers"]
    )
    type_pks = _sync(
        EquipmentType,
        "code",
        {t.code: {**t.values, "center_id": center_pks[t.center]} for t in catalogue.types},
        counts["equipment_types"],
    )
    _sync(
        EquipmentUnit,
        "code",
        {
            u.code: {**u.values, "equipment_type_id": type_pks[t.code]}
            for t in catalogue.types
            for u in t.units
        },
        counts["units"],
    )
    pool_pks = _sync(
        AcceleratorPool,
        "code",
        {p.code: {**p.values, "center_id": center_pks[p.center]} for p in catalogue.pools},
        counts["pools"],
    )
    node_pks = _sync(
        Node,
        "hostname",
        {n.hostname: {"pool_id": pool_pks[p.code]} for p in catalogue.pools for n in p.nodes},
        counts["nodes"],
    )

    # Devices: thousands of them, so one query for what exists and bulk inserts for the rest.
    # A device's UUID is set when it is created and not managed after (an agent may report
    # the card's real UUID).
    present = set(
        Device.objects.filter(node_id__in=node_pks.values()).values_list("node_id", "index")
    )
    new_devices = []
    for n in catalogue.nodes:
        node_pk = node_pks[n.hostname]
        for index in range(n.devices):
            if (node_pk, index) in present:
                counts["devices"]["unchanged"] += 1
            else:
                new_devices.append(
                    Device(node_id=node_pk, index=index, uuid=device_uuid(n.hostname, index))
                )
    Device.objects.bulk_create(new_devices, batch_size=2000)
    counts["devices"]["created"] += len(new_devices)
    return counts


def _totals(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    return {k: sum(c[k] for c in counts.values()) for k in ("created", "updated", "unchanged")}


def catalogue_summary(result: dict[str, Any]) -> str:
    """One line for people: what the catalogue holds and what this run changed."""
    s = result["catalogue"]
    line = (
        f"Catalogue: {s['centers']} centres, {s['equipment_types']} equipment types "
        f"({s['phase_1']} phase 1), {s['units']} units, {s['pools']} pools, {s['nodes']} nodes, "
        f"{s['devices']} devices: {result['created']} created, {result['updated']} updated, "
        f"{result['unchanged']} unchanged."
    )
    changed = [
        f"{kind.replace('_', ' ')} {c['created']} created / {c['updated']} updated"
        for kind in KINDS
        if (c := result[kind])["created"] or c["updated"]
    ]
    return line + (f"\n  ({'; '.join(changed)})" if changed else "")


def load_catalogue(
    *, data_dir: Path | str | None = None, stdout: TextIO | None = None
) -> dict[str, Any]:
    """Read, check and load the catalogue in one transaction; return what changed.

    Raises SeedError (nothing written) when a file is wrong. The result holds, per kind
    (centers, equipment_types, units, pools, nodes, devices), the counts created / updated /
    unchanged, their totals under `created`, `updated`, `unchanged`, and under `catalogue`
    how many of each the files describe.
    """
    catalogue = catalogue_read(data_dir=data_dir)
    with transaction.atomic():
        _check_against_database(catalogue)
        counts = _write(catalogue)
        totals = _totals(counts)
        if totals["created"] or totals["updated"]:
            AuditEntry.objects.create(
                actor=None,
                channel=Channel.SYSTEM,
                action="seeds.catalogue_loaded",
                object_type="seeds.catalogue",
                object_id="catalogue",
                data={kind: c for kind, c in counts.items() if c["created"] or c["updated"]},
            )
    result: dict[str, Any] = {
        **counts,
        **totals,
        "catalogue": {
            "centers": len(catalogue.centers),
            "equipment_types": len(catalogue.types),
            "phase_1": sum(1 for t in catalogue.types if t.values["phase"] == 1),
            "units": len(catalogue.units),
            "pools": len(catalogue.pools),
            "nodes": len(catalogue.nodes),
            "devices": sum(p.device_count for p in catalogue.pools),
        },
    }
    if stdout is not None:
        stdout.write(catalogue_summary(result) + "\n")
    return result
