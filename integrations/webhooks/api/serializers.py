"""Serializers of webhook endpoints and their delivery log (input shapes; rules are in services)."""

from __future__ import annotations

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from booking.events import PUBLIC_EVENTS
from integrations.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

EVENT_TYPES_HELP = "Events to receive, some of: " + ", ".join(PUBLIC_EVENTS) + "."


class WebhookEndpointSerializer(serializers.ModelSerializer):
    organization: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    created_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    event_types = serializers.ListField(child=serializers.CharField(), help_text=EVENT_TYPES_HELP)
    previous_secret_valid_until = serializers.SerializerMethodField(
        help_text="While a rotated-out secret still signs alongside the new one (null: none)."
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "organization",
            "url",
            "description",
            "event_types",
            "is_active",
            "disabled_reason",
            "disabled_at",
            "failing_since",
            "last_success_at",
            "previous_secret_valid_until",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_previous_secret_valid_until(self, obj: WebhookEndpoint):
        if not obj.previous_secret or obj.previous_secret_expires_at is None:
            return None
        return serializers.DateTimeField().to_representation(obj.previous_secret_expires_at)


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="The signing secret (whsec_…): shown only now. Verify each delivery with it.",
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookEndpointCreateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000, help_text="https:// on the public internet.")
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=50, help_text=EVENT_TYPES_HELP
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    organization = serializers.CharField(
        max_length=100,
        required=False,
        help_text="Slug; needed only by people who manage several organisations.",
    )


class WebhookEndpointUpdateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000, required=False)
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=50, required=False,
        help_text=EVENT_TYPES_HELP,
    )  # fmt: skip
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    is_active = serializers.BooleanField(
        required=False,
        help_text="false stops deliveries; true turns a disabled endpoint back on and clears its "
        "failure record.",
    )


class RotateSecretSerializer(serializers.Serializer):
    keep_previous = serializers.BooleanField(
        required=False,
        default=True,
        help_text="Keep signing with the old secret too for 24 hours (false: stop it at once, "
        "e.g. after a leak).",
    )


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = [
            "number",
            "at",
            "duration_ms",
            "response_status",
            "response_body",
            "error",
            "succeeded",
        ]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer):
    attempt_log = WebhookAttemptSerializer(
        many=True, read_only=True, help_text="Every HTTP request made for this delivery."
    )

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "next_attempt_at",
            "last_attempt_at",
            "last_error",
            "created_at",
            "attempt_log",
        ]
        read_only_fields = fields


class WebhookDeliveryDetailSerializer(WebhookDeliverySerializer):
    body = serializers.SerializerMethodField(help_text="The JSON body sent (the same on retries).")

    class Meta(WebhookDeliverySerializer.Meta):
        fields = [*WebhookDeliverySerializer.Meta.fields, "body"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_body(self, obj: WebhookDelivery):
        return json.loads(obj.body)
