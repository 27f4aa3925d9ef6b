"""Which URLs a webhook may be sent to: https on the public internet (no SSRF into our network).

An endpoint URL is checked when it is saved (its form, and the addresses its name resolves to
now) and again at every delivery (the name may resolve elsewhere since): every address must be
global unicast (an IPv6 address that embeds an IPv4 one, e.g. NAT64 64:ff9b::/96 or 6to4
2002::/16, counts as the IPv4 address it embeds), and the request then goes to the address that
was checked, never to a second lookup. Plain http:// and loopback targets are allowed only for local development and tests
(settings.DEBUG or TESTBED_WEBHOOKS_ALLOW_HTTP), and then only to localhost itself.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from testbed.errors import ServiceError

MAX_URL_LENGTH = 2000
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class AddressRefused(Exception):
    """The URL may not be called: the message says why and what to use instead."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # the name as written (for the Host header, SNI and the certificate check)
    port: int
    path: str  # path and query
    local: bool


def local_targets_allowed() -> bool:
    return bool(settings.DEBUG or getattr(settings, "TESTBED_WEBHOOKS_ALLOW_HTTP", False))


# IPv6 forms that carry an IPv4 address (a NAT64 gateway or 6to4 relay would forward to it):
# such an address is public only if the IPv4 address in it is.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: local use, never public
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d (and ::, ::1)
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 (SIIT)
EMBEDDING_LAST_32 = (NAT64_WELL_KNOWN, IPV4_COMPATIBLE, IPV4_TRANSLATED)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the embedding forms."""
    if ip.ipv4_mapped is not None:  # ::ffff:0:0/96
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002::/16
        return ip.sixtofour
    if ip.teredo is not None:  # 2001::/32: the client's address
        return ip.teredo[1]
    if any(ip in network for network in EMBEDDING_LAST_32):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL_USE:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return _is_public(embedded)
    return ip.is_global and not ip.is_multicast


def parse_target(url: str) -> Target:
    """The URL's parts, if its form is acceptable (AddressRefused otherwise)."""
    if len(url) > MAX_URL_LENGTH:
        raise AddressRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise AddressRefused("The URL is malformed (check the port number).") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise AddressRefused(
            "Give a full URL starting with https://, e.g. https://example.kr/hooks."
        )
    if parts.username or parts.password:
        raise AddressRefused(
            "Put no user name or password in the URL: verify the signature of each delivery instead."
        )
    if parts.fragment:
        raise AddressRefused("Leave the #fragment out: it is never sent to a server.")
    host = parts.hostname.lower().rstrip(".")
    local = host in LOCAL_NAMES or host.endswith(".localhost")
    if local and not local_targets_allowed():
        raise AddressRefused(
            "Webhooks are sent only to addresses on the public internet, not to localhost."
        )
    if parts.scheme != "https" and not local:
        raise AddressRefused("Webhook URLs must use https:// (plain http is not encrypted).")
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None and not _is_public(literal) and not (local and literal.is_loopback):
        raise AddressRefused(
            f"{host} is a private, loopback or reserved address: use a public https:// address."
        )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    default_port = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, host.strip("[]"), port or default_port, path, local)


def resolve_checked(target: Target) -> list[str]:
    """The addresses the host resolves to now, each one checked (AddressRefused otherwise).
    socket.gaierror propagates: the name does not resolve."""
    infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if _is_public(ip):
            continue
        if target.local and ip.is_loopback:
            continue
        raise AddressRefused(
            f"{target.host} resolves to {address}, a private, loopback or reserved address: "
            "webhooks are sent only to the public internet."
        )
    return addresses


def check_endpoint_url(url: str) -> str:
    """The URL, stripped, if a webhook may be registered for it (ServiceError on field `url`).

    A name that does not resolve yet is accepted (its deliveries fail until it does); one that
    resolves to a private address is refused now rather than at the first delivery."""
    url = (url or "").strip()
    try:
        target = parse_target(url)
        try:
            resolve_checked(target)
        except (socket.gaierror, UnicodeError):
            pass
    except AddressRefused as refusal:
        raise ServiceError(str(refusal), field="url") from None
    return url
