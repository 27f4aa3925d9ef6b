"""Bookings, availability and maintenance windows over the API; organisations and quotas are in
organizations.py and quotas.py next to it."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import DatabaseError
from django.db.models import Prefetch, prefetch_related_objects
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from redis.exceptions import RedisError
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from booking.api import filters
from booking.api.filters import check_organization_filter
from booking.api.reports import REPORT_RENDERERS
from booking.api.serializers import (
    BookingCreateSerializer,
    BookingSerializer,
    ReasonSerializer,
)
from booking.availability import IsoMoments
from booking.choices import BookingStatus
from booking.models import (
    Allocation,
    Booking,
)
from booking.selectors import (
    availability,
    booking_list,
)
from booking.services import bookings as booking_services
from booking.services.access import (
    access_booking_organization,
    check_can_change_booking,
    check_can_use_booking,
)
from booking.services.decisions import decision_await, decision_listen, decision_wait
from booking.services.idempotency import idempotent_create, request_fingerprint
from booking.services.maintenance import maintenance_target_for, maintenance_window_create
from booking.services.moves import booking_move
from booking.services.resources import resource_for_code
from equipment.api.serializers import MaintenanceWindowSerializer
from equipment.models import MaintenanceWindow
from testbed.api.fields import FACILITY_ZONE, MAX_BOOKING_MINUTES, AwareDateTimeField
from testbed.api.permissions import OPERATOR_ONLY
from testbed.api.serializers import FlatSerializer
from testbed.audit import audit_record
from testbed.choices import Channel, KeyScope
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


def _apply_decision(booking: Booking, wait: float, *, listened: bool) -> bool:
    """Wait for the booking's decision and put it on the booking in hand. True when the decision
    came whole from the worker's message (the answer needs no read); False when only its status
    is known (then re-read: the decided fields) or the wait failed (then still `pending`)."""
    try:
        decision = decision_await(booking.pk, wait, listened=listened)
        if "allocations" not in decision:
            if decision.get("status") not in (None, BookingStatus.PENDING):
                booking.refresh_from_db(fields=DECISION_FIELDS)
            return False
    except (DatabaseError, RedisError):
        logger.warning("booking %s: waiting for its decision failed", booking.pk, exc_info=True)
        return False
    booking.status = decision["status"]
    booking.over_quota = bool(decision.get("over_quota"))
    booking.rejection_code = decision.get("rejection_code", "")
    booking.rejection_detail = decision.get("rejection_detail", "")
    booking.alternatives = decision.get("alternatives", [])
    booking.updated_at = dt.datetime.fromisoformat(decision["updated_at"])
    booking.published_allocations = decision["allocations"]  # type: ignore[attr-defined]
    return True


logger = logging.getLogger(__name__)


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


class BookingMoveSerializer(FlatSerializer):
    """The new window of a booking being moved (same resource, quantity and purpose)."""

    start = AwareDateTimeField()
    end = AwareDateTimeField()


@extend_schema(tags=["bookings"])
class BookingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Bookings of equipment and accelerators. Create answers 201 `pending`, or the decision with Prefer: wait=N."""

    serializer_class = BookingSerializer
    filterset_class = filters.BookingFilter
    required_scopes = {
        "list": KeyScope.BOOKINGS_READ,
        "retrieve": KeyScope.BOOKINGS_READ,
        "create": KeyScope.BOOKINGS_WRITE,
        "cancel": KeyScope.BOOKINGS_WRITE,
        "move": KeyScope.BOOKINGS_WRITE,
        "check_in": KeyScope.BOOKINGS_WRITE,
        "check_out": KeyScope.BOOKINGS_WRITE,
    }

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
        check_organization_filter(request)
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
        wait = _prefer_wait(request)
        serializer = BookingCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        organization = access_booking_organization(
            actor=request.user, slug=data.get("organization")
        )

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
        if not made:  # an idempotent repeat: read the first result as any other
            booking = booking_list(user=request.user, auth=request.auth).get(pk=booking_id)
            return Response(
                BookingSerializer(booking).data, status=status.HTTP_201_CREATED, headers=headers
            )
        # The booking just created is in hand with its organisation, user and resource. It is
        # committed: from here on, a failure to learn its decision (the database or Redis going
        # away) answers 201 `pending`, never an error that would make a client book again.
        booking = made[0]
        booking.affected_by_maintenance = None
        if wait:
            headers["Preference-Applied"] = f"wait={wait:g}"
            if _apply_decision(booking, wait, listened=listened):
                return Response(
                    BookingSerializer(booking).data, status=status.HTTP_201_CREATED, headers=headers
                )
        try:
            if booking.status in (BookingStatus.PENDING, BookingStatus.REJECTED):
                # A booking this young has never held a unit or device.
                booking.published_allocations = []  # type: ignore[attr-defined]
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
        except DatabaseError:
            logger.warning("booking %s: decision unreadable, answering pending", booking.pk)
            booking.status = BookingStatus.PENDING
            booking.published_allocations = []  # type: ignore[attr-defined]
        return Response(
            BookingSerializer(booking).data, status=status.HTTP_201_CREATED, headers=headers
        )

    def _act(self, request, func, *, check=None, reason_required: bool = False, **kwargs):
        booking = self._booking()
        if check is not None:  # who may act is answered before what they sent is looked at
            check(actor=request.user, booking=booking)
        if reason_required:
            body = ReasonSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            kwargs["reason"] = body.validated_data["reason"]
        func(actor=request.user, booking=booking, channel=Channel.API, **kwargs)
        return Response(BookingSerializer(self.get_queryset().get(pk=booking.pk)).data)

    @extend_schema(request=ReasonSerializer, responses=BookingSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._act(
            request,
            booking_services.booking_cancel,
            check=check_can_change_booking,
            reason_required=True,
        )

    @extend_schema(
        request=BookingMoveSerializer,
        responses={202: BookingSerializer},
        parameters=[
            OpenApiParameter(
                "Prefer",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="wait=N (≤ 30): answer with the new booking's decision if it comes in N seconds.",
            ),
        ],
    )
    @action(detail=True, methods=["post"])
    def move(self, request, pk=None):
        """Move to another window: 202 with the new `pending` booking, which replaces this one
        once confirmed (this one keeps its slot until then, and stays if the new one is rejected)."""
        booking = self._booking()
        check_can_change_booking(actor=request.user, booking=booking)  # before the body is read
        wait = _prefer_wait(request)
        body = BookingMoveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        listened = bool(wait) and decision_listen()
        moved = booking_move(
            actor=request.user,
            booking=booking,
            start=body.validated_data["start"],
            end=body.validated_data["end"],
            channel=Channel.API,
        )
        headers = {"Location": f"/api/v1/bookings/{moved.pk}"}
        if wait:
            decision_wait(moved.pk, wait, listened=listened)
            headers["Preference-Applied"] = f"wait={wait:g}"
        return Response(
            BookingSerializer(self.get_queryset().get(pk=moved.pk)).data,
            status=status.HTTP_202_ACCEPTED,
            headers=headers,
        )

    @extend_schema(request=None, responses=BookingSerializer)
    @action(detail=True, methods=["post"], permission_classes=OPERATOR_ONLY)
    def approve(self, request, pk=None):
        return self._act(request, booking_services.booking_approve)

    @extend_schema(request=ReasonSerializer, responses=BookingSerializer)
    @action(detail=True, methods=["post"], permission_classes=OPERATOR_ONLY)
    def reject(self, request, pk=None):
        return self._act(request, booking_services.booking_reject, reason_required=True)

    @extend_schema(request=None, responses=BookingSerializer)
    @action(detail=True, methods=["post"], url_path="check-in")
    def check_in(self, request, pk=None):
        return self._act(request, booking_services.booking_check_in, check=check_can_use_booking)

    @extend_schema(request=None, responses=BookingSerializer)
    @action(detail=True, methods=["post"], url_path="check-out")
    def check_out(self, request, pk=None):
        return self._act(request, booking_services.booking_check_out, check=check_can_use_booking)


# Most fitting windows one answer lists (a 31-day window of 15-minute slots has 2,976 starts);
# `fits_next_start` then says where to ask again.
MAX_FITS = 1000


class AvailabilityQuerySerializer(FlatSerializer):
    resource = serializers.CharField()
    start = AwareDateTimeField()
    end = AwareDateTimeField()
    quantity = serializers.IntegerField(min_value=1, max_value=100_000, default=1)
    duration_minutes = serializers.IntegerField(
        min_value=1,
        max_value=MAX_BOOKING_MINUTES,  # bounded before any date arithmetic (testbed/api/fields.py)
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
            "fits_total": serializers.IntegerField(),
            "fits_truncated": serializers.BooleanField(),
            "fits_next_start": serializers.DateTimeField(allow_null=True),
        },
    ),
)
class AvailabilityView(APIView):
    """Free units or devices over a window, from allocation rows, and the windows that would fit."""

    required_scopes = {"GET": KeyScope.CATALOG_READ}

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
        # AwareDateTimeField's text, each moment written once (booking/availability.py).
        iso = IsoMoments(FACILITY_ZONE)
        fits = result["fits"]
        steps = result["timeline"]
        starts = iso.many([s for s, _e, _n in steps])
        # The steps are contiguous (each ends where the next starts): their ends are written once.
        if all(steps[i][1] == steps[i + 1][0] for i in range(len(steps) - 1)):
            ends = starts[1:] + iso.many([e for _s, e, _n in steps[-1:]])
        else:
            ends = iso.many([e for _s, e, _n in steps])
        listed = fits[:MAX_FITS]
        fit_starts, fit_ends = iso.many([s for s, _e in listed]), iso.many([e for _s, e in listed])
        return Response(
            {
                "resource": resource.code,
                "capacity": result["capacity"],
                "quantity": q["quantity"],
                "duration_minutes": int(duration.total_seconds() // 60),
                "timeline": [
                    {"start": s, "end": e, "free": free}
                    for s, e, (_s, _e, free) in zip(starts, ends, steps, strict=True)
                ],
                "fits": [{"start": s, "end": e} for s, e in zip(fit_starts, fit_ends, strict=True)],
                # The whole window was searched; past MAX_FITS the answer says how to go on.
                "fits_total": len(fits),
                "fits_truncated": len(fits) > MAX_FITS,
                "fits_next_start": iso(fits[MAX_FITS][0]) if len(fits) > MAX_FITS else None,
            }
        )


@extend_schema(tags=["catalogue"])
class MaintenanceWindowViewSet(viewsets.ModelViewSet):
    """Maintenance windows (operators). Creating one over bookings marks them affected and emails them."""

    serializer_class = MaintenanceWindowSerializer
    # Windows are deleted and created again, never edited: PUT/PATCH are not offered at all.
    http_method_names = ["get", "post", "delete", "head", "options"]

    permission_classes = OPERATOR_ONLY

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
