"""Notify's guarantees on the real broker and store: one inbox entry per (fact, recipient, channel)
when the worker is SIGKILLed mid-batch and restarted, and when a topic is re-read from offset 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.notify.agents import notify_consumer
from services.notify.directory import Directory
from services.notify.inbox import InboxStore
from ssmatch.events import MatchDecidedPayload, make_event
from ssmatch.mongo import make_client
from ssmatch.stack.processes import free_port
from tests.helpers import eventually, uid

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
TOPIC = "ssmatch.decisions"
PARTITIONS = 4


def decided(tag: str, i: int) -> bytes:
    mid = f"{tag}n{i}.f{i}"
    p = MatchDecidedPayload(match_id=mid, need_id=f"{tag}n{i}", offer_id=f"f{i}", decision="approve", decided_by="b",
                            need_organization_id=f"{tag}-office-{i % 7}", offer_organization_id=f"{tag}-provider-{i % 5}", score=0.5)
    return make_event("match.decided", "match", mid, p, producer="test").to_bytes()


async def send_sentinels(producer: AIOKafkaProducer, tag: str) -> None:
    """One event per partition after the others: once all are stored, every partition was read past ours."""
    for partition in range(PARTITIONS):
        await producer.send_and_wait(TOPIC, value=decided(f"{tag}-sentinel{partition}", 0), partition=partition)


def notify_process(settings: Any) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers, MONGODB_URI=settings.mongodb_uri,
        NOTIFY_PORT=str(free_port()), SSMATCH_NOTIFY_DB=settings.notify_db, SSMATCH_CATALOG_DB=settings.catalog_db,
        SSMATCH_GROUP_PREFIX=settings.group_prefix, SSMATCH_ADMIN_TOKEN="x", SSMATCH_LOG_FORMAT="text",
    )
    return subprocess.Popen([sys.executable, "-m", "services.notify"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_sigkill_mid_batch_and_replay_from_zero_neither_lose_nor_duplicate(make_settings: Any, flood_servers: Any) -> None:
    servers = flood_servers
    settings = make_settings(group_prefix=uid("g"), kafka_bootstrap_servers=servers.kafka_bootstrap)
    tag = uid("t")
    n = 4000
    client = make_client(settings.mongodb_uri)
    inbox = InboxStore(client, settings.notify_db)
    await inbox.init()
    mine = {"organization_id": {"$regex": f"^{tag}-"}}
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap, linger_ms=5)
    await producer.start()
    proc = worker = None
    try:
        futures = [await producer.send(TOPIC, value=decided(tag, i), key=f"{tag}n{i}".encode()) for i in range(n)]
        for f in futures:
            await f
        proc = notify_process(settings)

        async def some_stored() -> int:
            count = await inbox.coll.count_documents(mine)
            return count if count >= 300 else 0

        await eventually(some_stored, timeout=60, interval=0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        at_kill = await inbox.coll.count_documents(mine)
        assert at_kill < 2 * n, "the worker finished before it could be killed mid-way"

        proc = notify_process(settings)
        await send_sentinels(producer, tag)

        async def all_stored() -> bool:
            return await inbox.coll.count_documents(mine) == 2 * n + 2 * PARTITIONS

        await eventually(all_stored, timeout=90, interval=0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)

        # Re-read the whole topic from offset 0 with a new group: nothing new is stored.
        replay = make_settings(group_prefix=uid("replay"), notify_db=settings.notify_db, catalog_db=settings.catalog_db,
                               kafka_bootstrap_servers=servers.kafka_bootstrap)
        worker = notify_consumer(replay, inbox, Directory(client, settings.notify_db))
        worker.start()
        await send_sentinels(producer, tag + "-again")

        async def replayed() -> bool:
            return await inbox.coll.count_documents({"organization_id": {"$regex": f"^{tag}-again-"}}) == 2 * PARTITIONS

        await eventually(replayed, timeout=90, interval=0.2)
        assert await inbox.coll.count_documents(mine) == 2 * n + 4 * PARTITIONS
        pipeline = [{"$match": mine}, {"$group": {"_id": {"k": "$dedup_key", "o": "$organization_id"}, "c": {"$sum": 1}}}, {"$match": {"c": {"$gt": 1}}}]
        assert await (await inbox.coll.aggregate(pipeline)).to_list(None) == []
        for i in (0, n // 2, n - 1):
            entries = await inbox.coll.find({"match_id": f"{tag}n{i}.f{i}"}).to_list(None)
            assert sorted(e["organization_id"] for e in entries) == sorted([f"{tag}-office-{i % 7}", f"{tag}-provider-{i % 5}"])
    finally:
        await producer.stop()
        if worker is not None:
            await worker.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
        await client.drop_database(settings.notify_db)
        await client.close()
