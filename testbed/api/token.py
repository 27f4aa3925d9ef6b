"""Sign-in tokens: POST /api/v1/auth/token, /auth/logout and /auth/logout-all.

Sign-in is limited per client address (LoginRateThrottle, 30/min) and per account
(testbed.login_guard: 10 wrong passwords in 15 minutes); both answer 429 with Retry-After.
Every response here is `Cache-Control: no-store`.
"""

from __future__ import annotations

from django.contrib.auth import authenticate, user_logged_in, user_logged_out
from django.contrib.auth import logout as session_logout
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from testbed.api.auth import token_issue, tokens_revoke
from testbed.api.errors import ProblemError
from testbed.api.permissions import KeyScopes
from testbed.api.serializers import FlatSerializer
from testbed.api.throttles import LoginRateThrottle
from testbed.login_guard import login_wait_seconds
from testbed.security import NoStoreMixin


class TokenRequestSerializer(FlatSerializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class AccountThrottled(exceptions.Throttled):
    default_detail = "Too many sign-in attempts."


KEY_REFUSAL = (
    "This signs out a sign-in token; an organisation API key is revoked with "
    "POST /api/v1/organizations/{slug}/api-keys/{id}/revoke."
)


def _refuse_api_keys(request) -> None:
    if request.auth is not None and not isinstance(request.auth, AuthToken):
        raise exceptions.PermissionDenied(KEY_REFUSAL)


class TokenView(NoStoreMixin, APIView):
    """Exchange a username and password for an API token that expires."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginRateThrottle]

    def throttled(self, request, wait):
        raise exceptions.Throttled(
            wait=wait,
            detail="Too many sign-in attempts from this address: wait and try again.",
        )

    @extend_schema(
        request=TokenRequestSerializer,
        responses={
            200: inline_serializer(
                "TokenResponse",
                {"token": serializers.CharField(), "expiry": serializers.DateTimeField()},
            )
        },
        tags=["auth"],
    )
    def post(self, request):
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["username"]
        wait = login_wait_seconds(username=username)
        if wait:
            raise AccountThrottled(
                wait=wait,
                detail=(
                    "Too many wrong passwords for this account: wait and try again, or ask "
                    "your organisation manager to reset the password."
                ),
            )
        user = authenticate(
            request, username=username, password=serializer.validated_data["password"]
        )
        if user is None:
            raise ProblemError(
                "Username or password is wrong: check both, or ask your organisation manager to reset it.",
                code="invalid_credentials",
                field="password",
            )
        instance, token = token_issue(user=user)
        user_logged_in.send(sender=user.__class__, request=request, user=user)
        return Response(
            {
                "token": token,
                "expiry": serializers.DateTimeField().to_representation(instance.expiry),
            }
        )


class LogoutView(NoStoreMixin, APIView):
    """Revoke the token this request was sent with (a browser session is signed out)."""

    permission_classes = [IsAuthenticated, KeyScopes]  # no scope opens these to keys
    key_refusal = KEY_REFUSAL

    @extend_schema(
        request=None, responses={204: OpenApiResponse(description="Signed out.")}, tags=["auth"]
    )
    def post(self, request):
        _refuse_api_keys(request)
        user = request.user
        if isinstance(request.auth, AuthToken):
            tokens_revoke(user=user, token=request.auth)
            user_logged_out.send(sender=user.__class__, request=request, user=user)
        else:
            session_logout(request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(NoStoreMixin, APIView):
    """Revoke every sign-in token of the signed-in user, on every device."""

    permission_classes = [IsAuthenticated, KeyScopes]  # no scope opens these to keys
    key_refusal = KEY_REFUSAL

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer("LogoutAllResponse", {"revoked": serializers.IntegerField()})
        },
        tags=["auth"],
    )
    def post(self, request):
        _refuse_api_keys(request)
        user = request.user
        revoked = tokens_revoke(user=user)
        user_logged_out.send(sender=user.__class__, request=request, user=user)
        if request.auth is None:
            session_logout(request)
        return Response({"revoked": revoked})
