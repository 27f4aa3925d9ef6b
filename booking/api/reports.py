"""Report endpoints: usage (everyone, scoped to their organisations) and utilisation (operators).

JSON by default; CSV and XLSX with `?format=csv|xlsx` or an Accept header. The formats are
DRF renderers, so content negotiation (including DRF's own `format` query parameter) picks
them; an unknown format is a 400 naming `format` rather than DRF's bare 404.
"""

from __future__ import annotations

import datetime as dt

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from booking.reports import (
    DEFAULT_GROUP_BY,
    GROUPS,
    MAX_REPORT_DAYS,
    TZ,
    check_group_by,
    report_scope,
    usage_report,
)
from booking.services.access import access_organization
from booking.utilisation import utilisation_report
from testbed.api.fields import AwareDateTimeField
from testbed.api.negotiation import BrowsableAPIRenderer, FormatNegotiation
from testbed.api.permissions import IsOperator, KeyScopes
from testbed.api.renderers import JSONRenderer
from testbed.choices import KeyScope
from testbed.errors import ServiceError
from testbed.spreadsheets import XLSX_CONTENT_TYPE, csv_text, xlsx_bytes

XLSX_MEDIA_TYPE = XLSX_CONTENT_TYPE


# --- formats ---------------------------------------------------------------------------------------


def _is_table(data, renderer_context) -> bool:
    response = (renderer_context or {}).get("response")
    ok = response is None or response.status_code < 400
    return ok and isinstance(data, dict) and "rows" in data and "columns" in data


class CSVRenderer(BaseRenderer):
    """The report's rows under a header row, as UTF-8 with a BOM for Excel; errors stay problem+json.

    Cells go through testbed.spreadsheets: text that a spreadsheet would run as a formula gets
    a leading quote.
    """

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"  # the body starts with a BOM: utf-8-sig, which Excel needs for Korean

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if not _is_table(data, renderer_context):
            return JSONRenderer().render(data)
        columns = data["columns"]
        table = [columns, *([row[c] for c in columns] for row in data["rows"])]
        return csv_text(table).encode(self.charset)


class XLSXRenderer(BaseRenderer):
    """One sheet: a header row, then the rows; numbers as numbers, text never a formula."""

    media_type = XLSX_MEDIA_TYPE
    format = "xlsx"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if not _is_table(data, renderer_context):
            return JSONRenderer().render(data)
        columns = data["columns"]
        table = [columns, *([row[c] for c in columns] for row in data["rows"])]
        return xlsx_bytes(table, title=str(data.get("title", "report")))


REPORT_RENDERERS = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer, XLSXRenderer]


ReportNegotiation = FormatNegotiation  # the name the report views use


def _download(
    response: Response, request, name: str, start: dt.datetime, end: dt.datetime
) -> Response:
    fmt = getattr(request.accepted_renderer, "format", "json")
    if fmt in {"csv", "xlsx"}:
        last = (end - dt.timedelta(microseconds=1)).astimezone(TZ)
        response["Content-Disposition"] = (
            f'attachment; filename="{name}-{start.astimezone(TZ):%Y%m%d}-{last:%Y%m%d}.{fmt}"'
        )
    return response


FORMAT_PARAMETER = OpenApiParameter(
    "format",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    enum=["json", "csv", "xlsx"],
    description="json (default), csv or xlsx; or send Accept: text/csv or Accept: "
    + XLSX_MEDIA_TYPE
    + ".",
)
FILE_RESPONSES = {
    (200, "text/csv"): OpenApiResponse(
        OpenApiTypes.STR, description="The rows under a header row."
    ),
    (200, XLSX_MEDIA_TYPE): OpenApiResponse(
        OpenApiTypes.BINARY, description="One sheet: header row, rows."
    ),
}


class WindowSerializer(serializers.Serializer):
    start = AwareDateTimeField(help_text="Window start, ISO 8601 with an offset (inclusive).")
    end = AwareDateTimeField(help_text="Window end, ISO 8601 with an offset (exclusive).")

    def validate(self, attrs):
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["The end must be after the start."]})
        if attrs["end"] - attrs["start"] > dt.timedelta(days=MAX_REPORT_DAYS):
            raise serializers.ValidationError(
                {"end": [f"Ask for at most {MAX_REPORT_DAYS} days at a time."]}
            )
        return attrs


# --- usage -------------------------------------------------------------------------------------------


class UsageQuerySerializer(WindowSerializer):
    group_by = serializers.CharField(
        required=False,
        default=",".join(DEFAULT_GROUP_BY),
        help_text=f"Comma-separated, in order: any of {', '.join(GROUPS)} (day and month exclusive).",
    )
    organization = serializers.SlugField(
        required=False,
        help_text="Only this organisation (its slug); operators may name any.",
    )

    def validate_group_by(self, value: str) -> list[str]:
        try:
            return check_group_by(value)
        except ServiceError as exc:
            raise serializers.ValidationError(exc.message) from None


class UsageRowSerializer(serializers.Serializer):
    """One group. Only the columns of the asked groupings appear, then the figures."""

    organization = serializers.CharField(
        required=False, help_text="Slug (grouped by organization)."
    )
    organization_name = serializers.CharField(required=False)
    resource = serializers.CharField(required=False, help_text="Equipment type or pool code.")
    center = serializers.CharField(required=False, help_text="Centre code.")
    day = serializers.DateField(
        required=False, help_text="Facility-local day of the bookings' start."
    )
    month = serializers.CharField(required=False, help_text="YYYY-MM, facility-local.")
    bookings = serializers.IntegerField(help_text="Bookings that held capacity (incl. no-shows).")
    booked_hours = serializers.FloatField(help_text="Σ quantity × (end − start) of those bookings.")
    used_hours = serializers.FloatField(
        help_text="Σ quantity × checked-in time of completed bookings."
    )
    unit_hours = serializers.FloatField(
        help_text="Quota consumed: Σ consume and adjust ledger entries."
    )
    cancelled = serializers.IntegerField()
    no_shows = serializers.IntegerField()
    charge_krw = serializers.IntegerField(help_text="Σ final price in won.")


class UsageTotalsSerializer(serializers.Serializer):
    bookings = serializers.IntegerField()
    booked_hours = serializers.FloatField()
    used_hours = serializers.FloatField()
    unit_hours = serializers.FloatField()
    cancelled = serializers.IntegerField()
    no_shows = serializers.IntegerField()
    charge_krw = serializers.IntegerField()


class UsageReportSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    group_by = serializers.ListField(child=serializers.CharField())
    columns = serializers.ListField(child=serializers.CharField())
    rows = UsageRowSerializer(many=True)
    totals = UsageTotalsSerializer()


def _organization_filter(request, slug: str) -> int:
    """The id of the named organisation, if the caller may see it; 404 as for any hidden org."""
    return access_organization(actor=request.user, slug=slug).pk


class UsageView(APIView):
    """Usage report: bookings, booked, used and consumed unit-hours, cancellations, no-shows, charges."""

    renderer_classes = REPORT_RENDERERS
    content_negotiation_class = ReportNegotiation
    required_scopes = {"GET": KeyScope.USAGE_READ}

    @extend_schema(
        tags=["usage"],
        operation_id="usage_report",
        parameters=[UsageQuerySerializer, FORMAT_PARAMETER],
        responses={(200, "application/json"): UsageReportSerializer, **FILE_RESPONSES},
        description=(
            "Usage over [start, end) grouped by organisation, resource, centre, day or month. A booking counts "
            "whole on the facility-local (Asia/Seoul) day it starts; see booking/reports.py for the definitions. "
            "Organisations see only themselves; operators see all. CSV and XLSX carry the same rows as `rows` "
            "(no totals row)."
        ),
    )
    def get(self, request):
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        organization_id = (
            _organization_filter(request, q["organization"]) if q.get("organization") else None
        )
        report = usage_report(
            scope_q=report_scope(user=request.user, auth=request.auth),
            start=q["start"],
            end=q["end"],
            group_by=q["group_by"],
            organization_id=organization_id,
        )
        iso = AwareDateTimeField().to_representation
        body = {
            "title": "usage",
            "start": iso(q["start"]),
            "end": iso(q["end"]),
            "group_by": q["group_by"],
            "columns": report.columns,
            "rows": report.rows,
            "totals": report.totals,
        }
        return _download(Response(body), request, "usage", q["start"], q["end"])


# --- utilisation -------------------------------------------------------------------------------------


class UtilisationRowSerializer(serializers.Serializer):
    resource = serializers.CharField()
    resource_kind = serializers.ChoiceField(choices=["equipment", "pool"])
    center = serializers.CharField()
    capacity_units = serializers.IntegerField(help_text="Bookable units or devices now.")
    capacity_hours = serializers.FloatField(
        help_text="Units × opening hours in the window, less maintenance."
    )
    booked_hours = serializers.FloatField(help_text="Booked unit-hours inside the window.")
    used_hours = serializers.FloatField(
        help_text="Checked-in unit-hours of completed bookings inside the window."
    )
    idle_hours = serializers.FloatField(help_text="Booked but not used (no-shows included).")
    no_show_hours = serializers.FloatField()
    booked_pct = serializers.FloatField(allow_null=True, help_text="% of capacity.")
    used_pct = serializers.FloatField(allow_null=True, help_text="% of capacity.")
    idle_pct = serializers.FloatField(allow_null=True, help_text="% of capacity.")
    no_show_pct = serializers.FloatField(allow_null=True, help_text="% of booked hours.")


class UtilisationReportSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    columns = serializers.ListField(child=serializers.CharField())
    rows = UtilisationRowSerializer(many=True)
    totals = serializers.DictField(child=serializers.FloatField())


class UtilisationView(APIView):
    """Operator utilisation report per equipment type and accelerator pool."""

    renderer_classes = REPORT_RENDERERS
    content_negotiation_class = ReportNegotiation
    permission_classes = [IsAuthenticated, KeyScopes, IsOperator]  # keys are never operators

    @extend_schema(
        tags=["usage"],
        operation_id="utilisation_report",
        parameters=[WindowSerializer, FORMAT_PARAMETER],
        responses={(200, "application/json"): UtilisationReportSerializer, **FILE_RESPONSES},
        description="Operators: per resource, capacity and the booked, used, idle and no-show shares over "
        "[start, end).",
    )
    def get(self, request):
        query = WindowSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        report = utilisation_report(start=q["start"], end=q["end"])
        iso = AwareDateTimeField().to_representation
        body = {
            "title": "utilisation",
            "start": iso(q["start"]),
            "end": iso(q["end"]),
            "columns": report.columns,
            "rows": report.rows,
            "totals": report.totals,
        }
        return _download(Response(body), request, "utilisation", q["start"], q["end"])
