"""Reading and checking the catalogue's YAML files, before anything is written.

`catalogue_read(data_dir=...)` parses centers.yaml, equipment_types/*.yaml (or one
equipment_types.yaml) and pools.yaml into plain specs, and raises `SeedError` listing every
problem found, each naming the file, the entry and the field. Field values are checked with
the models' own field validators and `BookingPolicy.clean()`, so the files cannot hold what
the admin would refuse. Nothing here writes to the database.
"""

from __future__ import annotations

import re
import uuid
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equipment.choices import Field
from equipment.models import AcceleratorPool, Center, EquipmentType, EquipmentUnit
from seeds.checks import (
    Defaults,
    Entry,
    SeedError,
    check_keys,
    check_model,
    check_policy_sense,
    check_source,
    coerce,
    read_yaml,
)

__all__ = ["Catalogue", "SeedError", "catalogue_read", "device_uuid"]

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"

# Device UUIDs are uuid5(DEVICE_UUID_NAMESPACE, "<hostname>/<index>"): stable across runs.
DEVICE_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "devices.seeds.testbed")

# The keys each kind of entry may have; anything else is refused as a likely typo.
POLICY_KEYS = tuple(
    "slot_minutes min_minutes max_minutes min_lead_minutes max_lead_days buffer_minutes "
    "opens_at closes_at open_weekdays requires_approval requires_qualification hourly_rate "
    "no_show_grace_minutes cancel_free_minutes".split()
)
CENTER_KEYS = {"code", "name", "name_en", "field", "operator", "address", "timezone", "source"}
TYPE_KEYS = {
    *"code name name_en center phase category description specs operating_mode placeholder "
    "source units units_count".split(),
    *POLICY_KEYS,
}
TYPE_DEFAULT_KEYS = {"center", "phase", "category", "operating_mode", "units_count", *POLICY_KEYS}
UNIT_KEYS = {"code", "serial", "location"}
POOL_KEYS = {
    *"code center name name_en vendor accelerator kind partition_kind memory_gb description "
    "placeholder source idle_threshold_pct idle_minutes idle_grace_minutes cards "
    "hostname_prefix nodes domestic contested_lead_days".split(),
    *POLICY_KEYS,
}
# What pools.yaml's `defaults:` may set: everything but a pool's identity and size.
POOL_DEFAULT_KEYS = POOL_KEYS - {
    *"code name name_en cards hostname_prefix nodes placeholder source".split()
}
NODE_GROUP_KEYS = {"count", "devices_per_node"}

EQUIPMENT_FIELDS = {Field.HEALTHCARE.value, Field.AUTOMOTIVE.value, Field.ENERGY.value}
HOSTNAME_PREFIX_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,100}[a-z0-9])?$")
MAX_DEVICES_PER_NODE = 64
MAX_UNITS_COUNT = 999


@dataclass
class CenterSpec:
    code: str
    values: dict[str, Any]
    where: str


@dataclass
class UnitSpec:
    code: str
    values: dict[str, Any]
    where: str


@dataclass
class TypeSpec:
    code: str
    center: str
    values: dict[str, Any]
    units: list[UnitSpec]
    where: str


@dataclass
class NodeSpec:
    hostname: str
    devices: int


@dataclass
class PoolSpec:
    code: str
    center: str
    values: dict[str, Any]
    nodes: list[NodeSpec]
    where: str

    @property
    def device_count(self) -> int:
        return sum(n.devices for n in self.nodes)


@dataclass
class Catalogue:
    centers: list[CenterSpec] = field(default_factory=list)
    types: list[TypeSpec] = field(default_factory=list)
    pools: list[PoolSpec] = field(default_factory=list)

    @property
    def units(self) -> list[UnitSpec]:
        return [u for t in self.types for u in t.units]

    @property
    def nodes(self) -> list[NodeSpec]:
        return [n for p in self.pools for n in p.nodes]


def device_uuid(hostname: str, index: int) -> uuid.UUID:
    return uuid.uuid5(DEVICE_UUID_NAMESPACE, f"{hostname}/{index}")


def node_hostname(prefix: str, number: int) -> str:
    return f"{prefix}-n{number:03d}"


def _describe(values: dict[str, Any]) -> str:
    """The stored description: the text given, then the source note."""
    parts = [
        values.get("description") or "",
        f"Source: {values['source']}" if values.get("source") else "",
    ]
    return "\n\n".join(p.strip() for p in parts if p)


# --- files ---------------------------------------------------------------------------------


def _read_centers(path: Path, problems: list[str]) -> list[CenterSpec]:
    data = read_yaml(path, problems)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("centers"), list):
        problems.append(f"{path}: expected a top-level list 'centers:'")
        return []
    specs = []
    for i, raw in enumerate(data["centers"]):
        code = raw.get("code") if isinstance(raw, dict) else None
        entry = Entry(f"{path}: centers[{i}] ({code or '?'})", problems)
        if not isinstance(raw, dict):
            entry.problem(None, "each centre must be a mapping")
            continue
        check_keys(entry, raw, CENTER_KEYS, required=("code", "name", "name_en", "field"))
        values = coerce(entry, {k: v for k, v in raw.items() if k in CENTER_KEYS})
        values.pop("source", None)
        values.setdefault("operator", "")
        values.setdefault("address", "")
        values.setdefault("timezone", "Asia/Seoul")
        if not entry.ok:
            continue
        try:
            zoneinfo.ZoneInfo(values["timezone"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            entry.problem("timezone", f"unknown time zone {values['timezone']!r}")
        check_model(entry, Center(**values), exclude=["id"])
        if entry.ok:
            code = values.pop("code")
            specs.append(CenterSpec(code=code, values=values, where=entry.where))
    return specs


def _type_files(data_dir: Path) -> list[Path]:
    files = (
        sorted((data_dir / "equipment_types").glob("*.yaml"))
        if (data_dir / "equipment_types").is_dir()
        else []
    )
    single = data_dir / "equipment_types.yaml"
    return ([single] if single.is_file() else []) + files


def _read_type_file(path: Path, problems: list[str]) -> list[TypeSpec]:
    data = read_yaml(path, problems)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("types"), list):
        problems.append(f"{path}: expected a top-level list 'types:'")
        return []
    head = Entry(str(path), problems)
    check_keys(head, data, {"field", "center", "defaults", "types", "anchors"}, required=("field",))
    file_field = data.get("field")
    if file_field is not None and file_field not in EQUIPMENT_FIELDS:
        head.problem(
            "field", f"must be one of {', '.join(sorted(EQUIPMENT_FIELDS))}, not {file_field!r}"
        )
    defaults_raw = data.get("defaults") or {}
    defaults_entry = Defaults(f"{path}: defaults", problems)
    if not isinstance(defaults_raw, dict):
        defaults_entry.problem(None, "must be a mapping")
        defaults_raw = {}
    check_keys(defaults_entry, defaults_raw, TYPE_DEFAULT_KEYS)
    defaults = coerce(
        defaults_entry, {k: v for k, v in defaults_raw.items() if k in TYPE_DEFAULT_KEYS}
    )
    if data.get("center") is not None:
        defaults.setdefault("center", data["center"])
    if not head.ok or not defaults_entry.ok:
        return []

    specs = []
    for i, raw in enumerate(data["types"]):
        code = raw.get("code") if isinstance(raw, dict) else None
        entry = Entry(f"{path}: types[{i}] ({code or '?'})", problems)
        if not isinstance(raw, dict):
            entry.problem(None, "each equipment type must be a mapping")
            continue
        check_keys(entry, raw, TYPE_KEYS, required=("code", "name", "name_en"))
        own = coerce(entry, {k: v for k, v in raw.items() if k in TYPE_KEYS})
        if "units" in own and "units_count" in own:
            entry.problem("units", "give either units or units_count, not both")
        values = {**defaults, **own}
        entry.inherits(defaults_entry, set(defaults) - set(own), name=str(code))
        if "units" in own:
            values.pop("units_count", None)
        for key in POLICY_KEYS:
            if key not in values:
                entry.problem(key, "missing: give it in the entry or in the file's defaults")
        if not values.get("center"):
            entry.problem("center", "missing: give it in the entry or at the top of the file")
        check_source(entry, values)
        if not entry.ok:
            continue
        units = _units_for(entry, str(values["code"]), values)
        model_values = {
            k: v for k, v in values.items() if k not in {"center", "units", "units_count", "source"}
        }
        model_values["field"] = file_field
        model_values["description"] = _describe(values)
        model_values.setdefault("specs", {})
        model_values.setdefault("category", "")
        check_model(entry, EquipmentType(**model_values), exclude=["id", "center"])
        check_policy_sense(entry, model_values)
        if entry.ok:
            code = model_values.pop("code")
            specs.append(
                TypeSpec(
                    code=code,
                    center=values["center"],
                    values=model_values,
                    units=units,
                    where=entry.where,
                )
            )
    defaults_entry.report_inherited()
    return specs


def _units_for(entry: Entry, type_code: str, values: dict[str, Any]) -> list[UnitSpec]:
    if "units" in values:
        units = []
        for j, raw in enumerate(values["units"]):
            unit_entry = entry.child(f"units[{j}]")
            if not isinstance(raw, dict):
                unit_entry.problem(None, "each unit must be a mapping with at least a code")
                continue
            check_keys(unit_entry, raw, UNIT_KEYS, required=("code",))
            unit_values = coerce(unit_entry, raw)
            if unit_entry.ok:
                code = unit_values.pop("code")
                check_model(
                    unit_entry,
                    EquipmentUnit(code=code, **unit_values),
                    exclude=["id", "equipment_type"],
                )
            if not unit_entry.ok:
                continue
            units.append(UnitSpec(code=code, values=unit_values, where=unit_entry.where))
        return units
    count = values.get("units_count")
    if count is None:
        entry.problem("units", "missing: list units, or give units_count (here or in defaults)")
        return []
    if not 1 <= count <= MAX_UNITS_COUNT:
        entry.problem("units_count", f"must be between 1 and {MAX_UNITS_COUNT}, not {count}")
        return []
    return [
        UnitSpec(code=f"{type_code}-{n:02d}", values={}, where=entry.where)
        for n in range(1, count + 1)
    ]


def _read_pools(path: Path, problems: list[str]) -> list[PoolSpec]:
    data = read_yaml(path, problems)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("pools"), list):
        problems.append(f"{path}: expected a top-level list 'pools:'")
        return []
    head = Entry(str(path), problems)
    check_keys(head, data, {"defaults", "pools", "anchors"})
    defaults_entry = Defaults(f"{path}: defaults", problems)
    defaults_raw = data.get("defaults") or {}
    if not isinstance(defaults_raw, dict):
        defaults_entry.problem(None, "must be a mapping")
        defaults_raw = {}
    check_keys(defaults_entry, defaults_raw, POOL_DEFAULT_KEYS)
    defaults = coerce(
        defaults_entry, {k: v for k, v in defaults_raw.items() if k in POOL_DEFAULT_KEYS}
    )
    if not head.ok or not defaults_entry.ok:
        return []

    specs = []
    for i, raw in enumerate(data["pools"]):
        code = raw.get("code") if isinstance(raw, dict) else None
        entry = Entry(f"{path}: pools[{i}] ({code or '?'})", problems)
        if not isinstance(raw, dict):
            entry.problem(None, "each pool must be a mapping")
            continue
        check_keys(
            entry,
            raw,
            POOL_KEYS,
            required=(
                "code",
                "center",
                "name",
                "name_en",
                "vendor",
                "accelerator",
                "kind",
                "cards",
                "hostname_prefix",
                "nodes",
            ),
        )
        own = coerce(entry, {k: v for k, v in raw.items() if k in POOL_KEYS})
        values = {**defaults, **own}
        entry.inherits(defaults_entry, set(defaults) - set(own), name=str(code))
        for key in POLICY_KEYS:
            if key not in values:
                entry.problem(key, "missing: give it in the entry or in the file's defaults")
        check_source(entry, values)
        if not entry.ok:
            continue
        nodes = _nodes_for(entry, values)
        model_values = {
            k: v
            for k, v in values.items()
            if k not in {"center", "cards", "hostname_prefix", "nodes", "source"}
        }
        model_values["description"] = _describe(values)
        check_model(entry, AcceleratorPool(**model_values), exclude=["id", "center"])
        check_policy_sense(entry, model_values)
        if entry.ok:
            code = model_values.pop("code")
            specs.append(
                PoolSpec(
                    code=code,
                    center=values["center"],
                    values=model_values,
                    nodes=nodes,
                    where=entry.where,
                )
            )
    defaults_entry.report_inherited()
    return specs


def _nodes_for(entry: Entry, values: dict[str, Any]) -> list[NodeSpec]:
    prefix = values["hostname_prefix"]
    if not HOSTNAME_PREFIX_RE.match(prefix):
        entry.problem(
            "hostname_prefix",
            f"{prefix!r} is not a host name: use lower-case letters, digits and dashes",
        )
        return []
    nodes: list[NodeSpec] = []
    for j, raw in enumerate(values["nodes"]):
        group = entry.child(f"nodes[{j}]")
        if not isinstance(raw, dict):
            group.problem(None, "each node group must be a mapping {count: N, devices_per_node: M}")
            continue
        check_keys(group, raw, NODE_GROUP_KEYS, required=NODE_GROUP_KEYS)
        g = coerce(group, raw)
        if group.ok and g["count"] < 1:
            group.problem("count", f"must be at least 1, not {g['count']}")
        if group.ok and not 1 <= g["devices_per_node"] <= MAX_DEVICES_PER_NODE:
            group.problem(
                "devices_per_node",
                f"must be between 1 and {MAX_DEVICES_PER_NODE}, not {g['devices_per_node']}",
            )
        if not group.ok:
            continue
        for _ in range(g["count"]):
            nodes.append(
                NodeSpec(
                    hostname=node_hostname(prefix, len(nodes) + 1), devices=g["devices_per_node"]
                )
            )
    total = sum(n.devices for n in nodes)
    if entry.ok and total != values["cards"]:
        entry.problem("cards", f"says {values['cards']} but the node groups hold {total} devices")
    return nodes


def _check_across(catalogue: Catalogue, problems: list[str]) -> None:
    """Uniqueness and references across files: codes, centres, host names."""
    centers: dict[str, CenterSpec] = {}
    for c in catalogue.centers:
        if c.code in centers:
            problems.append(
                f"{c.where}: code: duplicate centre code {c.code!r} (also {centers[c.code].where})"
            )
        centers.setdefault(c.code, c)

    # Codes compare without case, as ResourceCodeMixin does: `resource=` must never be ambiguous.
    resources: dict[str, tuple[str, str]] = {}
    for kind, items in (("equipment type", catalogue.types), ("pool", catalogue.pools)):
        for item in items:
            key = item.code.lower()
            if key not in resources:
                resources[key] = (kind, item.where)
                continue
            other_kind, other_where = resources[key]
            if other_kind == kind:
                problems.append(f"{item.where}: code: duplicate {kind} code (also {other_where})")
            else:
                problems.append(
                    f"{item.where}: code: {item.code!r} is already used by the {other_kind} at "
                    f"{other_where}: equipment type and pool codes share one namespace, "
                    "choose another code"
                )

    for t in catalogue.types:
        center = centers.get(t.center)
        if center is None:
            problems.append(
                f"{t.where}: center: unknown centre code {t.center!r} (not in centers.yaml)"
            )
        elif center.values["field"] != t.values["field"]:
            problems.append(
                f"{t.where}: center: {t.center!r} is a {center.values['field']} centre, "
                f"but this file's field is {t.values['field']}"
            )
    for p in catalogue.pools:
        if p.center not in centers:
            problems.append(
                f"{p.where}: center: unknown centre code {p.center!r} (not in centers.yaml)"
            )

    units: dict[str, str] = {}
    for t in catalogue.types:
        for u in t.units:
            if u.code in units:
                problems.append(
                    f"{u.where}: code: duplicate unit code {u.code!r} (also {units[u.code]})"
                )
            units.setdefault(u.code, u.where)

    hosts: dict[str, str] = {}
    for p in catalogue.pools:
        for n in p.nodes:
            if n.hostname in hosts:
                problems.append(
                    f"{p.where}: hostname_prefix: host name {n.hostname!r} is also made by {hosts[n.hostname]}"
                )
                break
            hosts[n.hostname] = p.where


def catalogue_read(*, data_dir: Path | str | None = None) -> Catalogue:
    """Parse and check every catalogue file under data_dir; raise SeedError on any problem."""
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    problems: list[str] = []
    if not root.is_dir():
        raise SeedError([f"{root}: the data directory does not exist"])
    catalogue = Catalogue()
    catalogue.centers = _read_centers(root / "centers.yaml", problems)
    type_files = _type_files(root)
    if not type_files:
        problems.append(
            f"{root}: no equipment types: expected equipment_types/*.yaml or equipment_types.yaml"
        )
    for path in type_files:
        catalogue.types.extend(_read_type_file(path, problems))
    catalogue.pools = _read_pools(root / "pools.yaml", problems)
    if not problems:
        _check_across(catalogue, problems)
    if problems:
        raise SeedError(problems)
    return catalogue
