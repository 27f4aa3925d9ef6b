"""The drills' small catalogue, created in the private database; prints it as one JSON line.

    python -m bench.faults.catalogue --demand-hours H   (run by harness.Stack with its env)

Two equipment types of 2 units, one GPU pool of 3 nodes × 4 devices, two organisations with
members and Bearer tokens, and a quota grant each over 2031: organisation A's is hard, sized to
a quarter of the unit-hours its clients will ask for (so some requests are refused for quota
while others race for it), B's is soft and as small (it goes over; its bookings are flagged).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from decimal import Decimal

EQUIPMENT = {"FAULT-EQ-0": 2, "FAULT-EQ-1": 2}
POOL = "FAULT-GPU"
POOL_NODES = 3
POOL_PER_NODE = 4
USERS_PER_ORG = 4
YEAR = 2031


def create(demand_hours: float) -> dict:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testbed.settings")
    django.setup()
    from django.contrib.auth import get_user_model

    from booking.models import Membership, Organization, QuotaGrant
    from equipment.models import (
        AcceleratorPool,
        Center,
        Device,
        EquipmentType,
        EquipmentUnit,
        Node,
    )
    from testbed.api.auth import token_for

    policy = dict(slot_minutes=60, min_minutes=60, max_minutes=240, max_lead_days=3650)
    lab = Center.objects.create(
        code="faults-lab", name="장애 훈련 센터", name_en="Fault drill lab", field="healthcare"
    )
    for code, units in EQUIPMENT.items():
        kind = EquipmentType.objects.create(
            code=code,
            name=f"훈련 장비 {code[-1]}",
            name_en=f"Drill equipment {code[-1]}",
            center=lab,
            field="healthcare",
            hourly_rate=1000,
            **policy,
        )
        EquipmentUnit.objects.bulk_create(
            [EquipmentUnit(equipment_type=kind, code=f"{code}-{u}") for u in range(units)]
        )
    compute = Center.objects.create(
        code="faults-dc", name="장애 훈련 데이터센터", name_en="Fault drill DC", field="compute"
    )
    pool = AcceleratorPool.objects.create(
        code=POOL,
        name="훈련 GPU 풀",
        name_en="Drill GPU pool",
        center=compute,
        vendor="NVIDIA",
        accelerator="H100 SXM5 80GB",
        kind="gpu",
        memory_gb=80,
        hourly_rate=139,
        **policy,
    )
    for n in range(POOL_NODES):
        node = Node.objects.create(pool=pool, hostname=f"faults-gpu-n{n:02d}")
        Device.objects.bulk_create([Device(node=node, index=i) for i in range(POOL_PER_NODE)])

    User = get_user_model()
    orgs = {}
    for slug, enforcement in (("faults-a", "hard"), ("faults-b", "soft")):
        org = Organization.objects.create(
            slug=slug, name=f"훈련 {slug[-1].upper()} 주식회사", category="sme", region="gwangju"
        )
        grant = QuotaGrant.objects.create(
            organization=org,
            scope="*",
            period_start=dt.date(YEAR, 1, 1),
            period_end=dt.date(YEAR, 12, 31),
            # Each organisation sends about half the demand; a quarter of that is granted.
            limit_hours=Decimal(max(4, round(demand_hours / 2 / 4))),
            enforcement=enforcement,
        )
        tokens = []
        for u in range(USERS_PER_ORG):
            user = User.objects.create_user(f"{slug}-{u}", password="faults-pass-2026")  # noqa: S106
            Membership.objects.create(organization=org, user=user, role="member")
            tokens.append(token_for(user))
        orgs[slug] = {
            "id": org.pk,
            "grant": grant.pk,
            "limit_hours": float(grant.limit_hours),
            "enforcement": enforcement,
            "tokens": tokens,
        }
    return {
        "equipment": EQUIPMENT,
        "pool": POOL,
        "pool_nodes": POOL_NODES,
        "pool_per_node": POOL_PER_NODE,
        "orgs": orgs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demand-hours", type=float, required=True)
    args = parser.parse_args()
    print(json.dumps(create(args.demand_hours)))


if __name__ == "__main__":
    main()
