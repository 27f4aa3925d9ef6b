"""Quota grants with their ledgers, and contested rounds, over the API."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from booking.api.filters import check_organization_filter
from booking.api.serializers import (
    QuotaGrantSerializer,
)
from booking.models import (
    Booking,
    QuotaGrant,
)
from booking.selectors import (
    organization_list,
    quota_grant_list,
)
from booking.services.access import (
    is_operator,
)
from booking.services.quotas import (
    annotate_balances,
    quota_grant_adjust,
    quota_grant_create,
    quota_grant_update,
)
from testbed.api.fields import AwareDateTimeField
from testbed.api.permissions import OPERATOR_ONLY
from testbed.choices import Channel, KeyScope


class AdjustSerializer(serializers.Serializer):
    hours = serializers.DecimalField(max_digits=14, decimal_places=4)
    reason = serializers.CharField(max_length=300)


class LedgerEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    hours = serializers.DecimalField(max_digits=14, decimal_places=4)
    booking = serializers.IntegerField(source="booking_id", allow_null=True)
    reason = serializers.CharField()
    actor = serializers.CharField(source="actor.username", allow_null=True, default=None)
    at = AwareDateTimeField()


@extend_schema(tags=["quotas"])
class QuotaGrantViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Quota grants with their live balances (operators write; organisations see their own)."""

    serializer_class = QuotaGrantSerializer
    filterset_fields = ["scope", "enforcement"]
    http_method_names = ["get", "post", "patch", "head", "options"]
    required_scopes = {
        "list": KeyScope.USAGE_READ,
        "retrieve": KeyScope.USAGE_READ,
        "ledger": KeyScope.USAGE_READ,
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return QuotaGrant.objects.none()
        qs = annotate_balances(quota_grant_list(user=self.request.user, auth=self.request.auth))
        org = self.request.query_params.get("organization")
        return (qs.filter(organization__slug=org) if org else qs).order_by(
            "organization__name", "period_start", "pk"
        )

    def get_permissions(self):
        if self.request.method not in ("GET", "HEAD", "OPTIONS"):
            return [permission() for permission in OPERATOR_ONLY]
        return super().get_permissions()

    def list(self, request, *args, **kwargs):
        check_organization_filter(request)
        return super().list(request, *args, **kwargs)

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant = quota_grant_create(
            actor=request.user, channel=Channel.API, **serializer.validated_data
        )
        return Response(
            self.get_serializer(self.get_queryset().get(pk=grant.pk)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        request=inline_serializer(
            "QuotaAdjust",
            {
                "hours": serializers.DecimalField(
                    max_digits=14,
                    decimal_places=4,
                    help_text="Positive charges the grant, negative gives hours back.",
                ),
                "reason": serializers.CharField(max_length=300),
            },
        ),
        responses=QuotaGrantSerializer,
    )
    @action(detail=True, methods=["post"], permission_classes=OPERATOR_ONLY)
    def adjust(self, request, pk=None):
        """An operator's correction to a grant, kept in the append-only ledger with its reason."""
        grant = self.get_object()
        body = AdjustSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        quota_grant_adjust(
            actor=request.user, grant=grant, channel=Channel.API, **body.validated_data
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=grant.pk)).data)

    @extend_schema(responses=LedgerEntrySerializer(many=True))
    @action(detail=True, methods=["get"])
    def ledger(self, request, pk=None):
        """The grant's ledger: every hold, release, consumption and adjustment."""
        grant = self.get_object()
        entries = grant.ledger.select_related("actor").order_by("at", "pk")
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(LedgerEntrySerializer(page, many=True).data)

    def partial_update(self, request, pk=None):
        grant = self.get_object()
        serializer = self.get_serializer(grant, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        quota_grant_update(
            actor=request.user, grant=grant, channel=Channel.API, **serializer.validated_data
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=grant.pk)).data)


@extend_schema(tags=["bookings"])
class ContestedRoundViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Contested rounds and where your requests stand in fair-share order (operators see everyone's)."""

    required_scopes = {"list": KeyScope.BOOKINGS_READ, "retrieve": KeyScope.BOOKINGS_READ}

    def get_queryset(self):
        from booking.models import ContestedRound
        from booking.services.rounds import rounds_visible_to

        if getattr(self, "swagger_fake_view", False):
            return ContestedRound.objects.none()
        return rounds_visible_to(user=self.request.user, auth=self.request.auth)

    def _body(self, round_, *, standing: bool) -> dict:
        iso = AwareDateTimeField().to_representation
        body = {
            "id": round_.pk,
            "pool": round_.pool.code,
            "window_start": iso(round_.window_start),
            "window_end": iso(round_.window_end),
            "cutoff_at": iso(round_.cutoff_at),
            "allocated_at": iso(round_.allocated_at) if round_.allocated_at else None,
        }
        if standing:
            from booking.services.rounds import round_standing

            ranked = round_standing(round_)
            mine = (
                None
                if is_operator(self.request.user)
                else set(
                    Booking.objects.filter(round=round_)
                    .filter(
                        organization__in=organization_list(
                            user=self.request.user, auth=self.request.auth
                        )
                    )
                    .values_list("pk", flat=True)
                )
            )
            body["requests"] = len(ranked)
            body["standing"] = [
                {
                    "booking": r.claim.booking_id,
                    "position": r.position,
                    "within_quota": r.within_quota,
                    "recent_use_ratio": round(r.recent_use_ratio, 4),
                    "unit_hours": r.claim.hours,
                }
                for r in ranked
                if mine is None or r.claim.booking_id in mine
            ]
        return body

    @extend_schema(responses=OpenApiTypes.OBJECT, operation_id="v1_rounds_list")
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([self._body(r, standing=False) for r in page])

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def retrieve(self, request, pk=None):
        return Response(self._body(self.get_object(), standing=True))
