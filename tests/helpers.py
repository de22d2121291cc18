"""Small test helpers: sample payloads and Kafka readers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from ssmatch.events import ItemPayload
from ssmatch.stack.processes import free_port

T = TypeVar("T")


def uid(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:12]


def item_payload(kind: str = "need", **kw: Any) -> ItemPayload:
    now = datetime.now(UTC)
    base: dict[str, Any] = dict(
        id=uid(kind[0]), kind=kind, organization_id=uid("org"), title="Drought-tolerant seed systems for smallholders",
        description="Train extension workers on seed multiplication.", keywords=["seeds"], sdgs=[2], sectors=["agriculture"],
        modalities=["capacity_development"], languages=["en"], country="MWI", status="open", revision=1,
        created_at=now, updated_at=now,
    )
    base.update(kw)
    return ItemPayload(**base)


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 60.0, interval: float = 0.1) -> T:
    """Poll an async check until it returns a truthy value; fail with the last value. The bound is
    generous: it only costs time when the check fails, and a loaded CI machine is slow."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def read_topic(bootstrap: str, topic: str, predicate: Callable[[Any], bool], want: int, timeout: float = 60.0) -> list[Any]:
    """Read a topic from the beginning (no group) until `want` records match `predicate`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=25)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(found) < want:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                found += [r for r in records if predicate(r)]
        return found
    finally:
        await consumer.stop()


async def serve_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve an aiohttp app on a free local port (a webhook receiver, a fake matcher); the caller
    ends it with `await runner.cleanup()`."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port
