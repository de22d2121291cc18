"""The webhook address guard: what a tenant may register and what the sender may dial.

Numeric hosts and `localhost` go through the real system resolver (no network needed); hostnames
that would need DNS use an injected resolver, so the tests are deterministic offline.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import pytest

from services.notify.channels.webhook import (
    WebhookURLRejected,
    WebhookURLUnresolvable,
    address_problem,
    check_webhook_url,
    resolve_webhook_url,
)

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"


def fixed(*addresses: str) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


def afixed(*addresses: str) -> Callable[[str, int], Awaitable[list[str]]]:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.1/hook",  # shorthand the resolver expands to 127.0.0.1
        "http://2130706433/hook",  # decimal form of 127.0.0.1
        "http://localhost:8080/hook",
        "https://10.0.0.5/hook",
        "https://172.16.3.4/hook",
        "https://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "http://100.64.1.1/hook",  # carrier-grade NAT
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
        "http://255.255.255.255/hook",
        "http://[::1]/hook",
        "http://[::]/hook",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
        "http://[fd00:ec2::254]/hook",  # AWS IPv6 metadata (unique local)
        "http://[ff02::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
        "http://[::ffff:10.1.2.3]/hook",  # IPv4-mapped private
        "http://[::ffff:169.254.169.254]/hook",
        "http://[2002:7f00:1::1]/hook",  # 6to4 wrapping 127.0.0.1
        "http://[64:ff9b::a00:1]/hook",  # NAT64 wrapping 10.0.0.1
        "http://[2001:db8::1]/hook",  # documentation
    ],
)
def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(WebhookURLRejected) as info:
        check_webhook_url(url, allow_private=False)
    assert info.value.reason  # a message the organization can read


@pytest.mark.parametrize(
    "url",
    [
        f"https://{PUBLIC_V4}/hook",
        f"http://{PUBLIC_V4}:8443/a/b?x=1",
        f"https://[{PUBLIC_V6}]/hook",
        f"https://[::ffff:{PUBLIC_V4}]/hook",  # mapped, but the real destination is public
    ],
)
def test_public_addresses_are_accepted(url: str) -> None:
    check_webhook_url(url, allow_private=False)


def test_hostnames_are_judged_by_every_address_they_resolve_to() -> None:
    check_webhook_url("https://hooks.partner.example/x", False, resolve=fixed(PUBLIC_V4, PUBLIC_V6))
    with pytest.raises(WebhookURLRejected, match="private"):
        # One bad answer is enough: the client could pick it.
        check_webhook_url("https://hooks.partner.example/x", False, resolve=fixed(PUBLIC_V4, "10.0.0.7"))
    with pytest.raises(WebhookURLRejected, match="loopback"):
        check_webhook_url("https://rebind.example/x", False, resolve=fixed("::ffff:127.0.0.1"))


def test_unresolvable_hosts_are_refused_with_a_distinct_error() -> None:
    def fail(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(WebhookURLUnresolvable):
        check_webhook_url("https://nowhere.invalid/x", False, resolve=fail)
    with pytest.raises(WebhookURLUnresolvable):
        check_webhook_url("https://empty.example/x", False, resolve=fixed())
    assert issubclass(WebhookURLUnresolvable, WebhookURLRejected)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://93.184.215.14/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("gopher://93.184.215.14:70/_", "scheme"),
        ("//93.184.215.14/x", "scheme"),
        ("https:///nohost", "host"),
        ("https://user:pw@93.184.215.14/x", "credentials"),
        ("https://93.184.215.14/a b", "whitespace"),
        ("https://93.184.215.14/x\r\nHost: evil", "whitespace"),
        ("", "empty"),
        ("https://93.184.215.14/" + "a" * 3000, "longer"),
    ],
)
def test_malformed_or_dangerous_urls_are_refused(url: str, fragment: str) -> None:
    with pytest.raises(WebhookURLRejected, match=fragment):
        check_webhook_url(url, allow_private=False)


def test_allow_private_admits_local_networks_but_never_multicast_or_unspecified() -> None:
    for url in ("http://127.0.0.1:9/x", "http://localhost/x", "http://10.1.1.1/x", "http://[::1]/x", "http://[fe80::1]/x"):
        check_webhook_url(url, allow_private=True)
    for url in ("http://0.0.0.0/x", "http://[::]/x", "http://224.0.0.1/x", "http://[ff02::1]/x"):
        with pytest.raises(WebhookURLRejected):
            check_webhook_url(url, allow_private=True)


async def test_async_resolution_returns_the_vetted_addresses() -> None:
    parsed, addresses = await resolve_webhook_url("https://hooks.partner.example:8443/x", False, afixed(PUBLIC_V4))
    assert addresses == [PUBLIC_V4]
    assert parsed.host == "hooks.partner.example" and parsed.port == 8443
    with pytest.raises(WebhookURLRejected):
        await resolve_webhook_url("https://hooks.partner.example/x", False, afixed("192.168.0.2"))
    _, local = await resolve_webhook_url("http://localhost:1/x", allow_private=True)  # real resolver
    assert local and all(address_problem(a, allow_private=True) is None for a in local)


@pytest.mark.parametrize(
    ("address", "word"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("169.254.1.1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("2002:a00:1::", "embedded"),
        ("not-an-ip", "not an IP"),
    ],
)
def test_address_problem_names_the_reason(address: str, word: str) -> None:
    problem = address_problem(address)
    assert problem is not None and word in problem


def test_address_problem_passes_public_unicast() -> None:
    assert address_problem(PUBLIC_V4) is None
    assert address_problem(PUBLIC_V6) is None
    assert address_problem("8.8.8.8") is None
