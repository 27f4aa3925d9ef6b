"""Reading settings from the environment, with errors that name the variable and the fix.

A bad value must stop start-up at once with a message a person can act on, never become a
silent default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class SettingError(ImproperlyConfigured):
    """A setting read from the environment has a value we cannot use."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingError(
        f"{name}={raw!r} is not a boolean: set {name} to one of 1, true, yes, on or 0, false, no, off."
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(
            f"{name}={raw!r} is not a whole number: set {name} to e.g. {default}."
        ) from None
    if minimum is not None and value < minimum:
        raise SettingError(f"{name}={value} is too small: set {name} to {minimum} or more.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise SettingError(
            f"{name} is set but empty: give a comma-separated list, e.g. {name}=testbed.example.kr,localhost."
        )
    return items


def database_from_env(name: str, default_sqlite_path: Path) -> dict[str, Any]:
    """Parse DATABASE_URL into Django's DATABASES entry.

    Supported: postgres:// (or postgresql://) and sqlite:///path. SQLite runs in WAL mode with
    IMMEDIATE transactions, so writers serialise and the locking rule holds without row locks.
    """
    import dj_database_url

    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        raw = f"sqlite:///{default_sqlite_path}"
    scheme = urlparse(raw).scheme
    if scheme not in {"postgres", "postgresql", "pgsql", "sqlite"}:
        raise SettingError(
            f"{name}={raw!r} is not a supported database URL: use postgres://USER:PASSWORD@HOST:5432/NAME "
            f"or sqlite:///ABSOLUTE/PATH.sqlite3."
        )
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(raw, conn_max_age=0))
    except Exception as exc:  # dj_database_url raises several kinds for malformed URLs
        raise SettingError(
            f"{name}={raw!r} could not be read ({exc}): use postgres://USER:PASSWORD@HOST:5432/NAME."
        ) from exc
    if config["ENGINE"] == "django.db.backends.sqlite3":
        path = config.get("NAME") or ""
        if not path or path == ":memory:":
            raise SettingError(
                f"{name}={raw!r} names no file: use sqlite:////absolute/path/testbed.sqlite3 "
                "(an in-memory database cannot be shared with the Celery worker)."
            )
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"
                " PRAGMA foreign_keys=ON;"
            ),
        }
        config["TEST"] = {"NAME": str(Path(path).with_name("test_" + Path(path).name))}
    else:
        if not config.get("NAME"):
            raise SettingError(
                f"{name}={raw!r} names no database: add it after the host, e.g. /testbed."
            )
        # Django's backend with a health check that needs no round trip (testbed/postgresql).
        config["ENGINE"] = "testbed.postgresql"
        options = config.setdefault("OPTIONS", {})
        # A database behind a network partition answers 503 in seconds, not after TCP's timeout.
        options.setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5, minimum=1))
        if env_bool("DB_PREPARED_STATEMENTS", True):
            # Server-side binding lets psycopg prepare a statement after it ran `prepare_threshold`
            # times on a connection: PostgreSQL then skips parsing and planning it (measured in
            # docs/benchmarks.md). Turn off (DB_PREPARED_STATEMENTS=0) behind a pooler that cannot
            # keep prepared statements per client, e.g. PgBouncer in transaction mode before 1.21.
            options["server_side_binding"] = True
            options["prepare_threshold"] = env_int("DB_PREPARE_THRESHOLD", 2, minimum=0)
    return config


def url_from_env(name: str, default: str, *, schemes: set[str], need_host: bool = False) -> str:
    raw = os.environ.get(name, default)
    parsed = urlparse(raw)
    if parsed.scheme not in schemes:
        wanted = ", ".join(sorted(f"{s}://" for s in schemes))
        raise SettingError(f"{name}={raw!r} has scheme {parsed.scheme!r}: use one of {wanted}.")
    if need_host and not parsed.hostname:
        raise SettingError(
            f"{name}={raw!r} names no host: use e.g. {parsed.scheme}://127.0.0.1:6379/0."
        )
    return raw


def next_redis_db(url: str) -> str:
    """The same Redis server, database number + 1 (redis://h:6379/0 → redis://h:6379/1)."""
    parsed = urlparse(url)
    path = parsed.path.strip("/")
    number = int(path) if path.isdigit() else 0
    if number >= 15:
        raise SettingError(
            f"REDIS_URL={url!r} uses database {number}, the last one: set CACHE_URL to another Redis database."
        )
    return parsed._replace(path=f"/{number + 1}").geturl()


def env_networks(name: str) -> list[str]:
    """A comma-separated list of IP addresses or CIDR networks (unset or empty: none).

    Returned as the normalised strings (e.g. `10.0.0.0/8`) so the setting stays plain data.
    """
    import ipaddress

    raw = os.environ.get(name, "")
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise SettingError(
                f"{name} has {item!r}, which is not an IP address or network: give a "
                f"comma-separated list such as {name}=10.0.0.5,172.16.0.0/12."
            ) from None
    return networks
