"""DRF throttles that know who is calling: keyed on testbed.security.client_address.

DRF's own throttles identify a caller by X-Forwarded-For whenever it is present (or by
NUM_PROXIES), so a client that rotates that header gets a fresh allowance each time. These
classes use the one rule in testbed.security instead: X-Forwarded-For is read only from a
request that came through a configured trusted proxy (TRUSTED_PROXIES). Any throttle the API
adds (DEFAULT_THROTTLE_CLASSES, a view's throttle_classes) should be one of these.
"""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle

from testbed.security import client_address


class ClientAddressMixin:
    def get_ident(self, request: Any) -> str:
        return client_address(request)


class ClientAnonRateThrottle(ClientAddressMixin, AnonRateThrottle):
    pass


class ClientUserRateThrottle(ClientAddressMixin, UserRateThrottle):
    pass


class ClientScopedRateThrottle(ClientAddressMixin, ScopedRateThrottle):
    pass


class LoginRateThrottle(ClientAnonRateThrottle):
    """Sign-in attempts per client address (DEFAULT_THROTTLE_RATES["login"], 30/min)."""

    scope = "login"
