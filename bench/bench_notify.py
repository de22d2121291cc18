"""Notify benchmark: the inbox path against a plain consume-and-insert loop, same broker and store.

Prints `inbox_vs_plain=` (notifications/s of notify's EventConsumer + InboxStore over a bare aiokafka
loop that inserts each record) and `decision_to_inbox_p50_ms=` / `_p99_ms=` (a match.decided
produced → its inbox entries stored).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.notify.agents import notify_consumer
from services.notify.directory import Directory
from services.notify.inbox import InboxStore
from ssmatch.events import MatchDecidedPayload, make_event
from ssmatch.kafka import ensure_topics
from ssmatch.mongo import make_client
from ssmatch.settings import Settings
from ssmatch.stack.embedded import mongo_uri, start_secantus, start_tansu
from ssmatch.stack.processes import free_port, stop_all

N = 3000
LATENCY_SAMPLES = 200


def decided(i: int, tag: str) -> bytes:
    mid = f"n{tag}{i}.f{i}"
    p = MatchDecidedPayload(match_id=mid, need_id=f"n{tag}{i}", offer_id=f"f{i}", decision="approve", decided_by="b",
                            need_organization_id=f"o{i % 50}", offer_organization_id=f"p{i % 50}", score=0.8,
                            need_title="Need", offer_title="Offer")
    return make_event("match.decided", "match", mid, p, producer="bench").to_bytes()


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=str(i).encode()) for i, v in enumerate(values)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def plain_loop(bootstrap: str, uri: str, topic: str, want: int) -> float:
    client = make_client(uri)
    coll = client.get_database(f"bench_plain_{uuid.uuid4().hex[:6]}")["inbox"]
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"plain-{uuid.uuid4().hex[:6]}",
                                enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=25, session_timeout_ms=6000)
    await consumer.start()
    got = 0
    started = None
    try:
        while got < want:
            batches = await consumer.getmany(timeout_ms=200, max_records=200)
            for records in batches.values():
                if started is None:
                    started = time.perf_counter()
                for r in records:
                    doc = json.loads(r.value)
                    for org in (doc["payload"]["need_organization_id"], doc["payload"]["offer_organization_id"]):
                        await coll.insert_one({"organization_id": org, "event_id": doc["event_id"], "data": doc["payload"]})
                got += len(records)
            if batches:
                await consumer.commit()
        return want / (time.perf_counter() - (started or time.perf_counter()))
    finally:
        await consumer.stop()
        await client.close()


async def inbox_path(settings: Settings, want_entries: int) -> tuple[float, InboxStore, object]:
    client = make_client(settings.mongodb_uri)
    inbox = InboxStore(client, settings.notify_db)
    await inbox.init()
    consumer = notify_consumer(settings, inbox, Directory(client, settings.notify_db))
    consumer.start()
    started = None
    while True:
        n = await inbox.coll.estimated_document_count()
        if n and started is None:
            started = time.perf_counter()
        if n >= want_entries:
            break
        await asyncio.sleep(0.05)
    rate = (want_entries / 2) / (time.perf_counter() - (started or time.perf_counter()))
    return rate, inbox, consumer


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    kport, mport = free_port(), free_port()
    broker = start_tansu(kport, tmp)
    store = start_secantus(mport, tmp / "mongo", tmp)
    bootstrap, uri = f"127.0.0.1:{kport}", mongo_uri(mport)
    try:
        await ensure_topics(bootstrap)
        tag = uuid.uuid4().hex[:6]
        values = [decided(i, tag) for i in range(N)]
        await produce(bootstrap, "ssmatch.decisions", values)
        plain_rate = await plain_loop(bootstrap, uri, "ssmatch.decisions", N)
        settings = Settings.model_validate({"kafka_bootstrap_servers": bootstrap, "mongodb_uri": uri,
                                            "notify_db": f"bench_notify_{tag}", "catalog_db": f"bench_catalog_{tag}"})
        inbox_rate, inbox, consumer = await inbox_path(settings, 2 * N)
        print(f"plain_consume_insert_per_s={plain_rate:.0f}")
        print(f"inbox_notifications_per_s={inbox_rate:.0f}")
        print(f"inbox_vs_plain={inbox_rate / plain_rate:.2f}")

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        await producer.start()
        latencies = []
        for i in range(LATENCY_SAMPLES):
            mid = f"n{tag}L{i}.f{i}"
            p = MatchDecidedPayload(match_id=mid, need_id=f"n{tag}L{i}", offer_id=f"f{i}", decision="approve", decided_by="b",
                                    need_organization_id="lat-o", offer_organization_id="lat-p", score=0.8)
            t0 = time.perf_counter()
            await producer.send_and_wait("ssmatch.decisions", value=make_event("match.decided", "match", mid, p, producer="bench").to_bytes(), key=mid.encode())
            # dedup_key leads the unique index: an indexed probe that does not load the store
            while await inbox.coll.count_documents({"dedup_key": f"match_decided:{mid}"}) < 2:  # noqa: ASYNC110 - polls the store, not an in-process flag
                await asyncio.sleep(0.002)
            latencies.append((time.perf_counter() - t0) * 1000)
        await producer.stop()
        await consumer.stop()  # type: ignore[attr-defined]
        latencies.sort()
        print(f"decision_to_inbox_p50_ms={statistics.median(latencies):.1f}")
        print(f"decision_to_inbox_p99_ms={latencies[int(0.99 * (len(latencies) - 1))]:.1f}")
    finally:
        stop_all([broker, store], grace_s=5)


if __name__ == "__main__":
    asyncio.run(main())
