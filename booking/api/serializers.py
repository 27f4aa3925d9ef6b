from __future__ import annotations

import datetime as dt
from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from booking.choices import BookingStatus, Role
from booking.models import ApiKey, Booking, Invitation, Membership, Organization, QuotaGrant
from booking.validators import business_number_format, validate_business_number
from testbed.api.fields import AwareDateTimeField, BoundedDateField, iso
from testbed.api.serializers import FlatSerializer
from testbed.choices import LEGACY_KEY_SCOPES

# The largest grant (unit-hours) the API takes: 1,000 devices around the clock for 10 years is
# under 10^8; limit_hours holds 12 whole digits.
MAX_LIMIT_HOURS = Decimal("100000000")


class AllocationOutSerializer(serializers.Serializer):
    unit = serializers.CharField(allow_null=True)
    node = serializers.CharField(allow_null=True)
    device = serializers.CharField(allow_null=True, help_text="Device UUID (pools).")
    device_index = serializers.IntegerField(allow_null=True)


class WindowSerializer(serializers.Serializer):
    start = serializers.CharField()
    end = serializers.CharField()


class RejectionSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    alternatives = WindowSerializer(many=True)


def local_windows(windows: list | None) -> list[dict]:
    """Stored alternative windows ({"start", "end"} ISO strings, any offset) in +09:00."""
    out = []
    for window in windows or []:
        try:
            start = dt.datetime.fromisoformat(window["start"])
            end = dt.datetime.fromisoformat(window["end"])
        except (KeyError, TypeError, ValueError):
            continue
        out.append({"start": iso(start), "end": iso(end)})
    return out


class MaintenanceOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    start = AwareDateTimeField()
    end = AwareDateTimeField()
    reason = serializers.CharField()
    alternatives = WindowSerializer(many=True)


class BookingSerializer(serializers.ModelSerializer):
    organization: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    user: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    resource = serializers.CharField(source="resource_code", read_only=True)
    resource_kind = serializers.SerializerMethodField()
    start = AwareDateTimeField(read_only=True)
    end = AwareDateTimeField(read_only=True)
    actual_start = AwareDateTimeField(read_only=True, allow_null=True)
    actual_end = AwareDateTimeField(read_only=True, allow_null=True)
    created_at = AwareDateTimeField(read_only=True)
    updated_at = AwareDateTimeField(read_only=True)
    idle_flagged_at = AwareDateTimeField(read_only=True, allow_null=True)
    reclaimed_at = AwareDateTimeField(read_only=True, allow_null=True)
    allocations = serializers.SerializerMethodField()
    rejection = serializers.SerializerMethodField()
    maintenance = serializers.SerializerMethodField()

    class Meta:
        model = Booking
        fields = [
            "id",
            "organization",
            "user",
            "resource",
            "resource_kind",
            "quantity",
            "start",
            "end",
            "purpose",
            "status",
            "allocations",
            "rejection",
            "over_quota",
            "maintenance",
            "actual_start",
            "actual_end",
            "cancel_reason",
            "final_price_krw",
            "channel",
            "round",
            "idle_flagged_at",
            "reclaimed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    # DRF's generic to_representation rebuilds the ModelSerializer's two dozen fields for every
    # booking (field mapping, verbose-name translation, deep copies): that was a fifth of the CPU
    # of `POST /api/v1/bookings`. This writes the same JSON directly, with the declared fields
    # doing the formatting; tests/booking/test_booking_api.py compares it to the generic path
    # for bookings in every state, so the two cannot drift apart.
    def to_representation(self, instance: Booking) -> dict:
        declared = self._declared_fields
        aware = declared["start"].to_representation
        b = instance
        return {
            "id": b.pk,
            "organization": b.organization.slug,
            "user": b.user.username,
            "resource": b.resource_code,
            "resource_kind": self.get_resource_kind(b),
            "quantity": b.quantity,
            "start": aware(b.start),
            "end": aware(b.end),
            "purpose": b.purpose,
            "status": b.status,
            "allocations": self.get_allocations(b),
            "rejection": self.get_rejection(b),
            "over_quota": b.over_quota,
            "maintenance": self.get_maintenance(b),
            "actual_start": aware(b.actual_start),
            "actual_end": aware(b.actual_end),
            "cancel_reason": b.cancel_reason,
            "final_price_krw": b.final_price_krw,
            "channel": b.channel,
            "round": b.round_id,
            "idle_flagged_at": aware(b.idle_flagged_at),
            "reclaimed_at": aware(b.reclaimed_at),
            "created_at": aware(b.created_at),
            "updated_at": aware(b.updated_at),
        }

    def get_resource_kind(self, obj: Booking) -> str:
        return "equipment" if obj.equipment_type_id else "pool"

    @extend_schema_field(AllocationOutSerializer(many=True))
    def get_allocations(self, obj: Booking) -> list[dict]:
        published = getattr(obj, "published_allocations", None)
        if published is not None:  # the worker's decision, as it published it (views.create)
            return published
        return [
            {
                "unit": a.unit.code if a.unit else None,
                "node": a.node.hostname if a.node else None,
                "device": str(a.device.uuid) if a.device else None,
                "device_index": a.device.index if a.device else None,
            }
            for a in obj.allocations.all()
            if a.active or obj.status in (BookingStatus.COMPLETED,)
        ]

    @extend_schema_field(RejectionSerializer(allow_null=True))
    def get_rejection(self, obj: Booking) -> dict | None:
        if obj.status != BookingStatus.REJECTED:
            return None
        return {
            "code": obj.rejection_code,
            "detail": obj.rejection_detail,
            "alternatives": local_windows(obj.alternatives),
        }

    @extend_schema_field(MaintenanceOutSerializer(allow_null=True))
    def get_maintenance(self, obj: Booking) -> dict | None:
        window = obj.affected_by_maintenance
        if window is None:
            return None
        return {
            "id": window.pk,
            "start": iso(window.start),
            "end": iso(window.end),
            "reason": window.reason,
            "alternatives": local_windows(obj.alternatives),
        }


class BookingCreateSerializer(FlatSerializer):
    resource = serializers.CharField(max_length=40, help_text="Equipment type or pool code.")
    quantity = serializers.IntegerField(min_value=1, max_value=100000, default=1)
    start = AwareDateTimeField()
    end = AwareDateTimeField()
    purpose = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    unit = serializers.CharField(
        max_length=60,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Pin one unit of the type by its code.",
    )
    organization = serializers.SlugField(
        required=False, help_text="Your organisation's slug, if you have several."
    )


class ReasonSerializer(FlatSerializer):
    reason = serializers.CharField(max_length=500)


class OrganizationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = [
            "slug",
            "name",
            "business_number",
            "category",
            "region",
            "youth_startup",
            "is_active",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def validate_business_number(self, value: str) -> str:
        if value:
            validate_business_number(value)
            return business_number_format(value)
        return value


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "email", "role", "created_at"]


class MemberCreateSerializer(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+$", max_length=150)
    email = serializers.EmailField()
    password = serializers.CharField(
        required=False, write_only=True, style={"input_type": "password"}
    )
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class ApiKeySerializer(serializers.ModelSerializer):
    created_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=[*ApiKey.SCOPES, *LEGACY_KEY_SCOPES]),
        min_length=1,
        help_text="Any of catalog:read, bookings:read, bookings:write, usage:read, members:manage "
        "(the old names read and book still work and are expanded).",
    )


class QuotaGrantSerializer(serializers.ModelSerializer):
    organization = serializers.SlugRelatedField(
        slug_field="slug", queryset=Organization.objects.all()
    )
    period_start = BoundedDateField()
    period_end = BoundedDateField()
    held_hours = serializers.DecimalField(max_digits=16, decimal_places=2, read_only=True)
    consumed_hours = serializers.DecimalField(max_digits=16, decimal_places=2, read_only=True)
    remaining_hours = serializers.SerializerMethodField()

    class Meta:
        model = QuotaGrant
        fields = [
            "id",
            "organization",
            "scope",
            "period_start",
            "period_end",
            "limit_hours",
            "enforcement",
            "notes",
            "held_hours",
            "consumed_hours",
            "remaining_hours",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        # The database refuses a negative limit (a check constraint): say so first, naming the field.
        extra_kwargs = {
            "limit_hours": {"min_value": Decimal("0"), "max_value": MAX_LIMIT_HOURS},
        }

    @extend_schema_field(serializers.DecimalField(max_digits=16, decimal_places=2))
    def get_remaining_hours(self, obj: QuotaGrant) -> str:
        remaining = (
            obj.limit_hours - getattr(obj, "held_hours", 0) - getattr(obj, "consumed_hours", 0)
        )
        return f"{remaining:.2f}"


class InvitationSerializer(serializers.ModelSerializer):
    """An invitation of an existing account into an organisation; it waits for that person."""

    organization: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    username = serializers.CharField(source="user.username", read_only=True)
    invited_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    status = serializers.SerializerMethodField()
    created_at = AwareDateTimeField(read_only=True)
    answered_at = AwareDateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "organization",
            "username",
            "role",
            "invited_by",
            "status",
            "created_at",
            "answered_at",
        ]
        read_only_fields = fields

    def get_status(self, obj: Invitation) -> str:
        if obj.answered_at is None:
            return "invited"
        return "accepted" if obj.accepted else "declined"
