"""POST /api/v1/auth/token and Bearer tokens."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from knox.models import AuthToken
from rest_framework.test import APIClient

from testbed.models import AuditEntry
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


def sign_in(username: str = "member", password: str = PASSWORD) -> str:
    response = APIClient().post(URL, {"username": username, "password": password})
    assert response.status_code == 200, response.content
    return response.json()["token"]


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "status", "detail", "code", "errors"} <= set(body)
    return body


def test_it_gives_an_expiring_token_for_good_credentials(member):
    with time_machine.travel(dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC), tick=False):
        response = APIClient().post(
            URL, {"username": "member", "password": PASSWORD}, format="json"
        )

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"token", "expiry"}
    assert dt.datetime.fromisoformat(body["expiry"]) == dt.datetime(
        2026, 3, 2, 21, tzinfo=dt.UTC
    )  # TOKEN_TTL_HOURS=12


def test_it_stores_only_a_digest_of_the_token(member):
    token = sign_in()

    stored = AuthToken.objects.get(user=member)
    assert token not in {stored.digest, stored.token_key}
    assert len(stored.digest) == 128  # SHA-512


def test_each_sign_in_gives_its_own_token(member):
    first, second = sign_in(), sign_in()

    assert first != second
    assert bearer(first).get(PROTECTED).status_code == 200
    assert bearer(second).get(PROTECTED).status_code == 200


def test_it_marks_credential_responses_no_store(member):
    good = APIClient().post(URL, {"username": "member", "password": PASSWORD})
    bad = APIClient().post(URL, {"username": "member", "password": "wrong"})

    for response in (good, bad):
        assert response["Cache-Control"] == "no-store"
        assert response["Pragma"] == "no-cache"


def test_it_accepts_a_form_post_too(member):
    response = APIClient().post(
        URL, {"username": "member", "password": PASSWORD}, format="multipart"
    )

    assert response.status_code == 200


def test_the_token_works_as_a_bearer_token(member):
    assert bearer(sign_in()).get(PROTECTED).status_code == 200


def test_the_bearer_keyword_is_case_insensitive(member):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {sign_in()}")

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
    assert not AuthToken.objects.exists()


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
    AuthToken.objects.filter(user=member).delete()

    assert_problem(client.get(PROTECTED), 401, "authentication_failed")


def test_it_throttles_password_guessing(db, settings):
    settings.LOGIN_ACCOUNT_MAX_FAILURES = 1000  # the address limit, not the account's
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


# --- expiry and sign-out -------------------------------------------------------------------

SIGN_IN_TIME = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)


def test_a_token_older_than_its_lifetime_is_refused_with_sign_in_again(member):
    with time_machine.travel(SIGN_IN_TIME, tick=False) as traveller:
        client = bearer(sign_in())
        traveller.shift(dt.timedelta(hours=12, seconds=1))

        body = assert_problem(client.get(PROTECTED), 401, "authentication_failed")

    assert "expired" in body["detail"]
    assert "Sign in again" in body["detail"]
    assert not AuthToken.objects.filter(user=member).exists()


def test_a_five_year_old_token_is_refused(member):
    with time_machine.travel(SIGN_IN_TIME, tick=False) as traveller:
        client = bearer(sign_in())
        traveller.shift(dt.timedelta(days=5 * 365))

        assert_problem(client.get(PROTECTED), 401, "authentication_failed")


def test_using_a_token_keeps_it_alive_up_to_the_longest_lifetime(member):
    with time_machine.travel(SIGN_IN_TIME, tick=False) as traveller:
        client = bearer(sign_in())
        for _ in range(14):  # 14 x 11 h = 154 h, each use within 12 h of the one before
            traveller.shift(dt.timedelta(hours=11))
            assert client.get(PROTECTED).status_code == 200
        traveller.shift(dt.timedelta(hours=11))  # 165 h: renewal stops at 168 h after sign-in
        assert client.get(PROTECTED).status_code == 200
        traveller.shift(dt.timedelta(hours=3, seconds=1))  # 168 h + 1 s

        assert_problem(client.get(PROTECTED), 401, "authentication_failed")


def test_a_token_lifetime_follows_the_settings(member, settings):
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": dt.timedelta(hours=1)}
    with time_machine.travel(SIGN_IN_TIME, tick=False) as traveller:
        body = APIClient().post(URL, {"username": "member", "password": PASSWORD}).json()
        traveller.shift(dt.timedelta(hours=1, seconds=1))

        assert dt.datetime.fromisoformat(body["expiry"]) == SIGN_IN_TIME + dt.timedelta(hours=1)
        assert_problem(bearer(body["token"]).get(PROTECTED), 401, "authentication_failed")


def test_signing_in_clears_the_users_expired_tokens(member):
    with time_machine.travel(SIGN_IN_TIME, tick=False) as traveller:
        sign_in()
        traveller.shift(dt.timedelta(days=2))
        sign_in()

    assert AuthToken.objects.filter(user=member).count() == 1


def test_logout_revokes_the_token_it_was_sent_with(member):
    token, other = sign_in(), sign_in()

    response = bearer(token).post("/api/v1/auth/logout")

    assert response.status_code == 204
    assert response["Cache-Control"] == "no-store"
    body = assert_problem(bearer(token).get(PROTECTED), 401, "authentication_failed")
    assert "Sign in again" in body["detail"]
    assert bearer(other).get(PROTECTED).status_code == 200


def test_logout_all_revokes_every_token_of_the_user_only(member, manager):
    tokens = [sign_in(), sign_in(), sign_in()]
    colleague = sign_in("manager")

    response = bearer(tokens[0]).post("/api/v1/auth/logout-all")

    assert response.status_code == 200
    assert response.json() == {"revoked": 3}
    assert response["Cache-Control"] == "no-store"
    for token in tokens:
        assert_problem(bearer(token).get(PROTECTED), 401, "authentication_failed")
    assert bearer(colleague).get(PROTECTED).status_code == 200
    entry = AuditEntry.objects.get(action="auth.sign_out_everywhere")
    assert (entry.actor, entry.object_id, entry.data) == (
        member,
        str(member.pk),
        {"tokens_revoked": 3},
    )


@pytest.mark.parametrize("path", ["/api/v1/auth/logout", "/api/v1/auth/logout-all"])
def test_logout_needs_a_token(db, path):
    assert_problem(APIClient().post(path), 401, "not_authenticated")


@pytest.mark.parametrize("path", ["/api/v1/auth/logout", "/api/v1/auth/logout-all"])
def test_logout_with_an_api_key_is_refused_and_revokes_nothing(manager, org, path):
    from booking.services.api_keys import api_key_create

    _key, raw = api_key_create(
        actor=manager, organization=org, name="ci", scopes=["catalog:read"], channel="api"
    )
    token = sign_in("manager")

    response = bearer(raw).post(path)

    assert response.status_code == 403, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    assert "api-keys" in response.json()["detail"]
    assert bearer(token).get(PROTECTED).status_code == 200
    assert bearer(raw).get(PROTECTED).status_code == 200


# --- throttling by address ---------------------------------------------------------------

PROXY = "10.0.0.5"


def guesses(client: APIClient, count: int, username: str = "target", **headers) -> list[int]:
    return [
        client.post(URL, {"username": username, "password": f"guess-{n}"}, **headers).status_code
        for n in range(count)
    ]


def test_rotating_x_forwarded_for_does_not_escape_the_address_limit(db, settings):
    settings.LOGIN_ACCOUNT_MAX_FAILURES = 1000
    UserFactory(username="target")
    client = APIClient()
    for n in range(30):
        client.post(
            URL,
            {"username": "target", "password": f"guess-{n}"},
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
        )

    response = client.post(
        URL, {"username": "target", "password": "x"}, HTTP_X_FORWARDED_FOR="198.51.100.77"
    )

    assert_problem(response, 429, "throttled")


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(db, settings):
    settings.LOGIN_ACCOUNT_MAX_FAILURES = 1000
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]
    UserFactory(username="target")
    client = APIClient()
    first = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "203.0.113.1"}
    assert guesses(client, 30, **first) == [400] * 30
    assert_problem(
        client.post(URL, {"username": "target", "password": "x"}, **first), 429, "throttled"
    )

    second = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "203.0.113.2"}
    assert client.post(URL, {"username": "target", "password": "x"}, **second).status_code == 400
    # What the client wrote to the left of our proxy's entry changes nothing.
    spoofed = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "198.51.100.9, 203.0.113.1"}
    assert_problem(
        client.post(URL, {"username": "target", "password": "x"}, **spoofed), 429, "throttled"
    )


# --- throttling by account ---------------------------------------------------------------


def test_ten_wrong_passwords_lock_the_account_for_a_while(db):
    UserFactory(username="target")
    client = APIClient()
    with time_machine.travel(SIGN_IN_TIME, tick=False) as traveller:
        assert guesses(client, 10) == [400] * 10

        # From another address, and with the right password: still refused.
        response = client.post(
            URL, {"username": "target", "password": PASSWORD}, REMOTE_ADDR="192.0.2.44"
        )
        body = assert_problem(response, 429, "throttled")
        assert "this account" in body["detail"]
        assert 0 < int(response["Retry-After"]) <= 900
        assert response["Cache-Control"] == "no-store"

        traveller.shift(dt.timedelta(seconds=901))
        assert client.post(URL, {"username": "target", "password": PASSWORD}).status_code == 200


def test_an_account_lock_does_not_block_other_accounts_behind_the_same_address(db, member):
    UserFactory(username="target")
    client = APIClient()
    assert guesses(client, 10) == [400] * 10

    assert client.post(URL, {"username": "member", "password": PASSWORD}).status_code == 200


@pytest.mark.parametrize("variant", ["Target", " target ", "ＴＡＲＧＥＴ"])
def test_spelling_the_username_differently_counts_against_the_same_account(db, variant):
    UserFactory(username="target")
    client = APIClient()
    assert guesses(client, 10, username=variant) == [400] * 10

    response = client.post(URL, {"username": "target", "password": PASSWORD})

    assert_problem(response, 429, "throttled")


def test_a_successful_sign_in_clears_the_wrong_password_count(db):
    UserFactory(username="target")
    client = APIClient()
    assert guesses(client, 9) == [400] * 9
    assert client.post(URL, {"username": "target", "password": PASSWORD}).status_code == 200

    assert guesses(client, 9) == [400] * 9


def test_the_admin_login_counts_and_honours_the_same_account_lock(client, operator):
    for n in range(10):
        client.post("/admin/login/", {"username": "operator", "password": f"guess-{n}"})

    client.post("/admin/login/", {"username": "operator", "password": PASSWORD})

    assert "_auth_user_id" not in client.session
    assert_problem(
        APIClient().post(URL, {"username": "operator", "password": PASSWORD}), 429, "throttled"
    )
