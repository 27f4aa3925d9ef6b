"""Authentication: `Authorization: Bearer <token>` for user tokens and organisation API keys."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token


class BearerTokenAuthentication(TokenAuthentication):
    """A user's token, or an organisation API key (prefix `tbk_`), sent as a Bearer token."""

    keyword = "Bearer"

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() != self.keyword.lower().encode():
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed(
                "Send the header as `Authorization: Bearer <token>` with one token and no spaces in it."
            )
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(
                "The token has characters a token never has."
            ) from None
        if key.startswith("tbk_"):
            from booking.services.api_keys import api_key_authenticate

            return api_key_authenticate(raw_key=key)
        return self.authenticate_credentials(key)

    def authenticate_credentials(self, key):
        try:
            token = Token.objects.select_related("user").get(key=key)
        except Token.DoesNotExist:
            raise exceptions.AuthenticationFailed(
                "This token is not valid: get a new one with POST /api/v1/auth/token."
            ) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("This user account is disabled: ask an operator.")
        return (token.user, token)


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "testbed.api.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
