"""API errors as problem details (RFC 9457): `application/problem+json` with a stable `code`.

Shape: {"type", "title", "status", "detail", "code", "errors": {field: [messages]}}.

Every refusal the API can answer carries one of the codes in `API_CODES` (docs/api.md lists
them): DRF's own per-field codes (min_value, max_length, naive, ...) are answered as `invalid`
with the field named. A database rule reached before the code checked it (IntegrityError,
DataError, a protected reference) or date arithmetic that overflowed is answered here as a 4xx
too; that is the backstop, not the plan: serializers and services check first. Django's own
400/403/404/500 pages are answered as problem+json under /api/ (see `api_handler400` etc.). A
database that is down or restarting answers 503 `service_unavailable` (testbed/unavailable.py).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DataError, IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from testbed.errors import ServiceError
from testbed.unavailable import CODE as UNAVAILABLE_CODE
from testbed.unavailable import DETAIL as UNAVAILABLE_DETAIL
from testbed.unavailable import (
    RETRY_AFTER_SECONDS,
    is_database_unavailable,
    log_outage,
    unavailable_response_for_current_exception,
)

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://testbed.example.kr/problems/"

TITLES = {
    400: "Invalid request",
    401: "Not authenticated",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Server error",
    503: "Service unavailable",
}

# Every `code` the API answers. Domain codes come from services (ServiceError) and the booking
# policy (booking/policy.py Refusal codes); the rest are the generic ones of this module.
API_CODES = frozenset(
    {
        # generic
        "invalid",
        "parse_error",
        "too_large",
        "not_authenticated",
        "authentication_failed",
        "permission_denied",
        "not_found",
        "method_not_allowed",
        "not_acceptable",
        "unsupported_media_type",
        "throttled",
        "conflict",
        "protected",
        "server_error",
        "service_unavailable",
        # bookings and policy
        "not_aligned",
        "lead_time",
        "too_short",
        "too_long",
        "outside_hours",
        "quantity",
        "node_shape",
        "maintenance",
        "capacity",
        "unavailable",
        "quota_exceeded",
        "qualification_required",
        "invalid_state",
        "too_early",
        "too_late",
        "operator_rejected",
        "not_editable",
        # rejection.code of a booking the worker or a sweep refused (never an HTTP error)
        "expired",
        "internal_error",
        "move_obsolete",
        # credentials, keys and idempotency
        "invalid_credentials",
        "insufficient_scope",
        "last_manager",
        "idempotency_in_progress",
        "idempotency_conflict",
    }
)


class ProblemError(exceptions.APIException):
    """A refusal with a stable machine-readable code and an optional per-field message map."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"
    default_detail = "The request is not valid."

    def __init__(
        self,
        detail: str,
        *,
        code: str = "invalid",
        field: str | None = None,
        status_code: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=detail, code=code)
        self.code = code
        self.field = field
        self.extra = extra or {}
        if status_code is not None:
            self.status_code = status_code  # type: ignore[assignment]


def _flatten(detail: Any) -> dict[str, list[str]]:
    """DRF's nested error details to {field: [messages]} with dotted paths for nesting."""
    out: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list):
            if all(not isinstance(v, (dict, list)) for v in value):
                out.setdefault(prefix or "non_field_errors", []).extend(str(v) for v in value)
            else:
                for index, sub in enumerate(value):
                    walk(f"{prefix}.{index}" if prefix else str(index), sub)
        else:
            out.setdefault(prefix or "non_field_errors", []).append(str(value))

    walk("", detail)
    return out


def _first_code(codes: Any) -> str:
    if isinstance(codes, dict):
        for value in codes.values():
            return _first_code(value)
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    return str(codes) if codes else "invalid"


def api_code(code: str) -> str:
    """DRF's generic field codes (min_value, max_length, naive, ...) become `invalid`."""
    return code if code in API_CODES else "invalid"


def problem_body(
    *, status_code: int, code: str, detail: str, errors: dict | None = None
) -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + code,
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
        "code": code,
        "errors": errors or {},
    }


def problem_response(
    *,
    status_code: int,
    code: str,
    detail: str,
    errors: dict | None = None,
    extra: dict | None = None,
    headers: dict | None = None,
) -> Response:
    body = problem_body(status_code=status_code, code=code, detail=detail, errors=errors)
    if extra:
        body.update(extra)
    return Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE, headers=headers)


def _all_codes(codes: Any) -> list[str]:
    if isinstance(codes, dict):
        return [c for value in codes.values() for c in _all_codes(value)]
    if isinstance(codes, list):
        return [c for value in codes for c in _all_codes(value)]
    return [str(codes)] if codes else []


def _database_problem(exc: Exception) -> Response:
    """The backstop for a database rule no check caught first: 409 or 400, never a 500."""
    set_rollback()
    logger.warning("A database rule refused a request the code let through: %s", exc, exc_info=exc)
    if isinstance(exc, ProtectedError | RestrictedError):
        return problem_response(
            status_code=409,
            code="protected",
            detail="Other records still refer to this one: remove or reassign them first.",
        )
    cause = type(exc.__cause__).__name__ if exc.__cause__ else ""
    if isinstance(exc, IntegrityError) and cause in {
        "UniqueViolation",
        "ExclusionViolation",
        "ForeignKeyViolation",
    }:
        return problem_response(
            status_code=409,
            code="conflict",
            detail="This conflicts with a record that already exists: change the value that must be unique.",
        )
    return problem_response(
        status_code=400,
        code="invalid",
        detail="A value is out of the range this service stores: check the numbers, dates and text lengths.",
    )


def problem_exception_handler(exc: Exception, context: dict) -> Response | None:
    if is_database_unavailable(exc):  # down or restarting: 503 with Retry-After, not a 500
        set_rollback()
        request = context.get("request")
        if request is not None:
            log_outage(request, exc)
        return problem_response(
            status_code=503,
            code=UNAVAILABLE_CODE,
            detail=UNAVAILABLE_DETAIL,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
        )
    if isinstance(exc, ServiceError):
        return problem_response(
            status_code=exc.status,
            code=exc.code,
            detail=exc.message,
            errors={exc.field: [exc.message]} if exc.field else {},
            extra=exc.extra,
        )
    if isinstance(exc, IntegrityError | DataError | ProtectedError | RestrictedError):
        return _database_problem(exc)
    if isinstance(exc, OverflowError) or (
        isinstance(exc, ValueError) and "out of range" in str(exc)
    ):  # date arithmetic past the calendar ("year 10000 is out of range"): a bound was missed
        set_rollback()
        logger.warning("Date arithmetic overflowed on a request", exc_info=exc)
        return problem_response(
            status_code=400,
            code="invalid",
            detail="A date or duration is too far out: use dates within a few years of now.",
        )
    if isinstance(exc, RequestDataTooBig):
        return problem_response(
            status_code=413,
            code="too_large",
            detail="The request body is too large: send a smaller one (split batches).",
            errors={"body": ["Too large."]},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    headers = {
        k: v for k, v in response.items() if k in {"WWW-Authenticate", "Retry-After", "Allow"}
    }
    if isinstance(exc, ProblemError):
        errors = {exc.field: [str(exc.detail)]} if exc.field else {}
        return problem_response(
            status_code=exc.status_code,
            code=exc.code,
            detail=str(exc.detail),
            errors=errors,
            extra=exc.extra,
            headers=headers,
        )
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        every_code = _all_codes(exc.get_codes())
        status_code = 400
        if every_code and all(c == "unique" for c in every_code):
            status_code, code = 409, "conflict"
        else:
            code = api_code(_first_code(exc.get_codes()))
        fields = ", ".join(k for k in errors if k != "non_field_errors")
        first = next(iter(errors.values()))[0] if errors else "The request is not valid."
        detail = f"Check the field(s) {fields}: {first}" if fields else first
        return problem_response(
            status_code=status_code, code=code, detail=detail, errors=errors, headers=headers
        )
    if isinstance(exc, exceptions.ParseError):
        detail = str(exc.detail) if not isinstance(exc.detail, (list, dict)) else "Malformed body."
        return problem_response(
            status_code=400,
            code="parse_error",
            detail=f"The request body could not be read: {detail}",
            errors={"body": [detail]},
            headers=headers,
        )
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else str(exc.default_code)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        code = (
            "not_authenticated"
            if isinstance(exc, exceptions.NotAuthenticated)
            else "authentication_failed"
        )
    detail = str(exc.detail) if not isinstance(exc.detail, (list, dict)) else "Error."
    return problem_response(
        status_code=response.status_code,
        code=str(code),
        detail=detail,
        errors={"body": [detail]} if code == "too_large" else None,
        headers=headers,
    )


# --- Django's own error pages, answered as problem+json under /api/ -------------------------


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/v1/") or request.path == "/api/v1"


def problem_json(*, status_code: int, code: str, detail: str, field: str | None = None):
    body = problem_body(
        status_code=status_code,
        code=code,
        detail=detail,
        errors={field: [detail]} if field else None,
    )
    return JsonResponse(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def api_handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        if _is_api(request):
            return problem_json(
                status_code=413,
                code="too_large",
                detail="The request body is too large: send a smaller one (split batches).",
                field="body",
            )
        return HttpResponse("Request body too large.", status=413, content_type="text/plain")
    if not _is_api(request):
        return defaults.bad_request(request, exception)  # type: ignore[arg-type]
    detail = (
        "The request was refused as malformed or unsafe (e.g. a host name not served here)."
        if isinstance(exception, SuspiciousOperation)
        else "The request is malformed."
    )
    return problem_json(status_code=400, code="invalid", detail=detail)


def api_handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not _is_api(request):
        return defaults.permission_denied(request, exception)  # type: ignore[arg-type]
    return problem_json(
        status_code=403,
        code="permission_denied",
        detail="You do not have permission to do this.",
    )


def api_handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not _is_api(request):
        return defaults.page_not_found(request, exception)  # type: ignore[arg-type]
    return problem_json(
        status_code=404,
        code="not_found",
        detail=f"There is no API endpoint at {request.path}: see /api/docs/ for the paths.",
    )


@csrf_exempt  # an API client has no CSRF token: the answer is a 404, not Django's CSRF page
def api_not_found(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """Any path under /api/ that no route takes: problem+json 404, whatever DEBUG says."""
    return api_handler404(request)


def api_handler500(request: HttpRequest) -> HttpResponse:
    # Called while the exception is handled: an outage raised outside a view (a middleware).
    unavailable = unavailable_response_for_current_exception(request)
    if unavailable is not None:
        return unavailable
    if not _is_api(request):
        return defaults.server_error(request)
    return problem_json(
        status_code=500,
        code="server_error",
        detail="Something went wrong on our side: try again later, and tell the operators if it persists.",
    )
