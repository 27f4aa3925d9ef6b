"""The database is away (down, restarting, refusing connections): answer 503, never a 500.

`is_database_unavailable(exc)` tells an outage from a bug: a connection that could not be made
or was lost (no SQLSTATE: the server never answered), SQLSTATE class 08 (connection
exception), 53300 (too many connections), 57P01-57P03 (administrator or crash shutdown, "the
database system is starting up / shutting down"), and an already closed connection
(`InterfaceError`). A query the server refused for what it said (syntax, a missing column, a
constraint: ProgrammingError, IntegrityError, ...) is not an outage and stays a 500 (or the 4xx
testbed/api/errors.py gives it).

The answer: `/api/...` gets 503 application/problem+json with code `service_unavailable`; any
other path a small Korean and English HTML page. Both carry `Retry-After`. Three places use it:
the DRF exception handler (API views), `DatabaseUnavailableMiddleware.process_exception` (any
other view, before Django's own 500 page), and `api_handler500` (errors raised in a middleware,
e.g. the session saved after the view). The response is built without the database or a
template, so it cannot fail the same way again.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
CODE = "service_unavailable"
DETAIL = (
    "The database cannot be reached right now (restarting or overloaded): "
    f"retry in {RETRY_AFTER_SECONDS} seconds; nothing was changed by this request."
)

# SQLSTATEs that mean "the server is not serving", not "your query is wrong".
UNAVAILABLE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08"})
# Drivers that give no SQLSTATE (SQLite) say it in words.
UNAVAILABLE_MESSAGES = (
    "connection refused",
    "connection failed",
    "could not connect",
    "server closed the connection",
    "connection already closed",
    "connection is closed",
    "terminating connection",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "database is locked",
    "unable to open database file",
)


def _sqlstate(exc: BaseException) -> tuple[bool, str | None]:
    """(whether a driver error with a `sqlstate` attribute was found, its SQLSTATE)."""
    seen: BaseException | None = exc
    for _ in range(4):  # Django's wrapper → psycopg's error (→ its own cause)
        if seen is None:
            break
        if hasattr(seen, "sqlstate") and hasattr(seen, "diag"):
            return True, getattr(seen, "sqlstate", None)
        seen = seen.__cause__
    return False, None


def is_database_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database is unreachable or not serving (see the module doc)."""
    if isinstance(exc, InterfaceError):
        return True  # the connection was closed under us
    if not isinstance(exc, OperationalError):
        try:
            import psycopg
        except ImportError:  # pragma: no cover - psycopg is a dependency
            return False
        if not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return False
        if isinstance(exc, psycopg.InterfaceError):
            return True
    has_driver_error, sqlstate = _sqlstate(exc)
    if has_driver_error:
        if sqlstate is None:
            return True  # the server never answered: connect failed or the socket broke
        return sqlstate in UNAVAILABLE_SQLSTATES or sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES
    message = str(exc).lower()
    return any(words in message for words in UNAVAILABLE_MESSAGES)


def is_api_path(path: str) -> bool:
    return path.startswith("/api/")


def log_outage(request: HttpRequest, exc: BaseException) -> None:
    logger.error(
        "Database unavailable on %s %s: answered 503 (%s)",
        request.method,
        request.path,
        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
    )


HTML_PAGE = """<!DOCTYPE html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>잠시 후 다시 시도해 주세요 · Temporarily unavailable</title>
</head>
<body>
<main>
<h1>잠시 후 다시 시도해 주세요</h1>
<p>지금은 데이터베이스에 연결할 수 없어 요청을 처리하지 못했습니다 (재시작 중이거나 과부하).
이 요청으로 바뀐 것은 없습니다. {seconds}초 뒤에 이 페이지를 새로 고쳐 주세요.
문제가 계속되면 운영자에게 알려 주세요.</p>
<div lang="en">
<h2>Temporarily unavailable</h2>
<p>The database cannot be reached right now (restarting or overloaded), so this request was
not carried out and nothing was changed. Reload this page in {seconds} seconds; if it
persists, tell the operators.</p>
</div>
</main>
</body>
</html>
"""


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 for a non-DRF path: problem+json under /api/, the bilingual page elsewhere."""
    if is_api_path(request.path):
        from testbed.api.errors import problem_json

        response: HttpResponse = problem_json(status_code=503, code=CODE, detail=DETAIL)
    else:
        response = HttpResponse(
            HTML_PAGE.format(seconds=RETRY_AFTER_SECONDS),
            status=503,
            content_type="text/html; charset=utf-8",
        )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def unavailable_response_for_current_exception(request: HttpRequest) -> HttpResponse | None:
    """From a handler500: the 503 response when the exception being handled is an outage."""
    exc = sys.exc_info()[1]
    if exc is None or not is_database_unavailable(exc):
        return None
    log_outage(request, exc)
    return unavailable_response(request)


class DatabaseUnavailableMiddleware:
    """A view that raised because the database is away answers 503 instead of Django's 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_unavailable(exception):
            return None
        log_outage(request, exception)
        return unavailable_response(request)
