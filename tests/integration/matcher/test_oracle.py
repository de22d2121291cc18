"""The randomized oracle test (issue 9): real broker, real store, real matcher worker processes.

A few hundred interleaved publish/update/withdraw events in random order and timing, with 1 and
with 3 workers, one of them SIGKILLed and restarted mid-stream. Once the workers have consumed
everything, the catalog's open proposals must equal the oracle computed with the pure scorer over
the final catalog. Then: a replay from offset 0 emits nothing new, and a rules change (workers
restarted with the new rules, every item queued again as `ssmatch replay` does) gives the oracle of
the new rules. Few distinct short texts keep the embedder (~8 texts/s here) out of the way.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.catalog.projection import match_projection
from services.catalog.store import CatalogStore
from services.matcher.centring import load as load_centring
from services.matcher.centring import priors_only
from services.matcher.lists import oracle, to_match_item
from services.matcher.runtime import REFRESH_GROWTH
from services.matcher.scoring import Embedder, item_text, load_rules, score_pair
from ssmatch.events import ItemPayload, ItemWithdrawnPayload, make_event, parse_event
from ssmatch.mongo import make_client
from ssmatch.settings import Settings
from tests.integration.matcher.conftest import Broker, Workers, rules_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TITLES = [
    "Drought-tolerant seed systems", "Solar mini-grids for rural clinics", "Teacher training in mathematics",
    "Mobile money for smallholder farmers", "Water quality testing laboratories", "Maternal health data systems",
    "Semences résistantes à la sécheresse", "Formación docente en matemáticas",
]
SECTORS = [["agriculture"], ["energy"], ["education"], ["health"], ["agriculture", "food_security"], ["water_sanitation"]]
COUNTRIES = ["MWI", "KEN", "BRA", "IND", "SEN", "VNM"]
ITEM_TOPICS = ("ssmatch.needs", "ssmatch.offers")
CENTRING_MIN_ITEMS = 8  # snapshots rebuilt (and lists rescored) mid-stream


class Scenario:
    """Random item events, and the final catalog they leave."""

    def __init__(self, seed: int, n_items: int, n_events: int) -> None:
        self.rng = random.Random(seed)
        self.prefix = uuid.uuid4().hex[:6]
        self.final: dict[str, ItemPayload | ItemWithdrawnPayload] = {}
        self.events: list[ItemPayload | ItemWithdrawnPayload] = []
        ids = [f"{self.prefix}-{'n' if i % 2 == 0 else 'o'}{i}" for i in range(n_items)]
        revision: dict[str, int] = {}
        for _ in range(n_events):
            item_id = self.rng.choice(ids)
            if isinstance(self.final.get(item_id), ItemWithdrawnPayload):
                continue
            kind = "need" if "-n" in item_id else "offer"
            rev = revision.get(item_id, 0) + 1
            revision[item_id] = rev
            if rev > 1 and self.rng.random() < 0.12:
                event: Any = ItemWithdrawnPayload(id=item_id, kind=kind, organization_id=f"org{hash(item_id) % 5}", revision=rev)  # type: ignore[arg-type]
            else:
                now = datetime.now(UTC)
                event = ItemPayload(
                    id=item_id, kind=kind, organization_id=f"org{self.rng.randrange(5)}", title=self.rng.choice(TITLES), description="",  # type: ignore[arg-type]
                    keywords=[], sdgs=[self.rng.choice([2, 3, 4, 6, 7])], sectors=self.rng.choice(SECTORS), modalities=["capacity_development"],
                    languages=["en", "fr"] if self.rng.random() < 0.8 else ["es"], country=self.rng.choice(COUNTRIES), status="open",
                    revision=rev, created_at=now, updated_at=now,
                )
            self.events.append(event)
            self.final[item_id] = event

    def docs(self, vectors: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        out = []
        for p in self.final.values():
            d = p.model_dump(mode="python")
            d["_id"] = d.pop("id")
            if isinstance(p, ItemWithdrawnPayload):
                d["status"] = "withdrawn"
            else:
                d["embedding"] = vectors[item_text(to_match_item(d))]
            out.append(d)
        return out


async def publish(producer: AIOKafkaProducer, payload: Any, counts: dict[TopicPartition, int]) -> None:
    kind = payload.kind
    verb = "withdrawn" if isinstance(payload, ItemWithdrawnPayload) else ("published" if payload.revision == 1 else "updated")
    event = make_event(f"{kind}.{verb}", kind, payload.id, payload, producer="catalog")
    meta = await producer.send_and_wait(event.topic, key=payload.id.encode(), value=event.to_bytes())
    tp = TopicPartition(meta.topic, meta.partition)
    counts[tp] = max(counts.get(tp, 0), meta.offset + 1)


async def processed_everything(workers: Workers, group: str, bootstrap: str, counts: dict[TopicPartition, int]) -> bool:
    """Every item record published so far was processed (output sent) by a live worker, or
    committed by the group (a worker that processed it may have died since)."""
    done = await asyncio.to_thread(workers.processed)
    behind = [tp for tp, end in counts.items() if done.get((tp.topic, tp.partition), 0) < end]
    if not behind:
        return True
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        for tp in behind:
            if (await consumer.committed(tp) or 0) < counts[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def proposed_pairs(store: CatalogStore, prefix: str) -> set[tuple[str, str]]:
    docs = await store.matches.find({"status": "proposed", "need_id": {"$regex": f"^{prefix}-"}}).to_list(None)
    return {(d["need_id"], d["offer_id"]) for d in docs}


async def until(check: Any, timeout: float, what: str, workers: Workers) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what} not reached within {timeout}s\n{workers.logs()}")


async def match_event_ids(bootstrap: str) -> list[str]:
    """Every event on the matches topic (read to the end of what is there)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=25)
    await consumer.start()
    try:
        tps = [TopicPartition("ssmatch.matches", p) for p in range(4)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ids: list[str] = []
        idle = 0
        while idle < 5:  # five empty fetches in a row: the topic is read (the writers are quiet by now)
            batch = await consumer.getmany(timeout_ms=100)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                ids += [parse_event(r.value)[0].event_id for r in records]
        return ids
    finally:
        await consumer.stop()


def check_web(workers: Workers, scenario: Scenario, rules: Any, centroids: Any) -> None:
    """From outside: /v1/score gives the scores the oracle ranks by; bad input is a 422; /metrics counts."""
    port = workers.ports[0]
    auth = {"Authorization": "Bearer oracle-admin"}
    opened = [p for p in scenario.final.values() if isinstance(p, ItemPayload)]
    need = next(p for p in opened if p.kind == "need")
    offer = next(p for p in opened if p.kind == "offer")
    body = httpx.post(f"http://127.0.0.1:{port}/v1/score", json={"need_id": need.id, "offer_id": offer.id}, headers=auth, timeout=30).json()
    docs = {d["_id"]: d for d in scenario.docs({t: v for t, v in zip(TITLES, Embedder().embed(TITLES), strict=True)})}
    expected = score_pair(to_match_item(docs[need.id]), to_match_item(docs[offer.id]), rules, centroids=centroids)
    assert body["score"] == expected.total
    bad = {"need_id": need.id, "offer": {**offer.model_dump(mode="json"), "embedding": [0.1, 0.2]}}
    answer = httpx.post(f"http://127.0.0.1:{port}/v1/score", json=bad, headers=auth, timeout=30)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "validation_failed"
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "ssmatch_matcher_events_in_total" in text and "ssmatch_matcher_stage_seconds_bucket" in text


def worker_env(broker: Broker, settings: Settings, rules_path: Path, **extra: str) -> dict[str, str]:
    """The matcher workers' environment: this test's broker, databases, group and rules."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "MONGODB_URI": settings.mongodb_uri,
        "SSMATCH_MATCHER_DB": settings.matcher_db, "SSMATCH_CATALOG_DB": settings.catalog_db,
        "SSMATCH_GROUP_PREFIX": settings.group_prefix, "SSMATCH_RULES_FILE": str(rules_path),
        "SSMATCH_KAFKA_SESSION_TIMEOUT_S": "6", "SSMATCH_LOG_FORMAT": "text", "SSMATCH_LOG_LEVEL": os.environ.get("SSMATCH_TEST_MATCHER_LOG_LEVEL", "WARNING"),
        "SSMATCH_KAFKA_PRODUCER_MAX_BATCH_BYTES": "1", "SSMATCH_ADMIN_TOKEN": "oracle-admin",
        "SSMATCH_MATCHER_CENTRING_MIN_ITEMS": str(CENTRING_MIN_ITEMS), **extra,  # snapshots rebuilt (and lists rescored) mid-stream
    }


@pytest.mark.timeout(600)
@pytest.mark.parametrize("n_workers", [1, 3])
async def test_the_stream_converges_to_the_oracle(n_workers: int, own_broker: Broker, matcher_workers: Any, make_settings: Any,
                                                  tmp_path: Path) -> None:
    rules_path = rules_copy(tmp_path / "rules.toml", top_k=2, min_score=0.1, version="oracle-1")
    rules = load_rules(str(rules_path))
    settings: Settings = make_settings(kafka_bootstrap_servers=own_broker.bootstrap, group_prefix=f"t{uuid.uuid4().hex[:6]}")
    env = worker_env(own_broker, settings, rules_path)
    workers: Workers = matcher_workers(env)
    for i in range(n_workers):
        workers.start(i)

    client = make_client(settings.mongodb_uri)
    store = CatalogStore(client, settings.catalog_db)
    projection = match_projection(settings, store)
    projection.start()
    producer = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap, acks="all", max_batch_size=1)
    await producer.start()
    scenario = Scenario(seed=n_workers, n_items=40, n_events=160)
    embedder = Embedder()
    vectors = {t: v for t, v in zip(TITLES, embedder.embed(TITLES), strict=True)}
    matcher_db = make_client(settings.mongodb_uri).get_database(settings.matcher_db)

    async def centroids_in_force() -> Any:
        """The snapshot the workers score with (rebuilt as the corpus grows), priors before the first."""
        snap = await load_centring(matcher_db["meta"])
        return (snap or priors_only(rules.semantic.language_prior_weight)).centroids

    def centring_refresh_due(snap: Any) -> bool:
        """Would a worker still rebuild the centring snapshot `snap` for the final corpus? That is work
        to come (every list rescored): the stream is not quiet until it is done."""
        now = datetime.now(UTC)
        open_n = sum(1 for d in scenario.docs(vectors) if d.get("status") == "open" and (d.get("expires_at") is None or d["expires_at"] > now))
        return open_n >= CENTRING_MIN_ITEMS and open_n >= REFRESH_GROWTH * (snap.items if snap else 0)

    counts: dict[TopicPartition, int] = {}
    try:
        await asyncio.to_thread(workers.ready)
        victim = n_workers - 1
        t_start = time.monotonic()
        for n, event in enumerate(scenario.events):
            if n == len(scenario.events) * 2 // 5:
                workers.kill(victim)
            if n == len(scenario.events) * 3 // 4:
                workers.start(victim)
            await publish(producer, event, counts)
            if scenario.rng.random() < 0.1:
                await asyncio.sleep(scenario.rng.uniform(0, 0.2))
        expected: set[tuple[str, str]] = set()

        async def converged() -> bool:
            """Quiet: everything processed, no snapshot rebuild due, the proposals equal the oracle under
            the snapshot in force, and that snapshot still in force once all of this was read (a worker
            that rebuilt it meanwhile is rescoring every list: the check that saw the old one is void)."""
            nonlocal expected
            snap = await load_centring(matcher_db["meta"])
            if centring_refresh_due(snap):
                return False
            expected = oracle(scenario.docs(vectors), rules, (snap or priors_only(rules.semantic.language_prior_weight)).centroids)
            quiet = await processed_everything(workers, f"{settings.group_prefix}-matcher", own_broker.bootstrap, counts) \
                and await proposed_pairs(store, scenario.prefix) == expected
            after = await load_centring(matcher_db["meta"])
            return quiet and (after.version if after else None) == (snap.version if snap else None)

        t_published = time.monotonic()
        try:
            await until(converged, 240, "the oracle", workers)
            print(f"published in {t_published - t_start:.1f}s, converged {time.monotonic() - t_published:.1f}s later")
        except AssertionError:
            got = await proposed_pairs(store, scenario.prefix)
            raise AssertionError(f"missing {sorted(expected - got)[:10]}, extra {sorted(got - expected)[:10]}\n{workers.logs()}") from None

        assert len(expected) >= 6, "the scenario should propose a good number of pairs"
        centroids = await centroids_in_force()
        await asyncio.to_thread(check_web, workers, scenario, rules, centroids)
        if n_workers > 1:
            return  # replay and rules change: with one worker (each restart of three costs ~30 s here)
        # replay every topic from offset 0 (a new group on the same matcher state): nothing new
        before = await match_event_ids(own_broker.bootstrap)
        workers.stop()
        replay_group = f"{settings.group_prefix}r"
        workers.env["SSMATCH_GROUP_PREFIX"] = replay_group
        for i in range(n_workers):
            workers.start(i)
        await asyncio.to_thread(workers.ready)
        await until(lambda: processed_everything(workers, f"{replay_group}-matcher", own_broker.bootstrap, counts), 90, "the replay", workers)
        assert sorted(await match_event_ids(own_broker.bootstrap)) == sorted(before)
        assert await proposed_pairs(store, scenario.prefix) == expected

        # a rules change: workers restart with new rules, every item is queued again (`ssmatch replay`)
        new_path = rules_copy(tmp_path / "rules2.toml", top_k=1, min_score=0.08, version="oracle-2")
        workers.stop()
        workers.env["SSMATCH_RULES_FILE"] = str(new_path)
        for i in range(n_workers):
            workers.start(i)
        await asyncio.to_thread(workers.ready)
        for payload in scenario.final.values():
            await publish(producer, payload, counts)
        new_rules = load_rules(str(new_path))
        new_expected: set[tuple[str, str]] = set()

        async def converged_again() -> bool:
            nonlocal new_expected
            new_expected = oracle(scenario.docs(vectors), new_rules, await centroids_in_force())
            return await processed_everything(workers, f"{replay_group}-matcher", own_broker.bootstrap, counts) \
                and await proposed_pairs(store, scenario.prefix) == new_expected

        await until(converged_again, 90, "the oracle of the new rules", workers)
        assert new_expected != expected
        docs = await store.matches.find({"status": "proposed", "need_id": {"$regex": f"^{scenario.prefix}-"}}).to_list(None)
        assert {d["rules_version"] for d in docs} == {"oracle-2"}
    finally:
        await producer.stop()
        await projection.stop()
        await client.drop_database(settings.matcher_db)
        await client.drop_database(settings.catalog_db)
        await client.close()


ANN_RECALL_BOUND = 0.9  # on this tie-heavy catalog (8 distinct texts) with candidates at about half of a kind


@pytest.mark.timeout(300)
async def test_the_ann_candidate_path_reaches_its_recall_bound(own_broker: Broker, matcher_workers: Any, make_settings: Any,
                                                               tmp_path: Path) -> None:
    """The same stream with the approximate candidate generation forced on (every list from its 16 ANN
    neighbours): the proposed set holds ≥ ANN_RECALL_BOUND of the exact oracle's pairs, and every
    proposed pair is a valid one (both items open in the final catalog, score above min_score)."""
    rules_path = rules_copy(tmp_path / "rules.toml", top_k=2, min_score=0.1, version="oracle-ann")
    rules = load_rules(str(rules_path))
    settings: Settings = make_settings(kafka_bootstrap_servers=own_broker.bootstrap, group_prefix=f"t{uuid.uuid4().hex[:6]}")
    env = worker_env(own_broker, settings, rules_path, SSMATCH_MATCHER_EXACT_BELOW="0", SSMATCH_MATCHER_CANDIDATES="16",
                     SSMATCH_MATCHER_SCAN_BELOW="0")
    workers: Workers = matcher_workers(env)
    workers.start(0)
    client = make_client(settings.mongodb_uri)
    store = CatalogStore(client, settings.catalog_db)
    projection = match_projection(settings, store)
    projection.start()
    producer = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap, acks="all", max_batch_size=1)
    await producer.start()
    scenario = Scenario(seed=1, n_items=60, n_events=160)
    vectors = {t: v for t, v in zip(TITLES, Embedder().embed(TITLES), strict=True)}
    matcher_db = make_client(settings.mongodb_uri).get_database(settings.matcher_db)
    counts: dict[TopicPartition, int] = {}
    try:
        await asyncio.to_thread(workers.ready)
        for event in scenario.events:
            await publish(producer, event, counts)
        docs = {d["_id"]: d for d in scenario.docs(vectors)}
        expected: set[tuple[str, str]] = set()
        got: set[tuple[str, str]] = set()

        def valid(pair: tuple[str, str], centroids: Any) -> bool:
            need, offer = docs[pair[0]], docs[pair[1]]
            if need.get("status") != "open" or offer.get("status") != "open":
                return False
            return score_pair(to_match_item(need), to_match_item(offer), rules, centroids=centroids).total > rules.min_score

        async def reached() -> bool:
            nonlocal expected, got
            snap = await load_centring(matcher_db["meta"])
            centroids = (snap or priors_only(rules.semantic.language_prior_weight)).centroids
            expected = oracle(list(docs.values()), rules, centroids)
            got = await proposed_pairs(store, scenario.prefix)
            return await processed_everything(workers, f"{settings.group_prefix}-matcher", own_broker.bootstrap, counts) \
                and len(got & expected) >= ANN_RECALL_BOUND * len(expected) and all(valid(p, centroids) for p in got)

        try:
            await until(reached, 240, f"recall {ANN_RECALL_BOUND} of the oracle with ANN candidates", workers)
        except AssertionError:
            raise AssertionError(f"recall {len(got & expected)}/{len(expected)}, missing {sorted(expected - got)[:10]}, "
                                 f"extra {sorted(got - expected)[:10]}\n{workers.logs()}") from None
        assert len(expected) >= 20, "the scenario should propose a good number of pairs"
    finally:
        await producer.stop()
        await projection.stop()
        await client.drop_database(settings.matcher_db)
        await client.drop_database(settings.catalog_db)
        await client.close()
