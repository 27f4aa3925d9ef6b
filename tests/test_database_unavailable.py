"""PostgreSQL away answers 503 (problem+json under /api/, a bilingual page elsewhere), not 500.

The outage is real, not a stand-in: the default connection is pointed at a port nobody listens
on (psycopg's own "connection failed: ... Connection refused"), or the server is told to end
this very session (`pg_terminate_backend`, SQLSTATE 57P01) in the middle of a request. A query
the server refuses as wrong (an unknown column) is a bug and still answers 500.
"""

from __future__ import annotations

import contextlib
import json
import socket

import psycopg
import pytest
from django.db import InterfaceError, OperationalError, ProgrammingError, connection
from django.test import Client
from rest_framework.test import APIClient

from testbed.api.auth import token_for
from testbed.api.errors import API_CODES, api_handler500
from testbed.unavailable import is_database_unavailable
from tests.factories import OrganizationFactory, UserFactory, add_member, make_pool

PROBLEM = "application/problem+json"

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # released on close: nothing listens there now


@contextlib.contextmanager
def postgres_refusing_connections():
    """The next connection attempt goes to a closed port, as when PostgreSQL is stopped."""
    saved = (connection.settings_dict["HOST"], connection.settings_dict["PORT"])
    connection.close()
    connection.settings_dict["HOST"], connection.settings_dict["PORT"] = (
        "127.0.0.1",
        closed_port(),
    )
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["HOST"], connection.settings_dict["PORT"] = saved


@contextlib.contextmanager
def server_ends_the_session_on(table: str):
    """The first query touching `table` makes PostgreSQL terminate this session (57P01)."""

    def wrapper(execute, sql, params, many, context):
        if table in sql:
            return execute("SELECT pg_terminate_backend(pg_backend_pid())", None, many, context)
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(wrapper):
            yield
    finally:
        connection.close()  # the session is gone; the next query connects again


@contextlib.contextmanager
def query_bug_on(table: str):
    """The first query touching `table` names a column that does not exist (a real 42703)."""

    def wrapper(execute, sql, params, many, context):
        if table in sql:
            bad = f"SELECT no_such_column FROM {table}"  # noqa: S608 - the test's own constant
            return execute(bad, None, many, context)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield


def assert_unavailable_problem(response) -> dict:
    assert response.status_code == 503, response.content[:300]
    assert response["Content-Type"] == PROBLEM
    assert response["Retry-After"] == "5"
    body = json.loads(response.content)
    assert body["code"] == "service_unavailable" and body["code"] in API_CODES
    assert body["status"] == 503
    assert "retry" in body["detail"].lower()
    return body


@pytest.fixture
def member_token(transactional_db):
    org = OrganizationFactory(slug="acme", name="주식회사 에이크미")
    user = UserFactory(username="member")
    add_member(org, user, "member")
    make_pool(nodes=1, per_node=4, code="H100")
    return token_for(user)


# --- PostgreSQL stopped: every connection attempt is refused ---------------------------------


def test_it_answers_an_api_read_with_503_problem_json_when_postgres_is_down(member_token):
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_token}")

    with postgres_refusing_connections():
        response = client.get("/api/v1/pools")

    assert_unavailable_problem(response)
    assert client.get("/api/v1/pools").status_code == 200, "it recovers by itself"


def test_it_answers_a_booking_post_with_503_problem_json_when_postgres_is_down(member_token):
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_token}")
    body = {
        "resource": "H100",
        "start": "2030-05-06T10:00:00+09:00",
        "end": "2030-05-06T12:00:00+09:00",
        "quantity": 1,
    }

    with postgres_refusing_connections():
        response = client.post("/api/v1/bookings", body, format="json")

    assert_unavailable_problem(response)


def test_it_answers_a_portal_page_with_a_bilingual_503_page_when_postgres_is_down(
    member_token,
):
    client = Client(raise_request_exception=False)

    with postgres_refusing_connections():
        response = client.get("/")

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == "5"
    page = response.content.decode()
    assert '<html lang="ko">' in page
    assert "잠시 후 다시 시도해 주세요" in page
    assert "Temporarily unavailable" in page
    assert "Traceback" not in page and "psycopg" not in page and "5432" not in page
    assert client.get("/").status_code == 200, "it recovers by itself"


def test_healthz_answers_503_naming_the_database_when_postgres_is_down(member_token):
    client = Client(raise_request_exception=False)

    with postgres_refusing_connections():
        response = client.get("/healthz")

    assert response.status_code == 503
    assert json.loads(response.content)["database"] == "unavailable"
    assert json.loads(client.get("/healthz").content)["database"] == "ok"


# --- the server ends the session in the middle of a request ----------------------------------


def test_it_answers_503_when_the_server_ends_the_session_mid_request(member_token):
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_token}")

    with server_ends_the_session_on("equipment_acceleratorpool"):
        response = client.get("/api/v1/pools")

    assert_unavailable_problem(response)


def test_it_answers_a_portal_page_with_503_when_the_server_ends_the_session(member_token):
    client = Client(raise_request_exception=False)

    with server_ends_the_session_on("equipment_"):
        response = client.get("/")

    assert response.status_code == 503
    assert "Temporarily unavailable" in response.content.decode()


# --- a query bug is not an outage -------------------------------------------------------------


def test_a_query_bug_still_answers_500_under_the_api(member_token):
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_token}")

    with query_bug_on("equipment_acceleratorpool"):
        response = client.get("/api/v1/pools")

    assert response.status_code == 500
    assert response["Content-Type"] == PROBLEM
    assert json.loads(response.content)["code"] == "server_error"
    assert "Retry-After" not in response


def test_a_query_bug_still_answers_500_on_a_portal_page(member_token):
    client = Client(raise_request_exception=False)

    with query_bug_on("equipment_"):
        response = client.get("/")

    assert response.status_code == 500


# --- errors raised outside a view (a middleware) reach handler500 -----------------------------


@pytest.mark.parametrize("path", ["/api/v1/bookings", "/bookings/"])
def test_handler500_answers_503_for_an_outage_raised_outside_a_view(rf, path):
    try:
        try:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        except psycopg.OperationalError as exc:
            raise OperationalError(*exc.args) from exc  # as Django wraps it
    except OperationalError:
        response = api_handler500(rf.get(path))

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith(PROBLEM if path.startswith("/api/") else "text/html")


def test_handler500_still_answers_500_for_a_bug_raised_outside_a_view(rf):
    try:
        raise ProgrammingError("column no_such_column does not exist")
    except ProgrammingError:
        response = api_handler500(rf.get("/api/v1/bookings"))

    assert response.status_code == 500


# --- which errors are an outage ---------------------------------------------------------------


def wrapped(driver_error: Exception) -> Exception:
    """Django's OperationalError with the driver's error as its cause, as Django raises it."""
    try:
        try:
            raise driver_error
        except Exception as exc:
            raise OperationalError(*exc.args) from exc
    except OperationalError as django_error:
        return django_error


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("connection failed: connection to server at 127.0.0.1 refused"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CrashShutdown("terminating connection because of crash"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.TooManyConnections("sorry, too many clients already"),
        psycopg.errors.ConnectionFailure("connection failure"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_it_counts_connection_errors_as_an_outage(error):
    assert is_database_unavailable(wrapped(error))
    assert is_database_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.errors.UndefinedColumn("column no_such_column does not exist"),
        psycopg.errors.UniqueViolation("duplicate key"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_it_does_not_count_query_errors_as_an_outage(error):
    assert not is_database_unavailable(wrapped(error))
    assert not is_database_unavailable(error)


def test_it_counts_a_closed_connection_and_a_locked_sqlite_file_as_an_outage():
    assert is_database_unavailable(InterfaceError("connection already closed"))
    assert is_database_unavailable(OperationalError("database is locked"))
    assert not is_database_unavailable(OperationalError("no such table: booking_booking"))
    assert not is_database_unavailable(ValueError("connection refused"))
