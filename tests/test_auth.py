"""POST /api/v1/auth/token and Bearer tokens."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory

URL = "/api/v1/auth/token"
PASSWORD = "pw-Testbed-2026!"  # tests.factories.UserFactory's
PROTECTED = "/api/v1/centers"
PROBLEM = "application/problem+json"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def private_throttle_cache(settings):
    """The login throttle counts in the default cache (Redis in tests): keep its count ours."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "test-auth",
        }
    }
    from django.core.cache import cache

    cache.clear()


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "status", "detail", "code", "errors"} <= set(body)
    return body


def test_it_gives_a_token_for_good_credentials(member):
    response = APIClient().post(URL, {"username": "member", "password": PASSWORD}, format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {"token": Token.objects.get(user=member).key}


def test_it_gives_the_same_token_twice(member):
    first = APIClient().post(URL, {"username": "member", "password": PASSWORD}).json()["token"]
    second = APIClient().post(URL, {"username": "member", "password": PASSWORD}).json()["token"]

    assert first == second


def test_it_accepts_a_form_post_too(member):
    response = APIClient().post(
        URL, {"username": "member", "password": PASSWORD}, format="multipart"
    )

    assert response.status_code == 200


def test_the_token_works_as_a_bearer_token(member):
    token = APIClient().post(URL, {"username": "member", "password": PASSWORD}).json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert client.get(PROTECTED).status_code == 200


def test_the_bearer_keyword_is_case_insensitive(member):
    token = APIClient().post(URL, {"username": "member", "password": PASSWORD}).json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {token}")

    assert client.get(PROTECTED).status_code == 200


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "member", "password": "wrong-password"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "member", "password": PASSWORD.upper()},
    ],
)
def test_it_refuses_bad_credentials_with_400_invalid_credentials(member, credentials):
    response = APIClient().post(URL, credentials)

    body = assert_problem(response, 400, "invalid_credentials")
    assert "password" in body["errors"]
    assert not Token.objects.exists()


def test_it_refuses_an_inactive_user(member):
    member.is_active = False
    member.save(update_fields=["is_active"])

    assert_problem(
        APIClient().post(URL, {"username": "member", "password": PASSWORD}),
        400,
        "invalid_credentials",
    )


def test_it_names_the_missing_fields(db):
    response = APIClient().post(URL, {}, format="json")

    body = assert_problem(response, 400, "invalid")
    assert {"username", "password"} <= set(body["errors"])


def test_it_refuses_a_call_without_a_token_with_401_not_authenticated(db):
    response = APIClient().get(PROTECTED)

    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-token", "Bearer two tokens", "Bearer"],
)
def test_it_refuses_a_bad_bearer_header_with_401_authentication_failed(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert_problem(client.get(PROTECTED), 401, "authentication_failed")


def test_it_refuses_the_token_of_a_disabled_user(api, member):
    client = api(member)
    member.is_active = False
    member.save(update_fields=["is_active"])

    assert_problem(client.get(PROTECTED), 401, "authentication_failed")


def test_it_refuses_a_deleted_token(api, member):
    client = api(member)
    Token.objects.filter(user=member).delete()

    assert_problem(client.get(PROTECTED), 401, "authentication_failed")


def test_it_throttles_password_guessing(db):
    UserFactory(username="target")
    client = APIClient()
    statuses = [
        client.post(URL, {"username": "target", "password": f"guess-{n}"}).status_code
        for n in range(31)
    ]

    assert statuses[:30] == [400] * 30
    response = client.post(URL, {"username": "target", "password": "guess-last"})
    assert_problem(response, 429, "throttled")
    assert "Retry-After" in response
