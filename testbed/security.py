"""HTTP security helpers: the client's address behind trusted proxies, and no-store responses.

`client_address(request)` is the one rule for "who is calling" (throttles, logs): REMOTE_ADDR,
unless that is a configured trusted proxy (settings.TRUSTED_PROXIES), in which case the
right-most X-Forwarded-For entry that is not itself a trusted proxy. A client can put anything
it likes into X-Forwarded-For, so only what our own proxies appended is believed.

`no_store` (decorator) and `NoStoreMixin` (DRF views) mark responses that carry credentials
(tokens, API keys) as never to be stored by browsers or intermediaries.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(configured: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in configured)


def _parse_address(raw: str) -> IPAddress | None:
    """An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:80`."""
    text = raw.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def client_address(request: HttpRequest) -> str:
    """The address of the client that sent `request` (see the module docstring)."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    networks = _networks(tuple(getattr(settings, "TRUSTED_PROXIES", ()) or ()))
    peer = _parse_address(remote)
    if not networks or peer is None or not _trusted(peer, networks):
        return str(peer) if peer is not None else remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    client = peer
    for hop in reversed([part for part in forwarded.split(",") if part.strip()]):
        address = _parse_address(hop)
        if address is None:
            # Garbage to the left of our proxies came from the client: stop at the last hop
            # a trusted proxy vouched for.
            break
        client = address
        if not _trusted(address, networks):
            break
    return str(client)


NO_STORE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def mark_no_store(response: HttpResponseBase) -> HttpResponseBase:
    for header, value in NO_STORE_HEADERS.items():
        response[header] = value
    return response


ViewT = TypeVar("ViewT", bound=Callable[..., Any])


def no_store(view: ViewT) -> ViewT:
    """Decorate a view (function, DRF action method or `as_view()`) whose response carries a
    credential: `Cache-Control: no-store` and `Pragma: no-cache` on whatever it returns."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return mark_no_store(view(*args, **kwargs))

    return wrapper  # type: ignore[return-value]


class NoStoreMixin:
    """For DRF views that hand out or revoke credentials: every response, errors included,
    is marked no-store."""

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        return mark_no_store(response)
