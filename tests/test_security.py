"""HTTP security: client address behind proxies, no-store, security headers, `check --deploy`.

The production cases (DEBUG=0) run in a fresh interpreter with a production environment, as a
deployment would, since those settings are decided when the settings module is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from testbed.security import client_address, no_store

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "a-production-secret-that-is-long-enough-0123456789-abcdef",
    "ALLOWED_HOSTS": "testbed.example.kr",
    # Never connected to: the checks and requests below do not touch the database.
    "DATABASE_URL": "postgres://testbed:secret@db.invalid:5432/testbed",
    "CELERY_BROKER_URL": "memory://",
}
# Variables of the developer's shell that would change the production settings under test.
CLEARED = {
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "REDIS_URL",
    "CACHE_URL",
    "CELERY_RESULT_BACKEND",
    "TRUSTED_PROXIES",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "CSRF_TRUSTED_ORIGINS",
}


def run_production(args: list[str], tmp_path: Path, **variables: str):
    env = {key: value for key, value in os.environ.items() if key not in CLEARED}
    env.update(PRODUCTION, DJANGO_SETTINGS_MODULE="testbed.settings")
    env.update(TESTBED_VAR_DIR=str(tmp_path / "var"), STATIC_ROOT=str(tmp_path / "static"))
    env.update(variables)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


# --- client address ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "expected"),
    [
        # No proxy configured: X-Forwarded-For is the client's own claim and is ignored.
        ([], "198.51.100.7", "203.0.113.9", "198.51.100.7"),
        # A request that did not come through our proxy: ignored too.
        (["10.0.0.0/8"], "198.51.100.7", "203.0.113.9", "198.51.100.7"),
        # Through our proxy: the address it appended.
        (["10.0.0.0/8"], "10.0.0.5", "203.0.113.9", "203.0.113.9"),
        # The client's own entries to the left are skipped.
        (["10.0.0.0/8"], "10.0.0.5", "1.2.3.4, 203.0.113.9", "203.0.113.9"),
        # Two proxies of ours in a row.
        (["10.0.0.5", "10.0.0.6"], "10.0.0.5", "1.2.3.4, 203.0.113.9, 10.0.0.6", "203.0.113.9"),
        # Ports and IPv6 in the forms proxies write.
        (["10.0.0.0/8"], "10.0.0.5", "203.0.113.9:51234", "203.0.113.9"),
        (["10.0.0.0/8"], "10.0.0.5", "[2001:db8::1]:443", "2001:db8::1"),
        (["::1"], "::1", "2001:db8::7", "2001:db8::7"),
        (["10.0.0.0/8"], "::ffff:10.0.0.5", "203.0.113.9", "203.0.113.9"),
        # Garbage where the client address should be: the proxy is all we can vouch for.
        (["10.0.0.0/8"], "10.0.0.5", "not-an-address", "10.0.0.5"),
        # A proxy request without the header.
        (["10.0.0.0/8"], "10.0.0.5", "", "10.0.0.5"),
    ],
)
def test_client_address(settings, proxies, remote, forwarded, expected):
    settings.TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)

    assert client_address(request) == expected


# --- no-store ------------------------------------------------------------------------------


def test_no_store_marks_what_the_view_returns():
    @no_store
    def view(request):
        return HttpResponse("secret")

    response = view(RequestFactory().get("/"))

    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"


# --- headers on every response -------------------------------------------------------------


def test_every_page_has_the_security_headers(client, db):
    response = client.get("/api/v1/centers")

    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert "camera=()" in response["Permissions-Policy"]
    assert "geolocation=()" in response["Permissions-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/", "/admin/login/"])
def test_the_docs_and_admin_pages_have_no_inline_script(client, db, path):
    response = client.get(path)

    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>" not in html.replace(" ", "")
    assert " onchange=" not in html and " onclick=" not in html


def test_the_swagger_ui_script_is_served_from_this_origin(client, db):
    response = client.get("/api/docs/?script=")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in response.content.decode()


PROBE = """
import json, django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="testbed.example.kr")
secure = client.get("/api/v1/centers", secure=True)
plain = client.get("/api/v1/centers")
print(json.dumps({
    "secure": {k: secure.get(k) for k in (
        "Strict-Transport-Security", "Content-Security-Policy", "Permissions-Policy",
        "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy")},
    "secure_status": secure.status_code,
    "plain_status": plain.status_code,
    "plain_location": plain.get("Location"),
}))
"""


def probe(tmp_path: Path, **variables: str) -> dict:
    result = run_production(["-c", PROBE], tmp_path, **variables)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_sends_hsts_csp_and_permissions_policy_and_redirects_to_https(tmp_path):
    found = probe(tmp_path)

    headers = found["secure"]
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "camera=()" in headers["Permissions-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert found["secure_status"] == 401
    assert found["plain_status"] == 301
    assert found["plain_location"] == "https://testbed.example.kr/api/v1/centers"


def test_production_security_follows_the_environment(tmp_path):
    found = probe(
        tmp_path,
        SECURE_HSTS_SECONDS="600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="0",
        SECURE_HSTS_PRELOAD="1",
        SECURE_SSL_REDIRECT="0",
    )

    assert found["secure"]["Strict-Transport-Security"] == "max-age=600; preload"
    assert found["plain_status"] == 401


def test_production_trusts_x_forwarded_proto_only_behind_configured_proxies(tmp_path):
    code = """
import json, django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="testbed.example.kr", HTTP_X_FORWARDED_PROTO="https")
print(json.dumps(client.get("/api/v1/centers").status_code))
"""
    alone = run_production(["-c", code], tmp_path)
    behind = run_production(["-c", code], tmp_path, TRUSTED_PROXIES="127.0.0.1")

    assert alone.returncode == behind.returncode == 0, alone.stderr + behind.stderr
    assert alone.stdout.strip().splitlines()[-1] == "301"  # anyone could send that header
    assert behind.stdout.strip().splitlines()[-1] == "401"


def test_the_health_check_is_not_redirected(tmp_path):
    code = """
import django
django.setup()
from django.test import Client
print(Client(HTTP_HOST="localhost").get("/healthz").status_code)
"""
    result = run_production(["-c", code], tmp_path, ALLOWED_HOSTS="testbed.example.kr,localhost")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] != "301"


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = run_production(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
