from __future__ import annotations

import datetime as dt

from django.db.models import Prefetch, prefetch_related_objects
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied as DRFPermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from booking.api import filters
from booking.api.reports import REPORT_RENDERERS
from booking.api.serializers import (
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    BookingCreateSerializer,
    BookingSerializer,
    MemberCreateSerializer,
    MemberSerializer,
    OrganizationSerializer,
    QuotaGrantSerializer,
    ReasonSerializer,
)
from booking.choices import BookingStatus
from booking.models import Allocation, ApiKey, Booking, Membership, Organization, QuotaGrant
from booking.selectors import (
    availability,
    booking_list,
    organization_list,
    quota_grant_list,
)
from booking.services import bookings as booking_services
from booking.services.access import access_organization, default_organization_for, is_operator
from booking.services.api_keys import api_key_create, api_key_revoke
from booking.services.decisions import decision_listen, decision_wait
from booking.services.idempotency import idempotent_create, request_fingerprint
from booking.services.maintenance import maintenance_target_for, maintenance_window_create
from booking.services.organizations import member_add, organization_create, organization_update
from booking.services.quotas import (
    annotate_balances,
    quota_grant_adjust,
    quota_grant_create,
    quota_grant_update,
)
from booking.services.resources import resource_for_code
from equipment.api.serializers import MaintenanceWindowSerializer
from equipment.models import MaintenanceWindow
from testbed.api.fields import FACILITY_ZONE, AwareDateTimeField
from testbed.api.permissions import IsOperator
from testbed.audit import audit_record
from testbed.choices import Channel
from testbed.errors import ServiceError

MAX_WAIT_SECONDS = 30
EXPORT_LIMIT = 10_000
EXPORT_COLUMNS = [
    "id",
    "organization",
    "user",
    "resource",
    "quantity",
    "start",
    "end",
    "status",
    "allocated",
    "purpose",
    "rejection_code",
    "final_price_krw",
    "created_at",
]
# What the allocation worker writes on a booking; re-read after `Prefer: wait`.
DECISION_FIELDS = [
    "status",
    "rejection_code",
    "rejection_detail",
    "alternatives",
    "over_quota",
    "decided_at",
    "allocation_attempts",
    "updated_at",
]


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


def _require_scope(request, scope: str) -> None:
    if isinstance(request.auth, ApiKey) and scope not in request.auth.scopes:
        raise DRFPermissionDenied(
            f"This API key lacks the {scope!r} scope: ask your manager for a key with it."
        )


def _prefer_wait(request) -> float:
    """Seconds asked for with `Prefer: wait=N` (RFC 7240), at most 30; 0 when absent."""
    for part in request.headers.get("Prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return max(0.0, min(float(value.strip()), MAX_WAIT_SECONDS))
            except ValueError:
                raise ServiceError(
                    "Send `Prefer: wait=N` with N a number of seconds up to 30.", field="Prefer"
                ) from None
    return 0.0


@extend_schema(tags=["bookings"])
class BookingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Bookings of equipment and accelerators. Create answers 201 `pending`, or the decision with Prefer: wait=N."""

    serializer_class = BookingSerializer
    filterset_class = filters.BookingFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Booking.objects.none()
        return booking_list(user=self.request.user, auth=self.request.auth).order_by(
            "-start", "-id"
        )

    def _booking(self) -> Booking:
        return self.get_object()

    def get_renderers(self):
        if self.action == "list":  # the list also comes as CSV or XLSX for spreadsheets
            return [renderer() for renderer in REPORT_RENDERERS]
        return super().get_renderers()

    def list(self, request, *args, **kwargs):
        fmt = getattr(request.accepted_renderer, "format", "json")
        if fmt not in ("csv", "xlsx"):
            return super().list(request, *args, **kwargs)
        bookings = self.filter_queryset(self.get_queryset())[:EXPORT_LIMIT]
        rows = [
            {
                "id": b.pk,
                "organization": b.organization.slug,
                "user": b.user.username,
                "resource": b.resource_code,
                "quantity": b.quantity,
                "start": b.start.astimezone(FACILITY_ZONE).isoformat(),
                "end": b.end.astimezone(FACILITY_ZONE).isoformat(),
                "status": b.status,
                "allocated": " ".join(
                    a.unit.code
                    if a.unit
                    else f"{a.node.hostname if a.node else ''}/{a.device.index if a.device else ''}"
                    for a in b.allocations.all()
                    if a.active
                ),
                "purpose": b.purpose,
                "rejection_code": b.rejection_code,
                "final_price_krw": b.final_price_krw,
                "created_at": b.created_at.astimezone(FACILITY_ZONE).isoformat(),
            }
            for b in bookings
        ]
        disposition = f'attachment; filename="bookings.{fmt}"'
        return Response(
            {"title": "bookings", "columns": EXPORT_COLUMNS, "rows": rows},
            headers={"Content-Disposition": disposition},
        )

    @extend_schema(
        request=BookingCreateSerializer,
        responses={201: BookingSerializer},
        parameters=[
            OpenApiParameter(
                "Prefer",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="wait=N (≤ 30): answer with the worker's decision if it comes in N seconds.",
            ),
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="A repeat with the same key returns the first result and creates nothing.",
            ),
        ],
    )
    def create(self, request):
        _require_scope(request, "book")
        wait = _prefer_wait(request)
        serializer = BookingCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if isinstance(request.auth, ApiKey):
            organization = request.auth.organization
        elif data.get("organization"):
            organization = access_organization(actor=request.user, slug=data["organization"])
        else:
            organization = default_organization_for(request.user)

        # Subscribed before the booking exists, its decision cannot be published unseen.
        listened = bool(wait) and decision_listen()
        made: list[Booking] = []

        def create() -> int:
            booking = booking_services.booking_request(
                actor=request.user,
                organization=organization,
                resource_code=data["resource"],
                quantity=data["quantity"],
                start=data["start"],
                end=data["end"],
                purpose=data["purpose"],
                unit_code=data.get("unit") or None,
                channel=Channel.API,
            )
            made.append(booking)
            return booking.pk

        booking_id, _created = idempotent_create(
            user=request.user,
            endpoint="bookings",
            key=request.headers.get("Idempotency-Key"),
            fingerprint=request_fingerprint({**request.data, "organization": organization.slug}),
            create=create,
        )
        headers = {"Location": f"/api/v1/bookings/{booking_id}"}
        if wait:
            decision_wait(booking_id, wait, listened=listened and bool(made))
            headers["Preference-Applied"] = f"wait={wait:g}"
        if made:
            # The booking just created is in hand with its organisation, user and resource: only
            # what the worker may have changed is read back (no multi-join query on the hot path).
            booking = made[0]
            if wait:
                booking.refresh_from_db(fields=DECISION_FIELDS)
            booking.affected_by_maintenance = None
            if booking.status in (BookingStatus.PENDING, BookingStatus.REJECTED):
                # A booking this young has never held a unit or device.
                booking._prefetched_objects_cache = {"allocations": Allocation.objects.none()}
            else:
                # Units for equipment, nodes and devices for pools: no join that cannot match.
                joins = ("unit",) if booking.equipment_type_id else ("node", "device")
                prefetch_related_objects(
                    [booking],
                    Prefetch(
                        "allocations",
                        queryset=Allocation.objects.select_related(*joins).order_by("pk"),
                    ),
                )
        else:  # an idempotent repeat: read the first result as any other
            booking = booking_list(user=request.user, auth=request.auth).get(pk=booking_id)
        return Response(
            BookingSerializer(booking).data, status=status.HTTP_201_CREATED, headers=headers
        )

    def _act(self, request, func, *, reason_required: bool = False, **kwargs):
        _require_scope(request, "book")
        booking = self._booking()
        if reason_required:
            body = ReasonSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            kwargs["reason"] = body.validated_data["reason"]
        func(actor=request.user, booking=booking, channel=Channel.API, **kwargs)
        return Response(BookingSerializer(self.get_queryset().get(pk=booking.pk)).data)

    @extend_schema(request=ReasonSerializer, responses=BookingSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._act(request, booking_services.booking_cancel, reason_required=True)

    @extend_schema(request=None, responses=BookingSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsOperator])
    def approve(self, request, pk=None):
        return self._act(request, booking_services.booking_approve)

    @extend_schema(request=ReasonSerializer, responses=BookingSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsOperator])
    def reject(self, request, pk=None):
        return self._act(request, booking_services.booking_reject, reason_required=True)

    @extend_schema(request=None, responses=BookingSerializer)
    @action(detail=True, methods=["post"], url_path="check-in")
    def check_in(self, request, pk=None):
        return self._act(request, booking_services.booking_check_in)

    @extend_schema(request=None, responses=BookingSerializer)
    @action(detail=True, methods=["post"], url_path="check-out")
    def check_out(self, request, pk=None):
        return self._act(request, booking_services.booking_check_out)


class AvailabilityQuerySerializer(serializers.Serializer):
    resource = serializers.CharField()
    start = AwareDateTimeField()
    end = AwareDateTimeField()
    quantity = serializers.IntegerField(min_value=1, default=1)
    duration_minutes = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text="Length of the booking you have in mind (default: the minimum).",
    )

    def validate(self, attrs):
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["The end must be after the start."]})
        if attrs["end"] - attrs["start"] > dt.timedelta(days=31):
            raise serializers.ValidationError({"end": ["Ask for at most 31 days at a time."]})
        return attrs


@extend_schema(
    tags=["catalogue"],
    parameters=[AvailabilityQuerySerializer],
    responses=inline_serializer(
        "Availability",
        {
            "resource": serializers.CharField(),
            "capacity": serializers.IntegerField(),
            "timeline": serializers.ListField(child=serializers.DictField()),
            "fits": serializers.ListField(child=serializers.DictField()),
        },
    ),
)
class AvailabilityView(APIView):
    """Free units or devices over a window, from allocation rows, and the windows that would fit."""

    def get(self, request):
        query = AvailabilityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        resource = resource_for_code(q["resource"])
        duration = dt.timedelta(minutes=q.get("duration_minutes") or resource.min_minutes)
        result = availability(
            resource=resource,
            start=q["start"],
            end=q["end"],
            quantity=q["quantity"],
            duration=duration,
        )
        iso = AwareDateTimeField().to_representation
        return Response(
            {
                "resource": resource.code,
                "capacity": result["capacity"],
                "quantity": q["quantity"],
                "duration_minutes": int(duration.total_seconds() // 60),
                "timeline": [
                    {"start": iso(s), "end": iso(e), "free": free}
                    for s, e, free in result["timeline"]
                ],
                "fits": [{"start": iso(s), "end": iso(e)} for s, e in result["fits"]],
            }
        )


@extend_schema(tags=["organisations"])
class OrganizationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Organisations: operators see and create all; members see their own."""

    serializer_class = OrganizationSerializer
    lookup_field = "slug"
    filterset_fields = ["category", "region"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Organization.objects.none()
        return organization_list(user=self.request.user, auth=self.request.auth).order_by("name")

    def create(self, request):
        if not is_operator(request.user):
            raise DRFPermissionDenied(
                "Only facility operators register organisations: ask an operator."
            )
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        org = organization_create(
            actor=request.user, channel=Channel.API, **serializer.validated_data
        )
        return Response(self.get_serializer(org).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        org = access_organization(actor=request.user, slug=kwargs["slug"], manage=True)
        serializer = self.get_serializer(org, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        org = organization_update(
            actor=request.user, organization=org, channel=Channel.API, **serializer.validated_data
        )
        return Response(self.get_serializer(org).data)

    @extend_schema(request=MemberCreateSerializer, responses=MemberSerializer(many=True))
    @action(detail=True, methods=["get", "post"])
    def members(self, request, slug=None):
        org = access_organization(actor=request.user, slug=slug, manage=request.method == "POST")
        if request.method == "POST":
            body = MemberCreateSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            membership = member_add(
                actor=request.user, organization=org, channel=Channel.API, **body.validated_data
            )
            return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)
        members = (
            Membership.objects.filter(organization=org)
            .select_related("user")
            .order_by("user__username")
        )
        page = self.paginate_queryset(members)
        return self.get_paginated_response(MemberSerializer(page, many=True).data)

    @extend_schema(request=ApiKeyCreateSerializer, responses=ApiKeySerializer(many=True))
    @action(detail=True, methods=["get", "post"], url_path="api-keys")
    def api_keys(self, request, slug=None):
        org = access_organization(actor=request.user, slug=slug, manage=True)
        if isinstance(request.auth, ApiKey):
            raise DRFPermissionDenied("API keys cannot manage API keys: sign in as a manager.")
        if request.method == "POST":
            body = ApiKeyCreateSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            key, raw = api_key_create(
                actor=request.user, organization=org, channel=Channel.API, **body.validated_data
            )
            data = ApiKeySerializer(key).data
            data["key"] = raw
            return Response(data, status=status.HTTP_201_CREATED)
        keys = org.api_keys.select_related("created_by").order_by("-created_at")
        page = self.paginate_queryset(keys)
        return self.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"], url_path=r"api-keys/(?P<key_id>\d+)/revoke")
    def revoke_api_key(self, request, slug=None, key_id=None):
        org = access_organization(actor=request.user, slug=slug, manage=True)
        key = get_object_or_404(ApiKey, pk=key_id, organization=org)
        return Response(
            ApiKeySerializer(api_key_revoke(actor=request.user, key=key, channel=Channel.API)).data
        )


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
            return [IsOperator()]
        return super().get_permissions()

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
    @action(detail=True, methods=["post"], permission_classes=[IsOperator])
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


@extend_schema(tags=["catalogue"])
class MaintenanceWindowViewSet(viewsets.ModelViewSet):
    """Maintenance windows (operators). Creating one over bookings marks them affected and emails them."""

    serializer_class = MaintenanceWindowSerializer

    permission_classes = [IsOperator]

    def get_queryset(self):
        return MaintenanceWindow.objects.select_related(
            "equipment_type", "unit", "pool", "node"
        ).order_by("-start")

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        window, affected = maintenance_window_create(
            actor=request.user,
            target=maintenance_target_for(data["resource"]),
            start=data["start"],
            end=data["end"],
            reason=data["reason"],
            channel=Channel.API,
        )
        body = self.get_serializer(window).data
        body["affected_bookings"] = affected
        return Response(body, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        raise ServiceError(
            "Maintenance windows are not edited: delete this one and create the corrected window.",
            code="not_editable",
            status=405,
        )

    def perform_destroy(self, instance):
        audit_record(
            actor=self.request.user, channel=Channel.API, action="maintenance.delete", obj=instance
        )
        instance.delete()


@extend_schema(tags=["bookings"])
class ContestedRoundViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Contested rounds and where your requests stand in fair-share order (operators see everyone's)."""

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
                if is_operator(self.request.user) and not isinstance(self.request.auth, ApiKey)
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
