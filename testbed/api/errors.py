"""API errors as problem details (RFC 9457): `application/problem+json` with a stable `code`.

Shape: {"type", "title", "status", "detail", "code", "errors": {field: [messages]}}.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from testbed.errors import ServiceError

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
    415: "Unsupported media type",
    429: "Too many requests",
}


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


def problem_response(
    *,
    status_code: int,
    code: str,
    detail: str,
    errors: dict | None = None,
    extra: dict | None = None,
    headers: dict | None = None,
) -> Response:
    body = {
        "type": PROBLEM_BASE + code,
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
        "code": code,
        "errors": errors or {},
    }
    if extra:
        body.update(extra)
    return Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE, headers=headers)


def problem_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ServiceError):
        return problem_response(
            status_code=exc.status,
            code=exc.code,
            detail=exc.message,
            errors={exc.field: [exc.message]} if exc.field else {},
            extra=exc.extra,
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
        code = _first_code(exc.get_codes())
        if (
            code in {"invalid", "required", "null", "blank", "does_not_exist", "incorrect_type"}
            or not code
        ):
            code = "invalid"
        fields = ", ".join(k for k in errors if k != "non_field_errors")
        first = next(iter(errors.values()))[0] if errors else "The request is not valid."
        detail = f"Check the field(s) {fields}: {first}" if fields else first
        return problem_response(
            status_code=400, code=code, detail=detail, errors=errors, headers=headers
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
        status_code=response.status_code, code=str(code), detail=detail, headers=headers
    )
