"""Demonstration organisations, accounts, qualifications and quota grants (DEBUG only).

The accounts have a known password, so `load_demo()` refuses to run when DEBUG is off.
Idempotent like the catalogue: organisations match on slug, users on username, memberships
on (organisation, user), qualifications on (user, type), grants on (organisation, scope,
period). An existing account keeps its password; a qualification keeps its expiry.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, TextIO

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from booking.choices import Enforcement, OrgCategory, Region, Role
from booking.models import Membership, Organization, Qualification, QuotaGrant
from equipment.models import AcceleratorPool, Center, EquipmentType
from seeds.schema import SeedError
from testbed.choices import Channel
from testbed.models import AuditEntry

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - a published demo password, refused when DEBUG is off
DEMO_REFUSED = "--demo creates accounts with known passwords; it is refused when DEBUG is off."

OPERATOR = {
    "username": "operator",
    "email": "operator@example.kr",
    "first_name": "운영자",
    "is_staff": True,
    "is_superuser": True,
}

# Business registration numbers are made up but pass booking.validators' check digit.
DEMO_ORGS: list[dict[str, Any]] = [
    {
        "slug": "bitgoeul-ai",
        "name": "(주)빛고을에이아이",
        "business_number": "410-81-12342",
        "category": OrgCategory.SME,
        "region": Region.GWANGJU,
        "youth_startup": False,
        "prefix": "gjsme",
    },
    {
        "slug": "mudeung-lab",
        "name": "무등랩 (청년창업)",
        "business_number": "410-86-12347",
        "category": OrgCategory.STARTUP,
        "region": Region.GWANGJU,
        "youth_startup": True,
        "prefix": "startup",
    },
    {
        "slug": "hangang-univ",
        "name": "한강대학교 AI대학원",
        "business_number": "104-82-56781",
        "category": OrgCategory.UNIVERSITY,
        "region": Region.SEOUL,
        "youth_startup": False,
        "prefix": "univ",
    },
]

# (organisation slug, type code): qualifications for the SME's member, on types that need one.
DEMO_QUALIFICATIONS = [("bitgoeul-ai", "AU-SIM-L"), ("bitgoeul-ai", "HC-EMG")]

# (organisation slug, scope, unit-hours, enforcement) for the current calendar year.
DEMO_GRANTS = [
    ("bitgoeul-ai", "NAIDC-H100", 500, Enforcement.HARD),
    ("bitgoeul-ai", "AU-SIM-L", 40, Enforcement.HARD),
    ("mudeung-lab", "NAIDC-H100", 200, Enforcement.HARD),
    ("mudeung-lab", "NAIDC-RNGD", 300, Enforcement.SOFT),
    ("hangang-univ", "NAIDC-A100", 1000, Enforcement.SOFT),
    ("hangang-univ", "gj-healthcare", 100, Enforcement.HARD),
]


def demo_allowed_check() -> None:
    if not settings.DEBUG:
        raise SeedError([DEMO_REFUSED])


def _counts() -> dict[str, int]:
    return {"created": 0, "updated": 0, "unchanged": 0}


def _upsert(
    model, lookup: dict[str, Any], values: dict[str, Any], counts: dict[str, int], *, create_only=()
):
    """get-or-create on `lookup`, then update the fields of `values` that differ.

    Fields named in `create_only` are set only when the row is created.
    """
    obj = model._default_manager.filter(**lookup).first()
    if obj is None:
        obj = model._default_manager.create(**lookup, **values)
        counts["created"] += 1
        return obj, True
    changed = [k for k, v in values.items() if k not in create_only and getattr(obj, k) != v]
    if changed:
        for k in changed:
            setattr(obj, k, values[k])
        obj.save(update_fields=changed)
        counts["updated"] += 1
    else:
        counts["unchanged"] += 1
    return obj, False


def _user(
    spec: dict[str, Any],
    password: str,
    counts: dict[str, int],
    accounts: list[dict[str, Any]],
    role: str,
):
    User = get_user_model()
    values = {k: v for k, v in spec.items() if k != "username"}
    user = User._default_manager.filter(username=spec["username"]).first()
    if user is None:
        user = User(username=spec["username"], **values)
        user.set_password(password)
        user.save()
        counts["created"] += 1
        created = True
    else:
        changed = [k for k, v in values.items() if getattr(user, k) != v]
        if changed:
            for k in changed:
                setattr(user, k, values[k])
            user.save(update_fields=changed)
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
        created = False
    accounts.append({"username": user.username, "role": role, "created": created})
    return user


def load_demo(*, password: str = DEMO_PASSWORD, stdout: TextIO | None = None) -> dict[str, Any]:
    """Create (or bring up to date) the demo organisations and accounts. Needs the catalogue.

    Raises SeedError when DEBUG is off or the catalogue's resources are missing.
    """
    demo_allowed_check()
    needed_types = {code for _, code in DEMO_QUALIFICATIONS}
    scopes = {scope for _, scope, _, _ in DEMO_GRANTS}
    known = (
        set(
            EquipmentType.objects.filter(code__in=needed_types | scopes).values_list(
                "code", flat=True
            )
        )
        | set(AcceleratorPool.objects.filter(code__in=scopes).values_list("code", flat=True))
        | set(Center.objects.filter(code__in=scopes).values_list("code", flat=True))
    )
    missing = sorted((needed_types | scopes) - known)
    if missing:
        raise SeedError(
            [f"demo data needs {', '.join(missing)}: load the catalogue first (load_seeds)"]
        )

    counts = {
        k: _counts()
        for k in ("organizations", "users", "memberships", "qualifications", "quota_grants")
    }
    accounts: list[dict[str, Any]] = []
    today = timezone.localdate()
    year_start, year_end = dt.date(today.year, 1, 1), dt.date(today.year, 12, 31)

    with transaction.atomic():
        operator = _user(
            OPERATOR, password, counts["users"], accounts, "operator (staff, superuser)"
        )
        orgs: dict[str, Organization] = {}
        members = {}
        for spec in DEMO_ORGS:
            org_values = {k: v for k, v in spec.items() if k not in {"slug", "prefix"}}
            org, _ = _upsert(
                Organization, {"slug": spec["slug"]}, org_values, counts["organizations"]
            )
            orgs[spec["slug"]] = org
            for role in (Role.MANAGER, Role.MEMBER):
                username = f"{spec['prefix']}-{role}"
                user = _user(
                    {
                        "username": username,
                        "email": f"{username}@example.kr",
                        "is_staff": False,
                        "is_superuser": False,
                    },
                    password,
                    counts["users"],
                    accounts,
                    f"{role} of {org.name}",
                )
                _upsert(
                    Membership,
                    {"organization": org, "user": user},
                    {"role": role},
                    counts["memberships"],
                )
                if role == Role.MEMBER:
                    members[spec["slug"]] = user

        for slug, code in DEMO_QUALIFICATIONS:
            _upsert(
                Qualification,
                {"user": members[slug], "equipment_type": EquipmentType.objects.get(code=code)},
                {
                    "valid_until": dt.date(today.year + 1, 12, 31),
                    "granted_by": operator,
                    "notes": "demo: safety training completed",
                },
                counts["qualifications"],
                create_only=("valid_until",),
            )

        for slug, scope, hours, enforcement in DEMO_GRANTS:
            _upsert(
                QuotaGrant,
                {
                    "organization": orgs[slug],
                    "scope": scope,
                    "period_start": year_start,
                    "period_end": year_end,
                },
                {"limit_hours": Decimal(hours), "enforcement": enforcement, "notes": "demo grant"},
                counts["quota_grants"],
            )

        totals = {
            k: sum(c[k] for c in counts.values()) for k in ("created", "updated", "unchanged")
        }
        if totals["created"] or totals["updated"]:
            AuditEntry.objects.create(
                actor=None,
                channel=Channel.SYSTEM,
                action="seeds.demo_loaded",
                object_type="seeds.demo",
                object_id="demo",
                data={kind: c for kind, c in counts.items() if c["created"] or c["updated"]},
            )

    result: dict[str, Any] = {**counts, **totals, "accounts": accounts, "password": password}
    if stdout is not None:
        stdout.write(demo_summary(result) + "\n")
    return result


def demo_summary(result: dict[str, Any]) -> str:
    """The counts, then one line per account with its password (the dev server's banner
    shows the lines that say "password")."""
    lines = [
        f"Demo: {len(DEMO_ORGS)} organisations, {len(result['accounts'])} accounts, "
        f"{len(DEMO_QUALIFICATIONS)} qualifications, {len(DEMO_GRANTS)} quota grants: "
        f"{result['created']} created, {result['updated']} updated, {result['unchanged']} unchanged.",
        "Demo accounts:",
    ]
    width = max(len(a["username"]) for a in result["accounts"])
    for a in result["accounts"]:
        # An account that already existed keeps the password it has now.
        note = "" if a["created"] else " (unless changed since)"
        lines.append(
            f"  {a['username']:<{width}}  password {result['password']}{note}  — {a['role']}"
        )
    return "\n".join(lines)
