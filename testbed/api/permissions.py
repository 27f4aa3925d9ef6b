"""Route-level permissions for every app's API: operators, and what an organisation API key may reach.

Organisation-level rules (who sees which organisation, booking or member) live in the access module,
booking/services/access.py; these classes only adapt them to DRF views. Each view says what a key
needs with `required_scopes` — {action or HTTP method: scope} — and a route that declares nothing
is closed to keys: a new endpoint cannot be reached by a key until someone decides it should be.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated

ANY_KEY = "*"  # any valid key of the organisation may use the route (e.g. its own profile)


def is_key_request(request) -> bool:
    return bool(getattr(request.auth, "is_api_key", False))


def is_operator_request(request) -> bool:
    """A staff user signed in as themselves; a key is never an operator."""
    user = request.user
    return bool(
        user and user.is_authenticated and user.is_staff and user.is_active
    ) and not is_key_request(request)


def required_scope(request, view) -> str | None:
    scopes = getattr(view, "required_scopes", None) or {}
    action = getattr(view, "action", None)
    if action and action in scopes:
        return scopes[action]
    return scopes.get(request.method.upper())


class KeyScopes(BasePermission):
    """People pass (their roles are checked by the access module); a key needs the route's scope."""

    message = "API keys cannot use this endpoint: sign in as a person."

    def has_permission(self, request, view) -> bool:
        if not is_key_request(request):
            return True
        scope = required_scope(request, view)
        if scope is None:
            self.message = getattr(
                view, "key_refusal", "API keys cannot use this endpoint: sign in as a person."
            )
            return False
        if scope == ANY_KEY or scope in request.auth.scopes:
            return True
        raise exceptions.PermissionDenied(
            f"This API key lacks the '{scope}' scope: ask your organisation's manager for a key "
            "with it.",
            code="insufficient_scope",
        )


class IsOperator(BasePermission):
    """Facility staff (Django staff users), signed in as themselves."""

    message = "Only facility operators may do this: ask an operator of the centre."

    def has_permission(self, request, view) -> bool:
        return is_operator_request(request)


class IsOperatorOrReadOnly(BasePermission):
    message = "Only facility operators may change the catalogue: ask an operator of the centre."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or is_operator_request(request)


# Operator-only routes: a person who is staff. (Keys are never operators.)
OPERATOR_ONLY = [IsAuthenticated, KeyScopes, IsOperator]
