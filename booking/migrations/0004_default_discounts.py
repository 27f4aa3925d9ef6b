"""The discounts the national AI data centre publishes, held as data operators can edit."""

from decimal import Decimal

from django.db import migrations

RULES = [
    {"name": "광주 소재 기업 (Gwangju-based)", "region": "gwangju", "youth_startup": False, "percent": Decimal("50")},
    {"name": "청년 창업 (youth start-up)", "region": "", "youth_startup": True, "percent": Decimal("50")},
]


def add_rules(apps, schema_editor):
    DiscountRule = apps.get_model("booking", "DiscountRule")
    for rule in RULES:
        DiscountRule.objects.get_or_create(name=rule["name"], defaults=rule)


def remove_rules(apps, schema_editor):
    DiscountRule = apps.get_model("booking", "DiscountRule")
    DiscountRule.objects.filter(name__in=[r["name"] for r in RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("booking", "0003_booking_idle_flagged_at_booking_reclaimed_at_and_more")]
    operations = [migrations.RunPython(add_rules, remove_rules)]
