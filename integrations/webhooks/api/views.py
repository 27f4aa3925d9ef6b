"""Webhook endpoints over the API: register, change, rotate the secret, test, read the delivery log.

Managers of the organisation and its keys with `webhooks:manage` do everything; operators read
every organisation's endpoints and logs (`?failing=true` lists the failing ones) and change none.
Members are refused (403) on the list as on one endpoint, never shown an empty list.
Rules: booking/services/access.py (access_organization_webhooks); writes: ../services.py.
"""

from __future__ import annotations

import django_filters
from django.db.models import Prefetch, Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from booking.api.organizations import paginated
from booking.models import Organization
from booking.services.access import (
    access_organization_webhooks,
    default_organization_for,
    is_operator,
    webhook_organization_ids,
)
from booking.services.idempotency import idempotent_create, request_fingerprint
from integrations.webhooks import services
from integrations.webhooks.api.serializers import (
    RotateSecretSerializer,
    WebhookDeliveryDetailSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointCreateSerializer,
    WebhookEndpointSerializer,
    WebhookEndpointUpdateSerializer,
    WebhookEndpointWithSecretSerializer,
)
from integrations.webhooks.models import (
    DeliveryStatus,
    DisabledReason,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from testbed.choices import Channel, KeyScope
from testbed.errors import PermissionDenied
from testbed.security import no_store


class EndpointFilter(django_filters.FilterSet):
    organization = django_filters.CharFilter(
        field_name="organization__slug", help_text="Organisation slug."
    )
    failing = django_filters.BooleanFilter(
        method="filter_failing",
        help_text="true: endpoints failing now, or disabled for failing (operators' watch list).",
    )
    is_active = django_filters.BooleanFilter()

    class Meta:
        model = WebhookEndpoint
        fields = ["organization", "failing", "is_active"]

    def filter_failing(self, qs, name, value):
        failing = Q(failing_since__isnull=False) | Q(disabled_reason=DisabledReason.FAILING)
        return qs.filter(failing) if value else qs.exclude(failing)


class DeliveryFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=DeliveryStatus.choices)
    event_type = django_filters.CharFilter()

    class Meta:
        model = WebhookDelivery
        fields = ["status", "event_type"]


def _organization_to_write(request, slug: str | None):
    """The organisation a new endpoint is for: the one named, else the caller's own."""
    if slug:
        return access_organization_webhooks(actor=request.user, slug=slug, write=True)
    if is_operator(request.user):
        raise PermissionDenied(
            "Operators see webhook endpoints but only the organisation's managers change them."
        )
    org = default_organization_for(request.user)
    return access_organization_webhooks(actor=request.user, slug=org.slug, write=True)


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> dict:
    data = dict(WebhookEndpointWithSecretSerializer(endpoint).data)
    data["secret"] = secret
    return data


@extend_schema(tags=["webhooks"])
class WebhookEndpointViewSet(viewsets.GenericViewSet):
    """Signed webhooks (Standard Webhooks) of an organisation; event bodies: `x-webhooks`."""

    serializer_class = WebhookEndpointSerializer
    filterset_class = EndpointFilter
    lookup_value_regex = r"\d+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    required_scopes = {
        name: KeyScope.WEBHOOKS_MANAGE
        for name in (
            "list",
            "create",
            "retrieve",
            "partial_update",
            "destroy",
            "rotate_secret",
            "test",
            "deliveries",
            "delivery",
            "redeliver",
        )
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookEndpoint.objects.none()
        rows = WebhookEndpoint.objects.select_related("organization", "created_by")
        visible = webhook_organization_ids(self.request.user)
        if visible is not None:
            rows = rows.filter(organization_id__in=visible)
        return rows.order_by("-created_at", "-pk")

    def _endpoint(self, pk, *, write: bool = False) -> WebhookEndpoint:
        return services.access_webhook_endpoint(
            actor=self.request.user, endpoint_id=int(pk), write=write
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("organization", OpenApiTypes.STR, description="Organisation slug."),
        ]
    )
    def list(self, request):
        visible = webhook_organization_ids(request.user)
        if visible is not None and not Organization.objects.filter(pk__in=visible).exists():
            # The same answer as on one endpoint: members are refused, not shown an empty list.
            raise PermissionDenied(
                "Only managers see and change webhook endpoints: ask your organisation's manager."
            )
        slug = request.query_params.get("organization")
        if slug:  # naming an organisation one may not read is refused, never answered with []
            access_organization_webhooks(actor=request.user, slug=slug)
        rows = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(WebhookEndpointSerializer(page, many=True).data)

    @extend_schema(
        request=WebhookEndpointCreateSerializer,
        responses={201: WebhookEndpointWithSecretSerializer},
        description="Register an endpoint. The answer carries the signing `secret`, shown only "
        "now. Honours `Idempotency-Key`.",
    )
    @no_store
    def create(self, request):
        sent = request.data if isinstance(request.data, dict) else {}
        org = _organization_to_write(request, str(sent.get("organization") or "") or None)
        body = WebhookEndpointCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        made: dict = {}

        def create() -> int:
            endpoint, secret = services.webhook_endpoint_create(
                actor=request.user,
                organization=org,
                url=data["url"],
                event_types=data["event_types"],
                description=data.get("description", ""),
                channel=Channel.API,
            )
            made["secret"] = secret
            return endpoint.pk

        endpoint_id, created = idempotent_create(
            user=request.user,
            endpoint="webhook-endpoint-create",
            key=request.headers.get("Idempotency-Key"),
            fingerprint=request_fingerprint(request.data),
            create=create,
        )
        endpoint = WebhookEndpoint.objects.select_related("organization", "created_by").get(
            pk=endpoint_id
        )
        # A repeat with the same key answers as the first time did: the endpoint and its secret.
        secret = made.get("secret") or endpoint.secret
        return Response(_with_secret(endpoint, secret), status=status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return Response(WebhookEndpointSerializer(self._endpoint(pk)).data)

    @extend_schema(request=WebhookEndpointUpdateSerializer, responses=WebhookEndpointSerializer)
    def partial_update(self, request, pk=None):
        endpoint = self._endpoint(pk, write=True)
        body = WebhookEndpointUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint = services.webhook_endpoint_update(
            actor=request.user, endpoint=endpoint, channel=Channel.API, **body.validated_data
        )
        return Response(WebhookEndpointSerializer(endpoint).data)

    def destroy(self, request, pk=None):
        endpoint = self._endpoint(pk, write=True)
        services.webhook_endpoint_delete(actor=request.user, endpoint=endpoint, channel=Channel.API)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=RotateSecretSerializer,
        responses=WebhookEndpointWithSecretSerializer,
        description="A new signing secret, shown only now. The previous one keeps signing "
        "alongside it for 24 hours (unless keep_previous is false), so receivers can switch "
        "without losing deliveries.",
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    @no_store
    def rotate_secret(self, request, pk=None):
        endpoint = self._endpoint(pk, write=True)
        body = RotateSecretSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint, secret = services.webhook_endpoint_rotate_secret(
            actor=request.user,
            endpoint=endpoint,
            keep_previous=body.validated_data["keep_previous"],
            channel=Channel.API,
        )
        return Response(_with_secret(endpoint, secret))

    @extend_schema(
        request=None,
        responses={202: WebhookDeliverySerializer},
        description="Send a `webhook.test` event to this endpoint now (one attempt, no retries; "
        "also while it is disabled). Follow it in the delivery log.",
    )
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        endpoint = self._endpoint(pk, write=True)
        delivery = services.webhook_endpoint_test(
            actor=request.user, endpoint=endpoint, channel=Channel.API
        )
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    def _deliveries(self, endpoint: WebhookEndpoint):
        return WebhookDelivery.objects.filter(endpoint=endpoint).prefetch_related(
            Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number"))
        )

    @extend_schema(
        responses=paginated("PaginatedWebhookDeliveryList", WebhookDeliverySerializer),
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, many=True),
            OpenApiParameter("event_type", OpenApiTypes.STR),
        ],
        filters=False,
        description="The delivery log, newest first (kept for TESTBED_WEBHOOKS_LOG_DAYS days).",
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        endpoint = self._endpoint(pk)
        rows = DeliveryFilter(request.query_params, queryset=self._deliveries(endpoint))
        if not rows.is_valid():
            raise ValidationError(rows.errors)
        page = self.paginate_queryset(rows.qs.order_by("-created_at", "-pk"))
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(
        responses=WebhookDeliveryDetailSerializer,
        filters=False,
        operation_id="v1_webhook_endpoints_delivery_retrieve",
        description="One delivery with the exact body sent and every attempt.",
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"deliveries/(?P<delivery_id>\d+)",
    )
    def delivery(self, request, pk=None, delivery_id=None):
        _endpoint, found = services.access_webhook_delivery(
            actor=request.user, endpoint_id=int(pk), delivery_id=int(delivery_id)
        )
        return Response(WebhookDeliveryDetailSerializer(found).data)

    @extend_schema(
        request=None,
        responses={202: WebhookDeliverySerializer},
        description="Send this delivery again now, with the same body and webhook-id.",
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=r"deliveries/(?P<delivery_id>\d+)/redeliver",
    )
    def redeliver(self, request, pk=None, delivery_id=None):
        endpoint, found = services.access_webhook_delivery(
            actor=request.user, endpoint_id=int(pk), delivery_id=int(delivery_id), write=True
        )
        delivery = services.webhook_delivery_redeliver(
            actor=request.user, endpoint=endpoint, delivery=found, channel=Channel.API
        )
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
