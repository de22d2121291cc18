"""Webhook delivery against a real HTTP receiver on 127.0.0.1 (aiohttp), which checks every signature.

Only the backoff sleep is replaced (recorded, not slept) so retries are fast; the HTTP exchange,
timeouts, redirects and address checks are real.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from services.notify.channels.webhook import (
    ATTEMPT_HEADER,
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    WebhookTarget,
    WebhookURLRejected,
    check_webhook_url,
    verify_signature,
)

SECRET = "whsec_integration_5f2a"
PAYLOAD = {"kind": "match_proposed", "match_id": "n1.o1", "score": 0.82, "need_title": "Semences résistantes"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """A webhook receiver: scripted answers per path, records what arrived and whether it verified."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    script: dict[str, list[Any]] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        verified = verify_signature(
            SECRET, request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER), body
        )
        self.received.append(Received(request.path, headers, body, verified))
        if not verified:
            return web.Response(status=401, text="bad signature")
        steps = self.script.get(request.path, [])
        action = steps.pop(0) if steps else 204
        if action == "slow":
            # Hold the request until teardown: longer than any sender timeout.
            await asyncio.wait_for(self.release.wait(), timeout=30)
            return web.Response(status=204)
        if isinstance(action, tuple) and action[0] == "redirect":
            raise web.HTTPFound(location=action[1])
        if isinstance(action, tuple) and action[0] == "retry-after":
            return web.Response(status=429, headers={"Retry-After": str(action[1])})
        return web.Response(status=int(action))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.port = runner.addresses[0][1]
    try:
        yield rec
    finally:
        rec.release.set()
        await runner.cleanup()


class Sleeps:
    """Records backoff delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def dead_port() -> int:
    """A port with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_sender(sleeps: Sleeps | None = None, **kw: Any) -> WebhookSender:
    options: dict[str, Any] = dict(
        allow_private=True, timeout_s=2.0, max_attempts=4, backoff_base_s=0.5, backoff_max_s=4.0,
        sleep=sleeps or Sleeps(), rng=random.Random(42),
    )
    options.update(kw)
    return WebhookSender(**options)


async def test_success_on_first_try_with_a_verifiable_signature(receiver: Receiver) -> None:
    sleeps = Sleeps()
    async with make_sender(sleeps) as sender:
        result = await sender.deliver(receiver.url("/hooks/ssm"), SECRET, PAYLOAD, "dlv-001")
    assert result.ok and result.attempts == 1 and result.status_code == 204 and result.error is None
    assert sleeps.delays == []
    [got] = receiver.on("/hooks/ssm")
    assert got.verified
    assert json.loads(got.body) == PAYLOAD
    assert got.headers[DELIVERY_ID_HEADER] == "dlv-001"
    assert got.headers[SIGNATURE_HEADER].startswith("v1=")
    assert abs(int(got.headers[TIMESTAMP_HEADER]) - time.time()) < 60
    assert got.headers["Content-Type"].startswith("application/json")
    assert got.headers["Host"] == f"127.0.0.1:{receiver.port}"


async def test_server_error_then_success_retries_with_backoff(receiver: Receiver) -> None:
    receiver.script["/flaky"] = [500, 503, 200]
    sleeps = Sleeps()
    async with make_sender(sleeps) as sender:
        result = await sender.deliver(receiver.url("/flaky"), SECRET, PAYLOAD, "dlv-002")
    assert result.ok and result.attempts == 3 and result.status_code == 200
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.5 and 0 <= sleeps.delays[1] <= 1.0  # full jitter under 0.5 * 2**n
    attempts = receiver.on("/flaky")
    assert [a.headers[ATTEMPT_HEADER] for a in attempts] == ["1", "2", "3"]
    assert {a.headers[DELIVERY_ID_HEADER] for a in attempts} == {"dlv-002"}  # same id: receivers de-duplicate
    assert all(a.verified for a in attempts) and len({a.body for a in attempts}) == 1


async def test_retry_after_is_honoured_up_to_the_cap(receiver: Receiver) -> None:
    receiver.script["/busy"] = [("retry-after", 3), 204]
    sleeps = Sleeps()
    async with make_sender(sleeps) as sender:
        result = await sender.deliver(receiver.url("/busy"), SECRET, PAYLOAD, "dlv-003")
    assert result.ok and result.attempts == 2
    assert sleeps.delays and 3 <= sleeps.delays[0] <= 4.0


async def test_dead_endpoint_fails_after_max_attempts() -> None:
    sleeps = Sleeps()
    async with make_sender(sleeps, max_attempts=3) as sender:
        result = await sender.deliver(f"http://127.0.0.1:{dead_port()}/gone", SECRET, PAYLOAD, "dlv-004")
    assert not result.ok and result.attempts == 3 and result.status_code is None
    assert result.error and "Connect" in result.error
    assert not result.permanent  # worth retrying later: dead-letter it
    assert len(sleeps.delays) == 2


async def test_persistent_server_error_fails_after_max_attempts(receiver: Receiver) -> None:
    receiver.script["/broken"] = [500] * 10
    async with make_sender(max_attempts=3) as sender:
        result = await sender.deliver(receiver.url("/broken"), SECRET, PAYLOAD, "dlv-005")
    assert not result.ok and result.attempts == 3 and result.status_code == 500 and result.error == "HTTP 500"
    assert len(receiver.on("/broken")) == 3


async def test_client_errors_are_final(receiver: Receiver) -> None:
    receiver.script["/gone"] = [410]
    sleeps = Sleeps()
    async with make_sender(sleeps) as sender:
        result = await sender.deliver(receiver.url("/gone"), SECRET, PAYLOAD, "dlv-006")
        wrong_secret = await sender.deliver(receiver.url("/auth"), "not-the-secret", PAYLOAD, "dlv-007")
    assert not result.ok and result.attempts == 1 and result.status_code == 410 and result.permanent
    assert not wrong_secret.ok and wrong_secret.status_code == 401 and wrong_secret.attempts == 1
    assert not receiver.on("/auth")[0].verified  # the receiver's check caught it
    assert sleeps.delays == []


async def test_slow_endpoint_times_out_without_delaying_a_healthy_one(receiver: Receiver) -> None:
    receiver.script["/slow"] = ["slow", "slow"]
    finished: dict[str, float] = {}
    async with make_sender(timeout_s=0.5, max_attempts=2) as sender:
        start = time.monotonic()

        async def run(target: WebhookTarget) -> Any:
            result = await sender.deliver(target.url, target.secret, target.payload, target.delivery_id)
            finished[target.delivery_id] = time.monotonic() - start
            return result

        slow, healthy = await asyncio.gather(
            run(WebhookTarget(receiver.url("/slow"), SECRET, PAYLOAD, "dlv-slow")),
            run(WebhookTarget(receiver.url("/healthy"), SECRET, PAYLOAD, "dlv-healthy")),
        )
    assert healthy.ok and healthy.attempts == 1
    assert not slow.ok and slow.attempts == 2 and slow.error and "timeout" in slow.error
    assert finished["dlv-healthy"] < 0.4  # did not wait for the slow one's 0.5 s deadline
    assert 0.9 <= finished["dlv-slow"] < 3.0  # two attempts of 0.5 s each, no more


async def test_deliver_many_is_concurrent_and_keeps_order(receiver: Receiver) -> None:
    receiver.script["/slow"] = ["slow"]
    targets = [
        WebhookTarget(receiver.url("/slow"), SECRET, PAYLOAD, "many-slow"),
        *(WebhookTarget(receiver.url(f"/ok/{i}"), SECRET, {**PAYLOAD, "i": i}, f"many-{i}") for i in range(5)),
    ]
    async with make_sender(timeout_s=0.5, max_attempts=1) as sender:
        start = time.monotonic()
        results = await sender.deliver_many(targets)
        elapsed = time.monotonic() - start
    assert [r.ok for r in results] == [False, True, True, True, True, True]
    assert elapsed < 1.5  # one deadline for all, not one per target
    assert len([r for r in receiver.received if r.path.startswith("/ok/")]) == 5


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.script["/moved"] = [("redirect", "/elsewhere")]
    sleeps = Sleeps()
    async with make_sender(sleeps) as sender:
        result = await sender.deliver(receiver.url("/moved"), SECRET, PAYLOAD, "dlv-008")
    assert not result.ok and result.status_code == 302 and result.attempts == 1 and result.permanent
    assert result.error and "/elsewhere" in result.error
    assert receiver.on("/elsewhere") == []
    assert sleeps.delays == []


async def test_private_url_is_refused_unless_allowed(receiver: Receiver) -> None:
    with pytest.raises(WebhookURLRejected):
        check_webhook_url(receiver.url("/hooks"), allow_private=False)
    async with make_sender(allow_private=False) as strict:
        refused = await strict.deliver(receiver.url("/hooks"), SECRET, PAYLOAD, "dlv-009")
    assert not refused.ok and refused.attempts == 0 and refused.permanent
    assert refused.error and refused.error.startswith("url rejected") and "loopback" in refused.error
    assert receiver.received == []

    check_webhook_url(receiver.url("/hooks"), allow_private=True)
    async with make_sender(allow_private=True) as lenient:
        allowed = await lenient.deliver(receiver.url("/hooks"), SECRET, PAYLOAD, "dlv-010")
    assert allowed.ok and len(receiver.on("/hooks")) == 1


async def test_connects_to_the_vetted_address_and_keeps_the_registered_host(receiver: Receiver) -> None:
    """`hooks.partner.test` does not exist in real DNS: success proves we dialled the vetted IP."""
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    async with make_sender(resolver=resolver) as sender:
        result = await sender.deliver(receiver.url("/pinned", host="hooks.partner.test"), SECRET, PAYLOAD, "dlv-011")
    assert result.ok
    assert lookups == ["hooks.partner.test"]
    assert receiver.on("/pinned")[0].headers["Host"] == f"hooks.partner.test:{receiver.port}"


async def test_dns_rebinding_after_registration_is_caught_at_delivery(receiver: Receiver) -> None:
    answers = {"hooks.partner.test": "93.184.215.14"}  # public when registered

    def resolve_sync(host: str, port: int) -> list[str]:
        return [answers[host]]

    async def resolver(host: str, port: int) -> list[str]:
        return [answers[host]]

    url = receiver.url("/rebind", host="hooks.partner.test")
    check_webhook_url(url, allow_private=False, resolve=resolve_sync)  # registration passes
    answers["hooks.partner.test"] = "127.0.0.1"  # ...then the tenant re-points the name
    async with make_sender(allow_private=False, resolver=resolver) as sender:
        result = await sender.deliver(url, SECRET, PAYLOAD, "dlv-012")
    assert not result.ok and result.attempts == 0 and result.permanent and "loopback" in (result.error or "")
    assert receiver.received == []


async def test_dns_failure_at_delivery_is_retried() -> None:
    calls = 0

    async def flaky(host: str, port: int) -> list[str]:
        nonlocal calls
        calls += 1
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    sleeps = Sleeps()
    async with make_sender(sleeps, max_attempts=3, resolver=flaky) as sender:
        result = await sender.deliver("https://hooks.partner.test/x", SECRET, PAYLOAD, "dlv-013")
    assert not result.ok and not result.permanent and calls == 3 and len(sleeps.delays) == 2
    assert result.error and result.error.startswith("dns")
