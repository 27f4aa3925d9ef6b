"""One signed HTTP POST of a webhook body (Standard Webhooks), with no redirect, a time limit and
a bounded read of the answer. Called by the delivery task, never while a transaction is open.

Headers: `webhook-id` (the event id, the same on every retry), `webhook-timestamp` (Unix seconds
of this attempt), `webhook-signature` (`v1,<base64 HMAC-SHA256>`, one per valid secret: during a
secret rotation both the new and the previous secret sign, space-separated).
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from dataclasses import dataclass

import urllib3
from django.conf import settings
from standardwebhooks.webhooks import Webhook
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from integrations.webhooks.addresses import AddressRefused, parse_target, resolve_checked

SNIPPET_BYTES = 2048
USER_AGENT = "testbed-webhooks/1.0 (+https://www.standardwebhooks.com/)"


@dataclass(frozen=True)
class SendResult:
    status: int | None  # HTTP status, None when no answer came
    body: str  # the first SNIPPET_BYTES of the answer, decoded leniently
    error: str  # why it failed ("" on 2xx)
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def sign(*, secrets: list[str], event_id: str, moment: dt.datetime, body: str) -> str:
    """The `webhook-signature` header: one `v1,...` per secret, space-separated."""
    utc = moment.astimezone(dt.UTC)  # the package reads the wall clock as UTC: give it UTC
    return " ".join(Webhook(secret).sign(event_id, utc, body) for secret in secrets if secret)


def _host_header(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return shown if port == default else f"{shown}:{port}"


def send(
    *, url: str, secrets: list[str], event_id: str, body: str, timeout: float | None = None
) -> SendResult:
    """POST `body` to `url`, signed with `secrets`; never raises for network or HTTP trouble."""
    limit = float(timeout if timeout is not None else settings.TESTBED_WEBHOOKS_TIMEOUT_SECONDS)
    started = time.monotonic()

    def result(status: int | None, text: str, error: str) -> SendResult:
        elapsed = int((time.monotonic() - started) * 1000)
        return SendResult(status, text, error[:500], elapsed)

    try:
        target = parse_target(url)
        address = resolve_checked(target)[0]
    except AddressRefused as refusal:
        return result(None, "", f"refused: {refusal}")
    except (socket.gaierror, UnicodeError):
        return result(None, "", "the host name does not resolve (DNS)")
    now = dt.datetime.now(dt.UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": _host_header(target.host, target.port, target.scheme),
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(secrets=secrets, event_id=event_id, moment=now, body=body),
    }
    pool: urllib3.HTTPConnectionPool
    urllib_timeout = urllib3.Timeout(connect=limit, read=limit)
    if (
        target.scheme == "https"
    ):  # connect to the checked address, verify the certificate of the name
        pool = urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=urllib_timeout,
            retries=False,
            maxsize=1,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            address, target.port, timeout=urllib_timeout, retries=False, maxsize=1
        )
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body.encode(),
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            raw = response.read(SNIPPET_BYTES, decode_content=False) or b""
        finally:
            response.release_conn()
            response.close()
        text = raw.decode("utf-8", errors="replace")
        status = response.status
        if 200 <= status < 300:
            return result(status, text, "")
        if 300 <= status < 400:
            location = response.headers.get("location", "")
            return result(
                status, text, f"answered a redirect to {location!r}: redirects are not followed"
            )
        return result(status, text, f"answered HTTP {status}")
    except NewConnectionError as error:  # before ConnectTimeoutError: urllib3 subclasses it
        reason = "connection refused" if "refused" in str(error).lower() else str(error)
        return result(None, "", f"could not connect: {reason}")
    except (ConnectTimeoutError, ReadTimeoutError):
        return result(None, "", f"no answer within {limit:g} s (timed out)")
    except SSLError as error:
        return result(None, "", f"TLS error: {error}")
    except ProtocolError as error:
        return result(None, "", f"the connection broke: {error}")
    except HTTPError as error:
        return result(None, "", f"HTTP error: {error}")
    finally:
        pool.close()
