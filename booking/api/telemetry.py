"""`POST /api/v1/telemetry`: node agents send device samples with their node key."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from booking.services.telemetry import MAX_BATCH, node_authenticate, telemetry_ingest
from testbed.api.errors import problem_response
from testbed.errors import ServiceError

_SAMPLE = inline_serializer(
    "TelemetrySampleIn",
    fields={
        "device": serializers.CharField(
            help_text='The device\'s index on the node (e.g. "0") or its UUID '
            "(NVML's GPU-… form is accepted)."
        ),
        "at": serializers.DateTimeField(help_text="When it was read, ISO 8601 with an offset."),
        "utilization_pct": serializers.FloatField(min_value=0, max_value=100),
        "memory_used_mb": serializers.FloatField(required=False, allow_null=True),
        "power_w": serializers.FloatField(required=False, allow_null=True),
        "energy_j": serializers.FloatField(
            required=False,
            allow_null=True,
            help_text="The device's cumulative energy counter, if it has one.",
        ),
    },
)


class TelemetryView(APIView):
    """Ingest a batch of device samples from a node agent.

    Authenticated by the node key only (`Authorization: Bearer tbn_<hostname>_<secret>`, made with
    `manage.py node_key <hostname>`); user tokens and API keys are refused. The whole batch is
    refused (400, errors named `samples.<i>.<field>`) when any sample is bad. Re-sending samples
    already stored is harmless: they count as duplicates.
    """

    authentication_classes: list = []  # the node key is checked below; a user token must not pass
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        tags=["telemetry"],
        auth=[{"bearerAuth": []}],  # type: ignore[list-item]  # the bearer is a node key, see above
        request=inline_serializer(
            "TelemetryBatch",
            fields={
                "samples": serializers.ListField(child=_SAMPLE, max_length=MAX_BATCH),
            },
        ),
        responses={
            202: inline_serializer(
                "TelemetryAccepted",
                fields={
                    "accepted": serializers.IntegerField(),
                    "duplicates": serializers.IntegerField(),
                    "attributed": serializers.IntegerField(),
                },
            ),
            400: OpenApiResponse(
                OpenApiTypes.OBJECT, description="Problem details naming the bad samples."
            ),
            401: OpenApiResponse(
                OpenApiTypes.OBJECT, description="No node key, or not a valid one."
            ),
        },
        examples=[
            OpenApiExample(
                "One GPU reading",
                request_only=True,
                value={
                    "samples": [
                        {
                            "device": "0",
                            "at": "2026-12-01T09:00:10+09:00",
                            "utilization_pct": 87.0,
                            "memory_used_mb": 61234,
                            "power_w": 512.3,
                            "energy_j": 1234567.8,
                        },
                    ]
                },
            )
        ],
    )
    def post(self, request):
        try:
            node = node_authenticate(authorization=request.headers.get("Authorization", ""))
        except ServiceError as exc:
            return problem_response(
                status_code=401,
                code=exc.code,
                detail=exc.message,
                headers={"WWW-Authenticate": 'Bearer realm="node agents"'},
            )
        data = request.data
        samples = data.get("samples") if isinstance(data, dict) else None
        result = telemetry_ingest(node=node, samples=samples)
        return Response(result, status=status.HTTP_202_ACCEPTED)
