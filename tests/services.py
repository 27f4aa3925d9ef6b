"""pytest plugin (loaded with -p before Django starts): find PostgreSQL and Redis.

`make test` sets DATABASE_URL to the local PostgreSQL by default. When a service cannot be
reached, the tests marked `postgres` or `redis` are skipped with one loud line saying what
and why, and the rest run on SQLite. Under CI (CI=true) or TESTBED_REQUIRE_SERVICES=1, a
missing service fails the run instead.
"""

from __future__ import annotations

import os
import socket
import tempfile
from urllib.parse import urlparse

import pytest

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/testbed"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"  # the cache takes /15

REQUIRED = os.environ.get("CI", "").lower() in {"1", "true", "yes"} or os.environ.get(
    "TESTBED_REQUIRE_SERVICES", ""
) in {"1", "true", "yes"}

problems: dict[str, str] = {}


def _postgres_reason(url: str) -> str | None:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        return f"psycopg is not importable ({exc})"
    parsed = urlparse(url)
    dsn = url.replace(parsed.path, "/postgres", 1) if parsed.path else url
    try:
        with psycopg.connect(
            dsn.replace("postgres://", "postgresql://", 1), connect_timeout=3
        ) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {parsed.hostname}:{parsed.port or 5432} did not answer ({str(exc).strip()[:120]})"
    return None


def _redis_reason(url: str) -> str | None:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=2
        ) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(16).startswith(b"+PONG"):
                return "Redis answered, but not PONG"
    except OSError as exc:
        return f"Redis at {parsed.hostname}:{parsed.port or 6379} did not answer ({exc})"
    return None


database_url = os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
redis_url = os.environ.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
os.environ.setdefault("CELERY_BROKER_URL", redis_url)
# Each test run gets its own queue, so two runs on one Redis never take each other's tasks
# (a worker would look the booking up in the wrong test database).
os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"testbed-test-{os.getpid()}")
os.environ.setdefault("TESTBED_INTEGRATIONS_QUEUE", f"testbed-test-integrations-{os.getpid()}")

if database_url.startswith(("postgres://", "postgresql://")):
    reason = _postgres_reason(database_url)
    if reason:
        problems["postgres"] = reason
        fallback = os.path.join(tempfile.mkdtemp(prefix="testbed-"), "test.sqlite3")
        os.environ["DATABASE_URL"] = f"sqlite:///{fallback}"
else:
    problems["postgres"] = f"DATABASE_URL is not PostgreSQL ({database_url.split(':')[0]})"

reason = _redis_reason(redis_url)
if reason:
    problems["redis"] = reason
    os.environ["CELERY_BROKER_URL"] = "memory://"
    os.environ["REDIS_URL"] = ""
    os.environ["CELERY_RESULT_BACKEND"] = ""


def pytest_configure(config: pytest.Config) -> None:
    if problems and REQUIRED:
        lines = "; ".join(f"{name}: {why}" for name, why in problems.items())
        raise pytest.UsageError(
            f"Services are required (CI or TESTBED_REQUIRE_SERVICES=1) but not reachable: {lines}. "
            "Start them (see README, 'Tests') or unset TESTBED_REQUIRE_SERVICES."
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for name, why in problems.items():
        marker = pytest.mark.skip(reason=f"{name} unavailable: {why}")
        for item in items:
            if name in item.keywords:
                item.add_marker(marker)


def _loud_line() -> str | None:
    if not problems:
        return None
    parts = "; ".join(
        f"tests marked '{name}' SKIPPED because {why}" for name, why in problems.items()
    )
    return f"!!! testbed: {parts} !!!"


def pytest_report_header(config: pytest.Config) -> str:
    line = _loud_line()
    return (
        line
        or f"testbed: PostgreSQL and Redis reachable ({os.environ['DATABASE_URL'].split('@')[-1]})"
    )


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    line = _loud_line()
    if line:
        terminalreporter.write_line(line, red=True, bold=True)
