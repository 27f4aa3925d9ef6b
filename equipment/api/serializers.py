from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from equipment.models import AcceleratorPool, Center, EquipmentType, MaintenanceWindow
from testbed.api.fields import AwareDateTimeField


class ModelRulesMixin:
    """Run the model's clean() and its named constraints before saving, so a rule the database
    would refuse answers 400 naming the field instead of a 500."""

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


class CenterSerializer(serializers.ModelSerializer):
    class Meta:
        model = Center
        fields = ["code", "name", "name_en", "field", "operator", "address", "timezone"]


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


class PoolSerializer(ModelRulesMixin, serializers.ModelSerializer):
    center = serializers.SlugRelatedField(slug_field="code", queryset=Center.objects.all())
    nodes_count = serializers.IntegerField(read_only=True)
    devices_count = serializers.IntegerField(read_only=True)
    devices_per_node = serializers.SerializerMethodField()

    class Meta:
        model = AcceleratorPool
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

    def get_devices_per_node(self, obj: AcceleratorPool) -> int:
        nodes = getattr(obj, "nodes_count", 0)
        return getattr(obj, "devices_count", 0) // nodes if nodes else 0

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

    def get_resource_kind(self, obj: MaintenanceWindow) -> str:
        return obj.target._meta.model_name or ""

    def to_representation(self, instance):
        data = super().to_representation(instance)
        target = instance.target
        data["resource"] = getattr(target, "code", None) or getattr(target, "hostname", "")
        return data
