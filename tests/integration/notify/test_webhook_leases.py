"""Webhook retries are persisted records, leases are renewed while a delivery is in flight, and one slow
receiver holds up no one: two delivery workers share one store, against real HTTP receivers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from services.notify.delivery import DeliveryStore, DeliveryWorker, webhook_retry_delay
from services.notify.subscriptions import SubscriptionStore
from ssmatch.mongo import make_client
from ssmatch.stack.processes import free_port
from tests.helpers import eventually, uid

pytestmark = [pytest.mark.integration]


class Receiver:
    """Per path: how long to wait before answering, and a script of statuses (the last one repeats)."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str, float]] = []  # (path, delivery id, monotonic time at arrival)
        self.done: dict[str, float] = {}
        self.attempts: list[tuple[str, str]] = []
        self.delay: dict[str, float] = {}
        self.script: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["name"]
        self.hits.append((path, request.headers["X-SSMatch-Delivery-Id"], time.monotonic()))
        self.attempts.append((path, request.headers["X-SSMatch-Attempt"]))
        await asyncio.sleep(self.delay.get(path, 0))
        steps = self.script.get(path, [(200, {})])
        status, headers = steps.pop(0) if len(steps) > 1 else steps[0]
        self.done[path] = time.monotonic()
        return web.Response(status=status, headers=headers)

    def on(self, path: str) -> list[tuple[str, str, float]]:
        return [h for h in self.hits if h[0] == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", r.port).start()
    yield r
    await runner.cleanup()


def record(org: str, hook: str, name: str, now: datetime) -> dict[str, Any]:
    return {"_id": f"match_decided:{name}:{org}:webhook:{hook}", "organization_id": org, "kind": "match_approved", "match_id": name,
            "event_id": uid(), "status": "pending", "attempts": 0, "created_at": now, "lease_until": None, "source": {},
            "channel": "webhook", "target": hook, "payload": {"kind": "match_approved", "match_id": name}, "deliver_at": now}


async def test_slow_and_retry_after_receivers_get_each_attempt_once_and_hold_up_no_one(make_settings: Any, receiver: Receiver) -> None:
    # lease 4 s, a receiver taking 12 s: without renewal the other worker would claim and send again (a
    # shorter lease made a loaded machine's slow store writes look like lost leases for the fast ones)
    settings = make_settings(webhook_allow_private=True, webhook_timeout_s=20, delivery_lease_s=4.0, delivery_poll_interval_s=0.1,
                             webhook_max_attempts=3, webhook_backoff_base_s=0.01)
    client = make_client(settings.mongodb_uri)
    store, subs = DeliveryStore(client, settings.notify_db), SubscriptionStore(client, settings.notify_db)
    await store.init()
    await subs.init()
    org = uid("org")
    hooks = {name: (await subs.add_webhook(org, f"http://127.0.0.1:{receiver.port}/{name}", None))["_id"] for name in ("slow", "busy", "fast")}
    receiver.delay["slow"] = 12.0
    receiver.script["busy"] = [(503, {"Retry-After": "2"}), (200, {})]
    workers = [DeliveryWorker(settings, store, subs), DeliveryWorker(settings, store, subs)]
    try:
        for w in workers:
            w.start()
        now = datetime.now(UTC)
        await store.add_many([record(org, hooks["slow"], "slow", now), record(org, hooks["busy"], "busy", now)])
        await eventually(lambda: asyncio.sleep(0, result=receiver.on("slow")), timeout=60, interval=0.02)
        # claimed while the slow one is in flight, by whichever worker: it goes out at once
        await store.add_many([record(org, hooks["fast"], f"fast{i}", datetime.now(UTC)) for i in range(5)])
        for w in workers:
            w.wake()

        async def busy_retry_persisted() -> dict[str, Any] | None:
            return await store.coll.find_one({"target": hooks["busy"], "status": "pending", "attempts": 1})

        retry = await eventually(busy_retry_persisted, timeout=60, interval=0.05)
        assert retry["deliver_at"] >= retry["updated_at"] + timedelta(seconds=1.9)  # the receiver's Retry-After, stored
        assert retry["last_error"] == "webhook: HTTP 503"

        async def all_sent() -> bool:
            return await store.coll.count_documents({"organization_id": org, "status": "sent"}) == 7

        await eventually(all_sent, timeout=90, interval=0.1)
        assert len(receiver.on("slow")) == 1, "the lease was renewed: no second worker sent the slow delivery again"
        fast = receiver.on("fast")
        assert len(fast) == 5 and len({h[1] for h in fast}) == 5
        assert max(h[2] for h in fast) < receiver.done["slow"], "fast deliveries did not wait for the slow receiver"
        busy = receiver.on("busy")
        assert len(busy) == 2 and busy[1][2] - busy[0][2] >= 1.9  # once refused, once after Retry-After
        assert {h[1] for h in busy} == {retry["_id"]}  # same delivery id across attempts: receivers can de-duplicate
        assert [a for p, a in receiver.attempts if p == "busy"] == ["1", "2"]
        sent = {d["_id"]: d async for d in store.coll.find({"organization_id": org})}
        assert sent[retry["_id"]]["attempts"] == 2
        assert sum(w.outcomes.get(("webhook", "sent"), 0) for w in workers) == 7
        assert sum(w.outcomes.get(("webhook", "retried"), 0) for w in workers) == 1
    finally:
        for w in workers:
            await w.stop()
        await client.drop_database(settings.notify_db)
        await client.close()


async def test_a_receiver_that_keeps_failing_is_retried_from_the_store_then_dead_lettered(make_settings: Any, receiver: Receiver) -> None:
    settings = make_settings(webhook_allow_private=True, webhook_timeout_s=2, delivery_poll_interval_s=0.05, webhook_max_attempts=3,
                             webhook_backoff_base_s=0.05)
    client = make_client(settings.mongodb_uri)
    store, subs = DeliveryStore(client, settings.notify_db), SubscriptionStore(client, settings.notify_db)
    await store.init()
    org = uid("org")
    hook = (await subs.add_webhook(org, f"http://127.0.0.1:{receiver.port}/down", None))["_id"]
    receiver.script["down"] = [(500, {})]
    worker = DeliveryWorker(settings, store, subs)
    try:
        await store.add_many([record(org, hook, "down", datetime.now(UTC))])
        worker.start()

        async def failed() -> dict[str, Any] | None:
            return await store.coll.find_one({"target": hook, "status": "failed"})

        doc = await eventually(failed, timeout=60)
        assert doc["attempts"] == 3 and len(receiver.on("down")) == 3
        assert "HTTP 500" in doc["last_error"]
        assert (await subs.webhooks.find_one({"_id": hook}))["failures"] == 3
    finally:
        await worker.stop()
        await client.drop_database(settings.notify_db)
        await client.close()


def test_retry_delay_honours_retry_after_and_caps_it() -> None:
    import random

    rng = random.Random(1)
    assert 0 <= webhook_retry_delay(1, 1.0, None, rng) <= 1.0
    assert webhook_retry_delay(1, 1.0, 120, rng) >= 120  # a receiver may ask for longer than our own backoff
    assert webhook_retry_delay(1, 1.0, 10**9, rng) == 3600  # ... up to an hour
    assert all(webhook_retry_delay(30, 1.0, None, rng) <= 300 for _ in range(50))
