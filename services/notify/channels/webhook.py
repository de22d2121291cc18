"""Outbound webhooks: signing, an address guard against SSRF, and a retrying, time-boxed sender.

Why it looks like this:

* Receivers must be able to tell our requests from forgeries and replays, so every attempt carries
  a fresh timestamp and an HMAC-SHA256 over ``"<timestamp>." + body`` (see ``WEBHOOKS.md``); the
  delivery id stays the same across attempts so receivers can de-duplicate.
* A tenant chooses the URL, so the URL is a way into our own network. We refuse anything that is
  not a public unicast address, at registration *and* at every attempt (DNS can change between the
  two: "DNS rebinding"), and we connect to the very address we vetted (the hostname is kept for the
  ``Host`` header and for TLS SNI/certificate checks), so a second, different DNS answer cannot
  slip in between the check and the connection. Redirects are never followed: a 3xx could point
  anywhere, including at an address the organization never registered.
* One slow or dead endpoint must not hold up anyone else: every attempt has a hard deadline, the
  sender does not read response bodies, and deliveries run concurrently (bounded by a semaphore
  that is released while a delivery sleeps between attempts).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from types import TracebackType
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-SSMatch-Timestamp"
SIGNATURE_HEADER = "X-SSMatch-Signature"
DELIVERY_ID_HEADER = "X-SSMatch-Delivery-Id"
ATTEMPT_HEADER = "X-SSMatch-Attempt"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300
MAX_URL_LENGTH = 2048

#: 4xx statuses that mean "try again later"; any other 4xx (and every 3xx) is final, because the
#: receiver understood the request and refused it (bad signature, gone, ...): retrying within the
#: backoff window cannot change that.
RETRYABLE_4XX = frozenset({408, 425, 429})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Ranges that are not public but that some Python versions' ``is_global``/``is_private`` miss.
_EXTRA_NON_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT (shared address space)
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "240.0.0.0/4",  # reserved
        "255.255.255.255/32",  # broadcast
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fec0::/10",  # deprecated site-local
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --------------------------------------------------------------------------------------------------
# Signing


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` under ``secret``.

    The timestamp is inside the MAC so a captured request cannot be replayed later with a new
    timestamp; the body is signed as the exact bytes sent, so receivers must verify before parsing.
    """
    mac = hmac.new(secret.encode("utf-8"), f"{int(timestamp)}.".encode("ascii") + body, hashlib.sha256)
    return mac.hexdigest()


def signature_headers(secret: str, timestamp: int, body: bytes, delivery_id: str) -> dict[str, str]:
    """The three headers that authenticate one attempt."""
    return {
        TIMESTAMP_HEADER: str(int(timestamp)),
        SIGNATURE_HEADER: f"{SIGNATURE_SCHEME}={sign_payload(secret, timestamp, body)}",
        DELIVERY_ID_HEADER: delivery_id,
    }


def verify_signature(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True if ``signature_header`` holds a valid ``v1=`` signature of ``body`` for that timestamp.

    Receivers' side of the scheme (also used by our tests). Rejects missing or malformed headers and
    timestamps further than ``tolerance_s`` from ``now`` (unix seconds; defaults to the clock), which
    bounds replays. The header may list several comma-separated signatures (``v1=a,v1=b``, e.g.
    during a secret rotation); any valid ``v1`` entry passes. Comparison is constant-time.
    """
    if not timestamp_header or not signature_header:
        return False
    try:
        timestamp = int(timestamp_header.strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign_payload(secret, timestamp, body).encode("ascii")
    valid = False
    for part in signature_header.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme != SIGNATURE_SCHEME:
            continue
        candidate = value.strip().encode("utf-8", "replace")
        # No early exit: the time taken does not depend on which entry matched.
        valid |= hmac.compare_digest(candidate, expected)
    return valid


# --------------------------------------------------------------------------------------------------
# Address guard


class WebhookURLRejected(ValueError):
    """A webhook URL we will not call; ``reason`` is safe to show to the organization."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookURLUnresolvable(WebhookURLRejected):
    """The host did not resolve. Final at registration; possibly transient at delivery time."""


Resolver = Callable[[str, int], Awaitable[list[str]]]
SyncResolver = Callable[[str, int], list[str]]


def _addresses_from_getaddrinfo(infos: Sequence[tuple[Any, ...]]) -> list[str]:
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def system_resolver(host: str, port: int) -> list[str]:
    """All addresses the system resolver gives for ``host`` (non-blocking)."""
    loop = asyncio.get_running_loop()
    return _addresses_from_getaddrinfo(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))


def system_resolver_sync(host: str, port: int) -> list[str]:
    return _addresses_from_getaddrinfo(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


def parse_webhook_url(url: str) -> httpx.URL:
    """Syntactic checks only: http(s), a host, no credentials. Raises ``WebhookURLRejected``."""
    if not isinstance(url, str) or not url.strip():
        raise WebhookURLRejected("empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookURLRejected(f"URL longer than {MAX_URL_LENGTH} characters")
    if any(ch in url for ch in "\r\n\t\x00 "):
        raise WebhookURLRejected("URL contains whitespace or control characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise WebhookURLRejected(f"invalid URL: {exc}") from None
    if parsed.scheme not in ("https", "http"):
        raise WebhookURLRejected(f"scheme {parsed.scheme or '(none)'!r} not allowed; use https or http")
    if not parsed.host:
        raise WebhookURLRejected("URL has no host")
    if parsed.userinfo:
        # Credentials in URLs leak into logs and proxies; the signing secret is the authentication.
        raise WebhookURLRejected("credentials in the URL are not allowed")
    return parsed


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def address_problem(address: str | IPAddress, allow_private: bool = False) -> str | None:
    """Why we must not connect to ``address``, or None if it is fine. Pure.

    Without ``allow_private`` only public unicast addresses pass. IPv6 forms that embed an IPv4
    address (IPv4-mapped, 6to4, Teredo, NAT64) are judged by the embedded address too, since that
    is where the packets end up. ``allow_private`` (tests, on-premise setups) admits loopback,
    private and link-local addresses, but never multicast or unspecified ones, which are never a
    valid HTTP destination.
    """
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return f"not an IP address: {address!r}"
    if ip.is_multicast:
        return f"multicast address {ip}"
    if ip.is_unspecified:
        return f"unspecified address {ip}"
    if allow_private:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            inner = address_problem(ip.ipv4_mapped)
            return f"{inner} (IPv4-mapped in {ip})" if inner else None
        embedded: list[ipaddress.IPv4Address] = []
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        for inner_ip in embedded:
            inner = address_problem(inner_ip)
            if inner:
                return f"{inner} (embedded in {ip})"
    for name, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return f"{name} address {ip}"
    for net in _EXTRA_NON_PUBLIC:
        if ip.version == net.version and ip in net:
            return f"non-public address {ip} (in {net})"
    if not ip.is_global:
        return f"non-public address {ip}"
    return None


def _vet(url: httpx.URL, addresses: Sequence[str], allow_private: bool) -> list[str]:
    if not addresses:
        raise WebhookURLUnresolvable(f"host {url.host!r} has no address")
    for address in addresses:
        problem = address_problem(address, allow_private)
        if problem:
            # Every answer must be acceptable: an attacker controls which one a client picks.
            raise WebhookURLRejected(f"host {url.host!r} resolves to a {problem}")
    return list(addresses)


def _host_for_dns(url: httpx.URL) -> str:
    return url.raw_host.decode("ascii")


def check_webhook_url(url: str, allow_private: bool, *, resolve: SyncResolver | None = None) -> None:
    """Raise ``WebhookURLRejected`` unless ``url`` may be registered as a webhook.

    Resolves the host (blocking; call it via ``asyncio.to_thread`` from async code, or use
    ``resolve_webhook_url``) and refuses it if any address is loopback, private, link-local,
    multicast, reserved or unspecified (IPv4 and IPv6, including IPv4-mapped IPv6) unless
    ``allow_private``. Passing here does not make later deliveries safe by itself: DNS can change,
    so ``WebhookSender`` checks again on every attempt.
    """
    parsed = parse_webhook_url(url)
    host = _host_for_dns(parsed)
    literal = _ip_literal(parsed.host)
    if literal is not None:
        _vet(parsed, [str(literal)], allow_private)
        return
    try:
        addresses = (resolve or system_resolver_sync)(host, _port(parsed))
    except (OSError, UnicodeError) as exc:
        raise WebhookURLUnresolvable(f"host {parsed.host!r} does not resolve ({exc})") from None
    _vet(parsed, addresses, allow_private)


async def resolve_webhook_url(
    url: str, allow_private: bool, resolver: Resolver | None = None
) -> tuple[httpx.URL, list[str]]:
    """Async ``check_webhook_url`` that also returns the parsed URL and the vetted addresses."""
    parsed = parse_webhook_url(url)
    literal = _ip_literal(parsed.host)
    if literal is not None:
        return parsed, _vet(parsed, [str(literal)], allow_private)
    try:
        addresses = await (resolver or system_resolver)(_host_for_dns(parsed), _port(parsed))
    except (OSError, UnicodeError) as exc:
        raise WebhookURLUnresolvable(f"host {parsed.host!r} does not resolve ({exc})") from None
    return parsed, _vet(parsed, addresses, allow_private)


def _host_header(url: httpx.URL) -> str:
    host = _host_for_dns(url)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{url.port}" if url.port is not None else host


# --------------------------------------------------------------------------------------------------
# Sending


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of one delivery (all attempts).

    ``attempts`` counts tries (a try that failed to resolve the host counts; 0 if the URL was
    refused before any request was sent). ``permanent`` says
    that trying again later will not help (URL refused, redirect, non-retryable 4xx), which the
    caller can use to mark the subscription as failing rather than only dead-lettering the event.
    """

    ok: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False
    retry_after_s: float | None = None  # the receiver's numeric Retry-After on the last attempt


@dataclass(frozen=True)
class WebhookTarget:
    """One delivery for ``WebhookSender.deliver_many``."""

    url: str
    secret: str
    payload: dict[str, Any]
    delivery_id: str


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes we sign and send: compact UTF-8 JSON with sorted keys (stable across retries)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=_json_default).encode(
        "utf-8"
    )


def _retry_after_s(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None  # HTTP-date form: ignore, our own backoff applies
    return value if value >= 0 else None


class _Retryable(Exception):
    """A failed try worth another: the status (None: no response), why, and the receiver's Retry-After."""

    def __init__(self, status: int | None, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.retry_after = status, error, retry_after


class WebhookSender:
    """Delivers signed JSON POSTs with per-attempt deadlines and retries.

    Retries (up to ``max_attempts`` in all) follow timeouts, connection errors, 5xx, 408, 425 and
    429, after a "full jitter" backoff: ``uniform(0, min(backoff_max_s, backoff_base_s * 2**(n-1)))``
    after the n-th failed attempt (a numeric ``Retry-After`` raises the delay, capped at
    ``backoff_max_s``). Jitter keeps many failing deliveries from retrying in lockstep against a
    receiver that is recovering. ``sleep``, ``rng``, ``clock`` and ``resolver`` are injectable so
    tests are fast and deterministic.

    Pass ``client`` to share one; otherwise the sender owns an ``httpx.AsyncClient`` that ignores
    proxy environment variables (a proxy would resolve the host itself, bypassing the guard) and
    keeps no idle connections (a pooled TLS connection must not be reused for another hostname on
    the same pinned address). Close it with ``aclose()`` or ``async with``.
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 5.0,
        max_attempts: int = 5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        allow_private: bool = False,
        max_concurrency: int = 32,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        resolver: Resolver | None = None,
        user_agent: str = "ssmatch-webhooks/1",
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if timeout_s <= 0 or backoff_base_s < 0 or backoff_max_s < 0 or max_concurrency < 1:
            raise ValueError("timeouts, backoffs and concurrency must be positive")
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.allow_private = allow_private
        self.user_agent = user_agent
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self._resolver = resolver
        self._sem = asyncio.Semaphore(max_concurrency)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=0),
        )

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def backoff_delay(self, failed_attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after the ``failed_attempt``-th (1-based) failed attempt."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** (failed_attempt - 1)))
        delay = self._rng.uniform(0, ceiling)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.backoff_max_s))
        return delay

    async def deliver_many(self, targets: Sequence[WebhookTarget]) -> list[DeliveryResult]:
        """Deliver concurrently; results in the order of ``targets``. Never raises for a target."""
        return list(
            await asyncio.gather(*(self.deliver(t.url, t.secret, t.payload, t.delivery_id) for t in targets))
        )

    async def deliver(self, url: str, secret: str, payload: dict[str, Any], delivery_id: str, earlier_attempts: int = 0) -> DeliveryResult:
        """POST ``payload`` to ``url``, retrying as the class doc says; never raises for HTTP trouble.

        ``url`` must be one the organization registered: the sender only guards the address class,
        it cannot know who owns a URL.
        """
        body = encode_body(payload)

        async def attempt_once(attempt: int) -> DeliveryResult:
            """One try: a result when it succeeded or can never succeed; _Retryable otherwise."""
            try:
                parsed, addresses = await resolve_webhook_url(url, self.allow_private, self._resolver)
            except WebhookURLUnresolvable as exc:
                raise _Retryable(None, f"dns: {exc.reason}") from None
            except WebhookURLRejected as exc:
                log.warning("webhook %s refused: %s", delivery_id, exc.reason)
                return DeliveryResult(False, attempt - 1, None, f"url rejected: {exc.reason}", permanent=True)
            # Rotate through the vetted addresses so one dead address does not fail every try.
            address = addresses[(attempt - 1) % len(addresses)]
            outcome = await self._attempt(parsed, address, body, secret, delivery_id, earlier_attempts + attempt)
            if not isinstance(outcome, httpx.Response):
                raise _Retryable(None, outcome)
            status = outcome.status_code
            if 200 <= status < 300:
                return DeliveryResult(True, attempt, status)
            if 300 <= status < 400:
                location = outcome.headers.get("location", "")
                return self._failed(delivery_id, attempt, status, f"redirect {status} to {location!r} not followed", permanent=True)
            if 400 <= status < 500 and status not in RETRYABLE_4XX:
                return self._failed(delivery_id, attempt, status, f"HTTP {status}", permanent=True)
            raise _Retryable(status, f"HTTP {status}", _retry_after_s(outcome))

        def wait(state: RetryCallState) -> float:
            failed = state.outcome.exception() if state.outcome else None
            return self.backoff_delay(state.attempt_number, failed.retry_after if isinstance(failed, _Retryable) else None)

        retrying = AsyncRetrying(stop=stop_after_attempt(self.max_attempts), wait=wait, sleep=self._sleep,
                                 retry=retry_if_exception_type(_Retryable), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    return await attempt_once(attempt.retry_state.attempt_number)
        except _Retryable as last:
            return self._failed(delivery_id, self.max_attempts, last.status, last.error, permanent=False, retry_after=last.retry_after)
        raise AssertionError("unreachable: tenacity either returned or re-raised")

    def _failed(
        self, delivery_id: str, attempts: int, status: int | None, error: str, *, permanent: bool, retry_after: float | None = None
    ) -> DeliveryResult:
        log.warning("webhook %s failed after %d attempt(s): %s", delivery_id, attempts, error)
        return DeliveryResult(False, attempts, status, error, permanent=permanent, retry_after_s=retry_after)

    async def _attempt(
        self, url: httpx.URL, address: str, body: bytes, secret: str, delivery_id: str, attempt: int
    ) -> httpx.Response | str:
        """One POST to the pinned ``address``; the response (body unread) or an error string."""
        headers = {
            "Host": _host_header(url),
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": self.user_agent,
            ATTEMPT_HEADER: str(attempt),
            **signature_headers(secret, int(self._clock()), body, delivery_id),
        }
        extensions: dict[str, Any] = {}
        if url.scheme == "https" and _ip_literal(url.host) is None:
            # TLS still names and verifies the registered hostname while we dial the vetted IP.
            extensions["sni_hostname"] = _host_for_dns(url)
        pinned = url.copy_with(host=address)
        async with self._sem:
            try:
                async with asyncio.timeout(self.timeout_s):
                    request = self._client.build_request(
                        "POST", pinned, content=body, headers=headers, extensions=extensions,
                        timeout=httpx.Timeout(self.timeout_s),
                    )
                    response = await self._client.send(request, stream=True, follow_redirects=False)
                    # The body is not read: a hostile receiver could stream forever. Closing the
                    # stream drops the connection.
                    await response.aclose()
                    return response
            except (TimeoutError, httpx.TimeoutException):
                return f"timeout after {self.timeout_s:g}s"
            except httpx.HTTPError as exc:
                return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
