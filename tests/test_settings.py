"""Settings from the environment: a bad value stops start-up, naming the variable and the fix.

Each case starts a fresh interpreter, as a deployment would, with the variables the settings
read cleared first (the test harness sets some of them for the suite itself).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_SOURCE = (ROOT / "testbed" / "settings.py").read_text()
# Every variable settings.py reads, found in its source so a new one is cleared too.
SETTINGS_VARIABLES = set(
    re.findall(
        r"""(?:env_\w+|url_from_env|database_from_env)\(\s*["']([A-Z][A-Z0-9_]*)["']""",
        SETTINGS_SOURCE,
    )
)
GOOD_SECRET = "a-production-secret-that-is-long-enough-0123456789"
PRODUCTION = {"DEBUG": "0", "SECRET_KEY": GOOD_SECRET, "ALLOWED_HOSTS": "testbed.example.kr"}

LOAD_SETTINGS = "import django; from django.conf import settings; settings.DATABASES"


def run_with(code: str, tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE="testbed.settings",
        TESTBED_VAR_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(ROOT),
    )
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_it_knows_which_variables_the_settings_read():
    assert {
        "DEBUG",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
    } <= SETTINGS_VARIABLES


BAD_VALUES = [
    ({"DEBUG": "maybe"}, ["DEBUG"], ["not a boolean", "1, true, yes, on"]),
    (
        {"DATABASE_URL": "mysql://x"},
        ["DATABASE_URL"],
        ["not a supported database URL", "postgres://"],
    ),
    ({"DATABASE_URL": "postgres://host"}, ["DATABASE_URL"], ["names no database", "/testbed"]),
    (
        {"DATABASE_URL": "postgres://u@host:port/db"},
        ["DATABASE_URL"],
        ["could not be read", "postgres://"],
    ),
    ({"DATABASE_URL": "sqlite://"}, ["DATABASE_URL"], ["names no file", "sqlite:////"]),
    (
        {"DEBUG": "0", "ALLOWED_HOSTS": "testbed.example.kr"},
        ["SECRET_KEY"],
        ["DEBUG is off", "token_urlsafe"],
    ),
    (
        {"DEBUG": "0", "SECRET_KEY": GOOD_SECRET},
        ["ALLOWED_HOSTS"],
        ["DEBUG is off", "testbed.example.kr"],
    ),
    (
        {
            **PRODUCTION,
            "SECRET_KEY": "dev-only-insecure-secret-key-change-me-for-any-real-deployment",
        },
        ["SECRET_KEY"],
        ["development key", "secret value"],
    ),
    ({"SECRET_KEY": "too-short"}, ["SECRET_KEY"], ["shorter than 32", "long random string"]),
    ({"ALLOWED_HOSTS": " , "}, ["ALLOWED_HOSTS"], ["set but empty", "comma-separated"]),
    ({"REDIS_URL": "http://x"}, ["REDIS_URL"], ["scheme 'http'", "redis://"]),
    ({"CELERY_BROKER_URL": "ftp://x"}, ["CELERY_BROKER_URL"], ["scheme 'ftp'", "redis://"]),
    ({"REDIS_URL": "redis://"}, ["REDIS_URL"], ["names no host", "redis://127.0.0.1:6379/0"]),
    ({"LOG_LEVEL": "LOUD"}, ["LOG_LEVEL"], ["not a level", "WARNING"]),
    (PRODUCTION, ["DATABASE_URL"], ["DEBUG is off", "postgres://"]),
    (
        {"TESTBED_LOCK_TIMEOUT_MS": "abc"},
        ["TESTBED_LOCK_TIMEOUT_MS"],
        ["not a whole number", "e.g. 2000"],
    ),
    (
        {"TESTBED_LOCK_TIMEOUT_MS": "1"},
        ["TESTBED_LOCK_TIMEOUT_MS"],
        ["too small", "10 or more"],
    ),
    (
        {"TESTBED_PENDING_SWEEP_SECONDS": "soon"},
        ["TESTBED_PENDING_SWEEP_SECONDS"],
        ["not a whole number"],
    ),
    (
        {
            **PRODUCTION,
            "DATABASE_URL": "postgres://u@db:5432/x",
            "SESSION_COOKIE_SECURE": "sometimes",
        },
        ["SESSION_COOKIE_SECURE"],
        ["not a boolean"],
    ),
    (
        {"TRUSTED_PROXIES": "10.0.0.5,proxy.local"},
        ["TRUSTED_PROXIES"],
        ["'proxy.local'", "not an IP address or network", "172.16.0.0/12"],
    ),
    ({"SECURE_PROXY_SSL_HEADER": "X Proto"}, ["SECURE_PROXY_SSL_HEADER"], ["X-Forwarded-Proto"]),
    ({"TOKEN_TTL_HOURS": "0"}, ["TOKEN_TTL_HOURS"], ["too small", "1 or more"]),
    (
        {"TOKEN_TTL_HOURS": "24", "TOKEN_MAX_TTL_HOURS": "12"},
        ["TOKEN_MAX_TTL_HOURS"],
        ["shorter than TOKEN_TTL_HOURS=24"],
    ),
    ({"TOKEN_AUTO_REFRESH": "perhaps"}, ["TOKEN_AUTO_REFRESH"], ["not a boolean"]),
    ({"LOGIN_RATE": "lots"}, ["LOGIN_RATE"], ["not a rate", "30/min"]),
    ({"LOGIN_ACCOUNT_MAX_FAILURES": "0"}, ["LOGIN_ACCOUNT_MAX_FAILURES"], ["too small"]),
    (
        {**PRODUCTION, "DATABASE_URL": "postgres://u@db:5432/x", "SECURE_HSTS_SECONDS": "-1"},
        ["SECURE_HSTS_SECONDS"],
        ["too small", "0 or more"],
    ),
    (
        {**PRODUCTION, "DATABASE_URL": "postgres://u@db:5432/x", "SECURE_SSL_REDIRECT": "https"},
        ["SECURE_SSL_REDIRECT"],
        ["not a boolean"],
    ),
]


@pytest.mark.parametrize(
    ("variables", "names", "hints"),
    [
        pytest.param(
            *case, id=f"{case[1][0]}:{','.join(f'{k}={v[:12]}' for k, v in case[0].items())}"
        )
        for case in BAD_VALUES
    ],
)
def test_it_stops_start_up_on_a_bad_value(tmp_path, variables, names, hints):
    result = run_with(LOAD_SETTINGS, tmp_path, **variables)

    assert result.returncode != 0, f"{variables} was accepted"
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("testbed.env.SettingError:"), result.stderr
    for expected in [*names, *hints]:
        assert expected in message, f"{expected!r} missing from: {message}"
    assert re.search(rf"\b(set {names[0]}|use|give|add)\b", message), (
        "the message must say what to do"
    )


def test_it_stops_manage_py_with_the_same_message(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE="testbed.settings",
        TESTBED_VAR_DIR=str(tmp_path / "var"),
        DEBUG="maybe",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_it_defaults_to_embedded_sqlite_in_wal_mode_in_seoul_in_korean(tmp_path):
    code = """
import json, django
django.setup()
from django.conf import settings
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode")
    journal = cursor.fetchone()[0]
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "name": str(db["NAME"]), "options": db["OPTIONS"], "journal": journal,
    "time_zone": settings.TIME_ZONE, "language": settings.LANGUAGE_CODE, "use_tz": settings.USE_TZ,
    "debug": settings.DEBUG, "broker": settings.CELERY_BROKER_URL,
    "lock_timeout_ms": settings.TESTBED_LOCK_TIMEOUT_MS,
}))
"""
    result = run_with(code, tmp_path)

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["engine"] == "django.db.backends.sqlite3"
    assert found["name"] == str(tmp_path / "var" / "testbed.sqlite3")
    assert found["options"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in found["options"]["init_command"]
    assert found["journal"] == "wal"
    assert (found["time_zone"], found["language"], found["use_tz"]) == ("Asia/Seoul", "ko", True)
    assert found["debug"] is True
    assert found["broker"] == "filesystem://"
    assert found["lock_timeout_ms"] == 2000


def test_it_accepts_a_production_environment(tmp_path):
    code = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "host": db["HOST"], "port": db["PORT"], "name": db["NAME"],
    "debug": settings.DEBUG, "hosts": settings.ALLOWED_HOSTS, "broker": settings.CELERY_BROKER_URL,
    "cache": settings.CACHES["default"]["BACKEND"], "secure_cookies": settings.SESSION_COOKIE_SECURE,
}))
"""
    result = run_with(
        code,
        tmp_path,
        **{**PRODUCTION, "ALLOWED_HOSTS": "testbed.example.kr, localhost"},
        DATABASE_URL="postgres://testbed:pw@db.internal:5432/testbed",
        REDIS_URL="redis://cache.internal:6379/0",
    )

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert (found["engine"], found["host"], found["port"], found["name"]) == (
        "testbed.postgresql",
        "db.internal",
        5432,
        "testbed",
    )
    assert found["debug"] is False
    assert found["hosts"] == ["testbed.example.kr", "localhost"]
    assert found["broker"] == "redis://cache.internal:6379/0"
    assert found["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert found["secure_cookies"] is True


def test_it_keeps_the_cache_off_the_broker_database():
    from testbed.env import SettingError, next_redis_db

    assert next_redis_db("redis://cache.internal:6379/0") == "redis://cache.internal:6379/1"
    assert next_redis_db("redis://:pw@h:6379") == "redis://:pw@h:6379/1"
    with pytest.raises(SettingError, match="CACHE_URL"):
        next_redis_db("redis://h:6379/15")
