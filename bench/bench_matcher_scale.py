"""Matcher at 100,000 open items (issue 9): candidate generation, per-event cost and its growth, recall,
memory, and the embedded store and broker it writes through, each on its own `name=value` line.

    python bench/bench_matcher_scale.py        (SSMATCH_BENCH_ITEMS=100000 by default)

- One worker's index (`ItemIndex` + `ListBook`, ANN candidates at the default settings) grown to
  N/4, N/2 and N synthetic open items (bench/matcher_data.py: demo texts and codes, e5 vectors mixed
  with noise). At each size, EVENTS items are rewritten (vector moved 10% toward another item). The
  worker owns exactly the lists such a rewrite can touch under full ownership (the item's own and its
  passing candidates': only they can hold it or admit it), computed first (`list_ms_at_`: one list
  from scratch). Per event: the row rewritten, the item scored against its candidates (`affected_ms_at_`),
  every affected list derived from what it was or, when it must be, recomputed (`ListBook.updated`).
  Half the events go one at a time (`event_ms_one_at_a_time_at_`), half in batches of BATCH settled
  together as a worker settles what one poll brings (its scans share one matrix product,
  `ListBook.prefetch`): `event_ms_full_ownership_at_`, and `matching_events_per_s` = 1000 / it at N.
- `candidate_recall`: lists from ANN candidates vs exact candidate generation, on sampled items at N.
- `rss_mib_<N>`: the process's peak resident memory (index, tables, ANN blocks, docs).
- The stack's own costs in the same run: a plain aiokafka consume→produce echo on the embedded broker
  (`echo_events_per_s`, baseline of `matching_vs_echo`), and SecantusDB's `insert_many` rate and
  `update_one` latency (what a list step costs: write_list + mark_sent per changed list, put_item per
  event); `matching_with_store_events_per_s` adds those writes to the pure rate.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from bench.matcher_data import demo_items, synthesise  # noqa: E402
from services.matcher.centring import build  # noqa: E402
from services.matcher.lists import EXACT, ItemIndex, ListBook, ListState, other  # noqa: E402
from services.matcher.scoring import load_rules  # noqa: E402
from services.matcher.state import MatcherStore, pack  # noqa: E402
from ssmatch.kafka import ensure_topics  # noqa: E402
from ssmatch.mongo import make_client  # noqa: E402
from ssmatch.stack.embedded import mongo_uri, start_secantus, start_tansu  # noqa: E402
from ssmatch.stack.processes import free_port, stop_all  # noqa: E402

N = int(os.environ.get("SSMATCH_BENCH_ITEMS", "100000"))
EVENTS = 64  # rewritten at each size: half one at a time, half in batches of BATCH
BATCH = 32
RECALL_SAMPLES = 30
ECHO = 20000
STORE_DOCS = 20000


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_index() -> float:
    """The pure figures; returns the per-event ms at N (with full ownership)."""
    rules = load_rules()
    raws, vectors, _ = demo_items()
    sample = synthesise(min(N, 20000), raws, vectors, seed=11)
    snap = build(np.stack([d["embedding"] for d in sample]), [d["text_language"] for d in sample], rules.semantic.language_prior_weight,
                 [d["sectors"] for d in sample], rules.semantic.sector_cap)
    del sample
    keys: list[tuple[str, str]] = []  # the bench keeps only ids: the documents live in the index, as in a worker
    index = ItemIndex(rules)
    rng = random.Random(5)
    owned: set[str] = set()
    book = ListBook(index, rules, snap.centroids, owns=lambda kind, item_id: item_id in owned)
    per_event: dict[int, float] = {}
    one_at_a_time: dict[int, float] = {}
    loaded = 0
    for size in (N // 4, N // 2, N):
        for table in index.tables.values():
            table._ann = None
        t0 = time.perf_counter()
        for start in range(loaded, size, 5000):
            for doc in synthesise(min(5000, size - start), raws, vectors, start=start):
                index.put(doc)
                keys.append((doc["kind"], doc["_id"]))
        print(f"index_puts_per_s_at_{size}={(size - loaded) / (time.perf_counter() - t0):.0f}", flush=True)
        loaded = size
        t0 = time.perf_counter()
        book.top_k(("need", "n0"))
        book.top_k(("offer", "o1"))  # both kinds' ANN blocks built
        print(f"ann_ready_s_at_{size}={time.perf_counter() - t0:.1f}", flush=True)
        # The lists a rewrite of X can touch under full ownership: X's own, those holding X, those X
        # enters; all are among X's passing candidates (a list can only hold or admit X at a passing
        # score). Owning exactly those measures what one worker owning everything would do per event.
        events = rng.sample(keys, EVENTS)
        owned.clear()
        t0 = time.perf_counter()
        computed = 0
        for key in events:
            # every passing candidate, scored in full (floor -inf: no pair is left to its bounds)
            ids, scores, _ = book._scores(key[0], key[1], datetime.now(UTC), lambda _, rows: np.full(len(rows), -np.inf))
            neighbourhood = [key] + [(other(key[0]), ids[j]) for j in np.flatnonzero(scores >= 0)]
            for target in neighbourhood:
                owned.add(target[1])
                if target not in book.lists:
                    book.set_list(target, ListState(1, book.top_k(target), "bench"))
                    computed += 1
        one_list = (time.perf_counter() - t0) / max(computed, 1) * 1000
        book.recomputed = book.derived = 0
        t_affected = t_lists = 0.0
        lists = 0
        version = 2
        for batch_size, pass_events in ((1, events[:EVENTS // 2]), (BATCH, events[EVENTS // 2:])):
            t_affected = t_lists = 0.0
            for start in range(0, len(pass_events), batch_size):
                batch = pass_events[start:start + batch_size]
                t0 = time.perf_counter()
                for key in batch:  # ingest: each item's row rewritten
                    doc = index.get(*key)
                    mate = index.embedding(*events[rng.randrange(len(events))])
                    moved = 0.9 * index.embedding(*key) + 0.1 * mate  # type: ignore[operator]
                    index.put({**doc, "revision": doc["revision"] + 1, "embedding": (moved / np.linalg.norm(moved)).astype(np.float32)})  # type: ignore[index]
                # settle, as `MatcherService.settle` does with a batch
                book.prefetch(batch)
                affected: set[tuple[str, str]] = set()
                for key in batch:
                    affected |= book.affected(key)
                t1 = time.perf_counter()
                for target in sorted(affected):
                    book.set_list(target, ListState(version, book.updated(target, batch), "bench"))
                version += 1
                book.forget_scores()
                t_affected += t1 - t0
                t_lists += time.perf_counter() - t1
                lists += len(affected)
            ms = (t_affected + t_lists) / len(pass_events) * 1000
            if batch_size == 1:
                one_at_a_time[size] = ms
                print(f"affected_ms_at_{size}={t_affected / len(pass_events) * 1000:.1f}  # the rewritten item scored against its candidates")
                print(f"event_ms_one_at_a_time_at_{size}={ms:.1f}")
            else:
                per_event[size] = ms
                print(f"event_ms_full_ownership_at_{size}={ms:.1f}  # settled in batches of {BATCH}, as a worker settles what one poll brings")
        print(f"list_ms_at_{size}={one_list:.1f}  # one list recomputed from scratch")
        print(f"owned_lists_per_event_at_{size}={lists / EVENTS:.1f}  # derived {book.derived}, recomputed {book.recomputed}", flush=True)
    print(f"growth_25k_to_50k={per_event[N // 2] / per_event[N // 4]:.2f}")
    print(f"growth_50k_to_100k={per_event[N] / per_event[N // 2]:.2f}")
    print(f"growth_50k_to_100k_one_at_a_time={one_at_a_time[N] / one_at_a_time[N // 2]:.2f}")
    print(f"rss_mib_{N // 1000}k={rss_mib():.0f}")
    exact = ListBook(index, rules, snap.centroids, owns=lambda *_: True, config=EXACT)
    found = total = 0
    t0 = time.perf_counter()
    for kind, item_id in rng.sample(sorted(owned_keys(index)), RECALL_SAMPLES):
        want = exact.top_k((kind, item_id))
        found += len(set(want) & set(book.top_k((kind, item_id))))
        total += len(want)
    print(f"exact_list_ms_at_{N}={(time.perf_counter() - t0) / RECALL_SAMPLES * 1000:.0f}")
    print(f"candidate_recall={found / max(total, 1):.3f}  # {total} exact top-K pairs of {RECALL_SAMPLES} lists")
    rate = 1000 / per_event[N]
    print(f"matching_events_per_s_one_at_a_time={1000 / one_at_a_time[N]:.1f}")
    print(f"matching_events_per_s={rate:.1f}  # pure work (candidates, exact rescoring, every affected list settled), batches of {BATCH}, one core")
    return per_event[N]


def owned_keys(index: ItemIndex) -> set[tuple[str, str]]:
    return {(k, i) for k in ("need", "offer") for i in list(index.docs[k])[:5000]}


async def echo_rate(bootstrap: str) -> float:
    """Plain consume→produce echo, batches of 500, on the embedded broker."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    topic_in, topic_out = "ssmatch.needs", "ssmatch.matches"
    futures = [await producer.send(topic_in, key=str(i).encode(), value=b"x" * 600) for i in range(ECHO)]
    await asyncio.gather(*futures)
    consumer = AIOKafkaConsumer(topic_in, bootstrap_servers=bootstrap, group_id=f"echo-{uuid.uuid4().hex[:6]}", enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=25, session_timeout_ms=6000, max_poll_records=500)
    await consumer.start()
    got = 0
    started = None
    try:
        while got < ECHO:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for records in batches.values():
                started = started or time.perf_counter()
                outs = [await producer.send(topic_out, key=r.key, value=r.value) for r in records]
                await asyncio.gather(*outs)
                got += len(records)
            if batches:
                await consumer.commit()
        return ECHO / (time.perf_counter() - (started or time.perf_counter()))
    finally:
        await consumer.stop()
        await producer.stop()


async def store_costs(uri: str) -> tuple[float, float]:
    """SecantusDB: item docs stored per second with insert_many (the bulk-load path), and ms per
    update_one (a list step's write)."""
    client = make_client(uri)
    store = MatcherStore(client, f"bench_matcher_{uuid.uuid4().hex[:6]}")
    raws, vectors, _ = demo_items()
    docs = synthesise(STORE_DOCS, raws, vectors, start=N)
    bodies = [{**{k: v for k, v in d.items() if k != "embedding"}, "vector": pack(d["embedding"])} for d in docs]
    t0 = time.perf_counter()
    for start in range(0, len(bodies), 1000):
        await store.items.insert_many(bodies[start : start + 1000], ordered=False)
    insert_rate = len(bodies) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = 300
    for i in range(n):
        await store.lists.update_one({"_id": f"need:n{i}"}, {"$set": {"version": 1, "entries": {}, "sent": True}}, upsert=True)
    update_ms = (time.perf_counter() - t0) / n * 1000
    await client.drop_database(store.db.name)
    await client.close()
    return insert_rate, update_ms


async def stack_figures(event_ms: float, top_k: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-matcher-scale-"))
    kport, mport = free_port(), free_port()
    broker = start_tansu(kport, tmp)
    store = start_secantus(mport, tmp / "mongo", tmp)
    try:
        bootstrap = f"127.0.0.1:{kport}"
        await ensure_topics(bootstrap)
        echo = await echo_rate(bootstrap)
        insert_rate, update_ms = await store_costs(mongo_uri(mport))
        print(f"echo_events_per_s={echo:.0f}")
        print(f"matching_vs_echo={1000 / event_ms / echo:.4f}")
        print(f"store_insert_many_docs_per_s={insert_rate:.0f}")
        print(f"store_update_one_ms={update_ms:.2f}")
        print(f"store_load_100k_items_s={100000 / insert_rate:.0f}")
        # per event: put_item, and per changed list write_list + mark_sent (own + ~top_k holders)
        writes = 1 + 2 * (1 + top_k)
        print(f"matching_with_store_events_per_s={1000 / (event_ms + writes * update_ms):.1f}  # {writes} sequential writes per event")
    finally:
        stop_all([broker, store], grace_s=5)


if __name__ == "__main__":
    ms = bench_index()
    asyncio.run(stack_figures(ms, load_rules().top_k))
