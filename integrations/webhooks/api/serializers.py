"""Serializers of webhook endpoints and their delivery log (input shapes; rules are in services)."""

from __future__ import annotations

import datetime as dt
import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from booking.events import PUBLIC_EVENTS
from integrations.webhooks.delivery import live_previous_secrets
from integrations.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from testbed.errors import ServiceError

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
        help_text="Until when the last rotated-out secret still signs alongside the new one "
        "(null: none)."
    )
    previous_secrets_valid_until = serializers.SerializerMethodField(
        help_text="Every rotated-out secret that still signs (at most 3), newest first: until "
        "when each does."
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
            "previous_secrets_valid_until",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_previous_secret_valid_until(self, obj: WebhookEndpoint):
        until = self.get_previous_secrets_valid_until(obj)
        return until[0] if until else None

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField()))
    def get_previous_secrets_valid_until(self, obj: WebhookEndpoint) -> list[str]:
        moments = [dt.datetime.fromisoformat(e["until"]) for e in live_previous_secrets(obj)]
        return [serializers.DateTimeField().to_representation(moment) for moment in moments]


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


UNCHANGEABLE = {
    "secret": "The secret cannot be set: POST …/rotate-secret makes a new one (shown once).",
    "organization": "An endpoint cannot move to another organisation: register the URL there "
    "(POST /api/v1/webhook-endpoints with its `organization`) and delete this one.",
}


class WebhookEndpointUpdateSerializer(serializers.Serializer):
    """Only url, description, event_types and is_active change; anything else sent is refused,
    naming the field (never silently ignored)."""

    def validate(self, attrs):
        sent = self.initial_data if isinstance(self.initial_data, dict) else {}
        for name in sent:
            if name in self.fields:
                continue
            raise ServiceError(
                UNCHANGEABLE.get(
                    name,
                    f"`{name}` cannot be changed here: send some of {', '.join(self.fields)}.",
                ),
                field=name,
            )
        return attrs

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
    body = serializers.SerializerMethodField(
        help_text="The JSON body sent (the same on retries), parsed: to check a signature use "
        "`raw_body`."
    )
    raw_body = serializers.CharField(
        source="body",
        read_only=True,
        help_text="The exact body sent and signed, as a string (its UTF-8 bytes are what "
        "webhook-signature signs).",
    )

    class Meta(WebhookDeliverySerializer.Meta):
        fields = [*WebhookDeliverySerializer.Meta.fields, "body", "raw_body"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_body(self, obj: WebhookDelivery):
        return json.loads(obj.body)
