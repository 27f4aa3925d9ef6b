"""SSRF: webhooks go to https on the public internet only, checked on save and at delivery."""

from __future__ import annotations

import socket

import pytest

from integrations.webhooks.addresses import check_endpoint_url
from integrations.webhooks.sender import send
from integrations.webhooks.services import new_secret
from testbed.errors import ServiceError


def _refused(url: str) -> str:
    with pytest.raises(ServiceError) as caught:
        check_endpoint_url(url)
    assert caught.value.field == "url"
    return caught.value.message


@pytest.fixture
def production(settings):
    settings.TESTBED_WEBHOOKS_ALLOW_HTTP = False
    settings.DEBUG = False
    return settings


@pytest.fixture
def fake_dns(monkeypatch):
    """Names the test makes up resolve where it says (no real DNS on the test machines)."""
    answers: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            family = socket.AF_INET6 if ":" in answers[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_it_accepts_a_public_https_url(production, fake_dns):
    fake_dns["hooks.acme.kr"] = "211.234.10.20"
    assert check_endpoint_url(" https://hooks.acme.kr/testbed?x=1 ") == (
        "https://hooks.acme.kr/testbed?x=1"
    )


def test_it_accepts_a_name_that_does_not_resolve_yet(production):
    assert check_endpoint_url("https://not-yet.invalid/hook") == "https://not-yet.invalid/hook"


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.5/hook",
        "https://192.168.1.1/hook",
        "https://172.16.0.1/hook",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://100.64.0.1/hook",  # carrier-grade NAT
        "https://0.0.0.0/hook",
        "https://[::1]/hook",
        "https://[fd00::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://224.0.0.1/hook",
    ],
)
def test_it_refuses_private_loopback_and_reserved_addresses(production, url):
    assert "public" in _refused(url)


def test_it_refuses_localhost_in_production(production):
    assert "localhost" in _refused("https://localhost:8443/hook")
    assert "localhost" in _refused("http://127.0.0.1:8000/hook")


def test_it_refuses_a_name_that_resolves_to_a_private_address(production, fake_dns):
    fake_dns["intranet.acme.kr"] = "10.20.30.40"
    assert "10.20.30.40" in _refused("https://intranet.acme.kr/hook")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.acme.kr/hook", "https"),
        ("ftp://hooks.acme.kr/hook", "https://"),
        ("hooks.acme.kr/hook", "https://"),
        ("https://user:pw@hooks.acme.kr/hook", "password"),
        ("https://hooks.acme.kr:99999/hook", "port"),
        ("https://hooks.acme.kr/" + "a" * 2000, "2000"),
    ],
)
def test_it_refuses_a_malformed_or_plain_http_url(production, url, says):
    assert says in _refused(url)


def test_it_allows_plain_http_to_localhost_only_for_development(settings):
    settings.TESTBED_WEBHOOKS_ALLOW_HTTP = True
    assert check_endpoint_url("http://127.0.0.1:8765/hook") == "http://127.0.0.1:8765/hook"
    assert check_endpoint_url("http://localhost:8765/hook") == "http://localhost:8765/hook"
    assert "https" in _refused("http://hooks.acme.kr/hook")  # elsewhere still https only
    assert "public" in _refused("https://10.0.0.5/hook")


@pytest.mark.parametrize(
    "url",
    [
        "https://[64:ff9b::7f00:1]/x",  # NAT64 (well-known prefix) of 127.0.0.1
        "https://[64:ff9b::a9fe:a9fe]/x",  # NAT64 of 169.254.169.254 (cloud metadata)
        "https://[64:ff9b:1::d3ea:a14]/x",  # local-use NAT64: never public
        "https://[2002:a00:1::1]/x",  # 6to4 of 10.0.0.1
        "https://[2002:7f00:1::]/x",  # 6to4 of 127.0.0.1
        "https://[::ffff:127.0.0.1]/x",  # IPv4-mapped
        "https://[::ffff:0:a00:1]/x",
        "https://[::10.0.0.1]/x",  # IPv4-compatible (deprecated)
        "https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/x",  # Teredo, client 10.0.0.1
    ],
)
def test_it_refuses_ipv6_forms_of_private_ipv4_addresses(production, url):
    assert "public" in _refused(url)


def test_it_refuses_a_name_resolving_to_a_nat64_loopback_at_save_and_at_delivery(
    production, fake_dns
):
    fake_dns["sneaky.acme.kr"] = "64:ff9b::7f00:1"
    assert "64:ff9b::7f00:1" in _refused("https://sneaky.acme.kr/hook")
    sent = send(url="https://sneaky.acme.kr/hook", secrets=[new_secret()], event_id="m", body="{}")
    assert sent.status is None and sent.error.startswith("refused") and "private" in sent.error


def test_it_accepts_ipv6_forms_of_public_ipv4_addresses(production):
    assert check_endpoint_url("https://[64:ff9b::d3ea:a14]/x") == "https://[64:ff9b::d3ea:a14]/x"
    assert check_endpoint_url("https://[2002:d3ea:a14::1]/x") == "https://[2002:d3ea:a14::1]/x"
