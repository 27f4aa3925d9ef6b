"""Catalogue serializers: centres, equipment types, pools and maintenance windows.

Every number, time and text a write may set is bounded here first (FIELD_BOUNDS, the model's
clean() and constraints), so a value the database or later arithmetic would choke on answers
400 naming the field instead of a 500 now or a broken read later.
"""

from __future__ import annotations

import zoneinfo

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from equipment.models import AcceleratorPool, Center, EquipmentType, MaintenanceWindow
from equipment.selectors import devices_per_node, pool_node_shapes
from testbed.api.fields import (
    MAX_BOOKING_MINUTES,
    MAX_LEAD_DAYS,
    MAX_MAINTENANCE,
    MAX_MINOR_MINUTES,
    AwareDateTimeField,
    LocalTimeField,
)

# (least, most) for the catalogue's numbers: policy times in minutes or days, money in won.
FIELD_BOUNDS: dict[str, tuple[int, int]] = {
    "slot_minutes": (1, 24 * 60),
    "min_minutes": (1, MAX_BOOKING_MINUTES),
    "max_minutes": (1, MAX_BOOKING_MINUTES),
    "min_lead_minutes": (0, MAX_MINOR_MINUTES),
    "max_lead_days": (0, MAX_LEAD_DAYS),
    "buffer_minutes": (0, MAX_MINOR_MINUTES),
    "no_show_grace_minutes": (0, MAX_MINOR_MINUTES),
    "cancel_free_minutes": (0, MAX_MINOR_MINUTES),
    "idle_minutes": (1, MAX_MINOR_MINUTES),
    "idle_grace_minutes": (0, MAX_MINOR_MINUTES),
    "idle_threshold_pct": (0, 100),
    "contested_lead_days": (0, MAX_LEAD_DAYS),
    "hourly_rate": (0, 100_000_000),
    "memory_gb": (0, 1_000_000),
}


class ModelRulesMixin:
    """Run the model's clean() and its named constraints before saving, so a rule the database
    would refuse answers 400 naming the field instead of a 500. Numbers get FIELD_BOUNDS and
    times of day are "HH:MM" (LocalTimeField)."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.TimeField: LocalTimeField,
    }

    def build_standard_field(self, field_name, model_field):
        field_class, kwargs = super().build_standard_field(field_name, model_field)  # type: ignore[misc]
        if field_name in FIELD_BOUNDS:
            kwargs["min_value"], kwargs["max_value"] = FIELD_BOUNDS[field_name]
        return field_class, kwargs

    def validate(self, attrs):
        attrs = super().validate(attrs)  # type: ignore[misc]
        model = self.Meta.model  # type: ignore[attr-defined]
        instance = self.instance if self.instance is not None else model()  # type: ignore[attr-defined]
        for key, value in attrs.items():
            setattr(instance, key, value)
        try:
            instance.clean()
            instance.clean_fields(
                exclude=[f.name for f in model._meta.fields if f.name not in attrs]
            )
            instance.validate_constraints()
        except DjangoValidationError as exc:
            errors = dict(exc.message_dict)
            if "__all__" in errors:
                errors["non_field_errors"] = errors.pop("__all__")
            raise serializers.ValidationError(errors) from None
        return attrs


class CenterSerializer(ModelRulesMixin, serializers.ModelSerializer):
    class Meta:
        model = Center
        fields = ["code", "name", "name_en", "field", "operator", "address", "timezone"]

    def validate_timezone(self, value: str) -> str:
        # Read back by every page that shows the centre's local time: a bad name would break them.
        if value not in zoneinfo.available_timezones():
            raise serializers.ValidationError("Give an IANA time zone name, e.g. Asia/Seoul.")
        return value


class EquipmentTypeSerializer(ModelRulesMixin, serializers.ModelSerializer):
    center = serializers.SlugRelatedField(slug_field="code", queryset=Center.objects.all())
    units_count = serializers.SerializerMethodField()

    class Meta:
        model = EquipmentType
        fields = [
            "code",
            "name",
            "name_en",
            "center",
            "field",
            "phase",
            "category",
            "operating_mode",
            "placeholder",
            "units_count",
            "slot_minutes",
            "min_minutes",
            "max_minutes",
            "min_lead_minutes",
            "max_lead_days",
            "buffer_minutes",
            "opens_at",
            "closes_at",
            "open_weekdays",
            "requires_approval",
            "requires_qualification",
            "hourly_rate",
            "description",
            "specs",
        ]

    def validate_field(self, value: str) -> str:
        if value not in {"healthcare", "automotive", "energy"}:
            raise serializers.ValidationError(
                "Equipment types belong to healthcare, automotive or energy; accelerators go in pools."
            )
        return value

    def get_units_count(self, obj: EquipmentType) -> int:
        annotated = getattr(obj, "units_count", None)
        return annotated if annotated is not None else obj.units.exclude(status="retired").count()


class _PoolListSerializer(serializers.ListSerializer):
    """Reads the node shapes of a whole page of pools in one query."""

    def to_representation(self, data):
        pools = list(data.all() if hasattr(data, "all") else data)
        shapes = pool_node_shapes(p.pk for p in pools)
        for pool in pools:
            pool._node_shapes = shapes.get(pool.pk, [])
        return super().to_representation(pools)


class NodeShapeSerializer(serializers.Serializer):
    devices = serializers.IntegerField(help_text="Devices on each node of this shape.")
    nodes = serializers.IntegerField(help_text="How many nodes have this shape.")


class PoolSerializer(ModelRulesMixin, serializers.ModelSerializer):
    center = serializers.SlugRelatedField(slug_field="code", queryset=Center.objects.all())
    nodes_count = serializers.IntegerField(read_only=True)
    devices_count = serializers.IntegerField(read_only=True)
    devices_per_node = serializers.SerializerMethodField(
        help_text="Devices on the largest node: the most one single-node booking can take. "
        "Nodes may differ: see node_shapes."
    )
    node_shapes = serializers.SerializerMethodField(
        help_text="The pool's nodes by size, largest first. Beyond one node a booking takes "
        "whole nodes whose sizes add up to its quantity (e.g. 12 = 8 + 4)."
    )

    class Meta:
        model = AcceleratorPool
        list_serializer_class = _PoolListSerializer
        fields = [
            "code",
            "name",
            "name_en",
            "center",
            "accelerator",
            "vendor",
            "kind",
            "partition_kind",
            "memory_gb",
            "placeholder",
            "nodes_count",
            "devices_per_node",
            "node_shapes",
            "devices_count",
            "slot_minutes",
            "min_minutes",
            "max_minutes",
            "min_lead_minutes",
            "max_lead_days",
            "opens_at",
            "closes_at",
            "open_weekdays",
            "requires_approval",
            "requires_qualification",
            "hourly_rate",
            "description",
        ]

    def _shapes(self, obj: AcceleratorPool) -> list[dict[str, int]]:
        shapes = getattr(obj, "_node_shapes", None)
        if shapes is None:
            shapes = pool_node_shapes([obj.pk]).get(obj.pk, []) if obj.pk else []
            obj._node_shapes = shapes  # type: ignore[attr-defined]
        return shapes

    def get_devices_per_node(self, obj: AcceleratorPool) -> int:
        return devices_per_node(self._shapes(obj))

    @extend_schema_field(NodeShapeSerializer(many=True))
    def get_node_shapes(self, obj: AcceleratorPool) -> list[dict[str, int]]:
        return self._shapes(obj)

    def to_representation(self, instance):
        if not hasattr(instance, "devices_count"):
            from equipment.selectors import pool_list

            instance = pool_list().get(pk=instance.pk)
        return super().to_representation(instance)


class MaintenanceWindowSerializer(serializers.ModelSerializer):
    resource = serializers.CharField(
        write_only=True, help_text="Code of an equipment type, pool, unit, or a node's host name."
    )
    resource_kind = serializers.SerializerMethodField()
    start = AwareDateTimeField()
    end = AwareDateTimeField()

    class Meta:
        model = MaintenanceWindow
        fields = ["id", "resource", "resource_kind", "start", "end", "reason", "created_at"]
        read_only_fields = ["id", "resource_kind", "created_at"]

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if "start" not in attrs or "end" not in attrs:
            return attrs
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["The end must be after the start."]})
        if attrs["end"] - attrs["start"] > MAX_MAINTENANCE:
            raise serializers.ValidationError(
                {
                    "end": [
                        f"A maintenance window lasts at most {MAX_MAINTENANCE.days} days: "
                        "create several windows."
                    ]
                }
            )
        return attrs

    def get_resource_kind(self, obj: MaintenanceWindow) -> str:
        return obj.target._meta.model_name or ""

    def to_representation(self, instance):
        data = super().to_representation(instance)
        target = instance.target
        data["resource"] = getattr(target, "code", None) or getattr(target, "hostname", "")
        return data
