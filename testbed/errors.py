"""The one exception services raise to refuse something, whatever the channel.

The API turns it into problem+json; the web pages and admin show `message` to the person.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refusal with a stable `code`, the input `field` at fault, and a message saying the fix."""

    status = 400

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        field: str | None = None,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.extra = extra or {}
        if status is not None:
            self.status = status


class NotFound(ServiceError):
    status = 404

    def __init__(self, message: str = "Not found.", *, field: str | None = None) -> None:
        super().__init__(message, code="not_found", field=field, status=404)


class PermissionDenied(ServiceError):
    status = 403

    def __init__(
        self, message: str, *, code: str = "permission_denied", field: str | None = None
    ) -> None:
        super().__init__(message, code=code, field=field, status=403)


class Conflict(ServiceError):
    status = 409

    def __init__(self, message: str, *, code: str = "conflict", field: str | None = None) -> None:
        super().__init__(message, code=code, field=field, status=409)
