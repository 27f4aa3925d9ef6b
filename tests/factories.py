"""factory_boy factories for the inventory and bookings."""

from __future__ import annotations

import datetime as dt

import factory
from django.contrib.auth import get_user_model

from booking.models import Membership, Organization
from equipment.models import AcceleratorPool, Center, Device, EquipmentType, EquipmentUnit, Node


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.kr")
    password = factory.django.Password("pw-Testbed-2026!")


class CenterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Center
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"center-{n}")
    name = factory.Sequence(lambda n: f"센터 {n}")
    name_en = factory.Sequence(lambda n: f"Centre {n}")
    field = "healthcare"


class EquipmentTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EquipmentType

    code = factory.Sequence(lambda n: f"EQ-{n:03d}")
    name = factory.Sequence(lambda n: f"장비 {n}")
    name_en = factory.Sequence(lambda n: f"Equipment {n}")
    center = factory.SubFactory(CenterFactory)
    field = "healthcare"
    phase = 1
    slot_minutes = 30
    min_minutes = 30
    max_minutes = 240
    max_lead_days = 60
    hourly_rate = 10000


class EquipmentUnitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EquipmentUnit

    equipment_type = factory.SubFactory(EquipmentTypeFactory)
    code = factory.Sequence(lambda n: f"UNIT-{n:04d}")


class PoolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AcceleratorPool

    code = factory.Sequence(lambda n: f"POOL-{n:02d}")
    name = factory.Sequence(lambda n: f"GPU 풀 {n}")
    name_en = factory.Sequence(lambda n: f"GPU pool {n}")
    center = factory.SubFactory(CenterFactory, field="compute")
    vendor = "NVIDIA"
    accelerator = "H100 SXM5 80GB"
    kind = "gpu"
    memory_gb = 80
    slot_minutes = 60
    min_minutes = 60
    max_minutes = 24 * 60 * 7
    max_lead_days = 90
    hourly_rate = 139


def make_pool(*, nodes: int = 2, per_node: int = 8, **kwargs) -> AcceleratorPool:
    pool = PoolFactory(**kwargs)
    for n in range(nodes):
        node = Node.objects.create(pool=pool, hostname=f"{pool.code.lower()}-n{n:02d}")
        Device.objects.bulk_create([Device(node=node, index=i) for i in range(per_node)])
    return pool


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    slug = factory.Sequence(lambda n: f"org-{n}")
    name = factory.Sequence(lambda n: f"주식회사 테스트 {n}")
    category = "sme"
    region = "gwangju"


def add_member(org: Organization, user, role: str = "member") -> Membership:
    return Membership.objects.create(organization=org, user=user, role=role)


def aware(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> dt.datetime:
    """A facility-local (Asia/Seoul) aware datetime."""
    import zoneinfo

    return dt.datetime(y, m, d, hh, mm, tzinfo=zoneinfo.ZoneInfo("Asia/Seoul"))
