"""MatcherRuntime: what the agents and views of one worker share (no faust import, no cycle).

It owns the store, the index, the service, the centring snapshot and the worker's partitions. An
item belongs to the worker that holds its partition on its topic; the partition is the producer's
(murmur2 of the key, as the catalog's outbox sends it), so ownership is known without asking Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from services.matcher import centring
from services.matcher.candidates import CandidateConfig
from services.matcher.centring import CentringSnapshot
from services.matcher.lists import ItemIndex, ListBook
from services.matcher.metrics import Metrics
from services.matcher.scoring import Embedder, Rules
from services.matcher.service import MatcherService, Record
from services.matcher.state import MatcherStore, to_index_doc
from ssmatch import schemas
from ssmatch.kafka import make_producer
from ssmatch.mongo import make_client
from ssmatch.settings import Settings

log = logging.getLogger(__name__)
TOPIC_OF = {"need": "ssmatch.needs", "offer": "ssmatch.offers"}
KIND_OF = {v: k for k, v in TOPIC_OF.items()}
MATCHES_TOPIC = "ssmatch.matches"
EXPIRY_CHECK_S = 5.0
# Rebuild the centring snapshot when the open corpus has doubled since it was built and holds at least
# `matcher_centring_min_items` (500): below that the shipped priors dominate the shrunk means anyway, and
# every refresh rescores (and re-emits) every list; from an empty store, doubling from one item meant
# eight full rescorings during the first 300 posts.
REFRESH_GROWTH = 2.0


def topic_partitions(name: str) -> int:
    return next(int(t["partitions"]) for t in schemas.topics() if t["name"] == name)


def partition_for(key: str, partitions: int) -> int:
    """The partition a keyed record lands on with Kafka's default partitioner."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


class MatcherRuntime:
    def __init__(self, settings: Settings, rules: Rules, embed: Callable[[list[str]], np.ndarray] | None = None) -> None:
        self.settings = settings
        self.rules = rules
        self.embed = embed or Embedder().embed
        self.metrics = Metrics()
        self.partitions = {kind: topic_partitions(topic) for kind, topic in TOPIC_OF.items()}
        self.owned: dict[str, set[int]] = {"need": set(), "offer": set()}
        self.store: MatcherStore | None = None
        self.service: MatcherService | None = None
        self.centring: CentringSnapshot | None = None
        self.producer: AIOKafkaProducer | None = None
        self.assigned = False
        self.loaded = False
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()

    @property
    def rules_version(self) -> str:
        return self.rules.version

    @property
    def ready(self) -> bool:
        return self.assigned and self.loaded

    def owns(self, kind: str, item_id: str) -> bool:
        return partition_for(item_id, self.partitions[kind]) in self.owned[kind]

    async def send(self, records: list[Record], attempts: int = 8) -> None:
        """Send and wait for every ack: a step is marked sent only after this returns.

        Records the broker refused are sent again with backoff (a broker that just restarted can refuse
        produce requests for a moment); their event ids are stable, so a repeat is absorbed downstream."""
        assert self.producer is not None
        producer = self.producer
        pending = list(records)

        async def send_pending() -> None:
            nonlocal pending
            futures = [await producer.send(MATCHES_TOPIC, key=k, value=v) for k, v in pending]
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [(rec, res) for rec, res in zip(pending, results, strict=True) if isinstance(res, BaseException)]
            if failed:
                log.warning("broker refused %d of %d match events; sending them again", len(failed), len(pending),
                            extra={"error": type(failed[0][1]).__name__})
                pending = [rec for rec, _ in failed]
                raise failed[0][1]

        async for attempt in AsyncRetrying(stop=stop_after_attempt(attempts), wait=wait_exponential(multiplier=0.25, max=8.0),
                                           retry=retry_if_exception_type(Exception), reraise=True):
            with attempt:
                await send_pending()
        for _, v in records:
            self.metrics.emitted(v)

    async def ensure_started(self) -> MatcherService:
        async with self._start_lock:
            if self.service is None:
                await self._start()
        assert self.service is not None
        return self.service

    async def _start(self) -> None:
        client = make_client(self.settings.mongodb_uri)
        store = MatcherStore(client, self.settings.matcher_db)
        await store.init()
        snap = await centring.load(store.meta)
        if snap is None:
            snap = centring.priors_only(self.rules.semantic.language_prior_weight)
        self.centring = snap
        self.producer = make_producer(self.settings, "matcher")
        await self.producer.start()
        index = ItemIndex(self.rules)
        config = CandidateConfig(candidates=self.settings.matcher_candidates, exact_below=self.settings.matcher_exact_below,
                                 scan_below=self.settings.matcher_scan_below)
        book = ListBook(index, self.rules, snap.centroids, self.owns, config)
        self.store = store
        self.service = MatcherService(store, book, self.embed, self.send, self.rules.version, snap.version, on_stage=self.metrics.stage)
        stream = store.watch_items()
        cursor = await stream if asyncio.iscoroutine(stream) else stream
        await self.service.load()  # after the stream is open: what is written meanwhile comes through it
        self.loaded = True
        self._tasks.append(asyncio.create_task(self._follow(cursor)))
        self._tasks.append(asyncio.create_task(self._tick()))

    async def _follow(self, cursor: Any) -> None:
        """Items stored by any worker reach every worker's index through the change stream."""
        assert self.service is not None
        backoff = 0.1
        while True:
            try:
                async with cursor as stream:
                    async for change in stream:
                        doc = change.get("fullDocument")
                        if doc is not None:
                            await self.service.on_stored(to_index_doc(doc))
                        backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("item change stream failed; reloading and resuming")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                assert self.store is not None
                cursor = self.store.watch_items()
                if asyncio.iscoroutine(cursor):
                    cursor = await cursor
                await self.service.load()
                await self.service.reconcile()

    async def _tick(self) -> None:
        """Expiry without events, and a centring snapshot refreshed by another worker."""
        assert self.service is not None and self.store is not None
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            try:
                if self.assigned:
                    await self.service.expire_due()
                await self._maybe_refresh_centring()
                snap = await centring.load(self.store.meta)
                if snap is not None and self.centring is not None and snap.version != self.centring.version:
                    await self.use_centring(snap)
            except Exception:
                log.exception("matcher periodic check failed; will retry")

    async def _maybe_refresh_centring(self) -> None:
        """One worker (the owner of need partition 0) rebuilds the snapshot when the open corpus has
        grown enough since the last one: deliberate, rare, and the same version for every worker."""
        if self.service is None or self.centring is None or 0 not in self.owned["need"]:
            return
        open_n = sum(int(self.service.index.tables[k].has_vector.sum()) for k in ("need", "offer"))  # open items with a vector
        if open_n >= self.settings.matcher_centring_min_items and open_n >= REFRESH_GROWTH * self.centring.items:
            snap = await self.refresh_centring()
            log.info("centring snapshot %s built over %d open items", snap.version, snap.items)

    async def use_centring(self, snap: CentringSnapshot) -> None:
        """Switch to another centring snapshot and rescore every owned list."""
        assert self.service is not None
        async with self.service.lock:
            self.centring = snap
            self.service.book.centroids = snap.centroids
            self.service.centring_version = snap.version
            self.service.stamp = f"{self.service.rules_version}|{snap.version}"
        await self.service.reconcile()

    async def refresh_centring(self) -> CentringSnapshot:
        """Build a snapshot from the open items' vectors, store it, and use it."""
        service = await self.ensure_started()
        assert self.store is not None
        async with service.lock:
            parts = [(k, *service.index.vectors(k)) for k in ("need", "offer")]  # open items with a vector
            held = [service.index.docs[k][i] for k, ids, _ in parts for i in ids]
            vectors = np.concatenate([m for _, ids, m in parts if ids]).astype(np.float32) if held else np.zeros((0, 384), dtype=np.float32)
            snap = await asyncio.to_thread(centring.build, vectors, [d.get("text_language") for d in held], self.rules.semantic.language_prior_weight,
                                           [d.get("sectors") or [] for d in held], self.rules.semantic.sector_cap)
        await centring.save(self.store.meta, snap)
        if self.centring is None or snap.version != self.centring.version:
            await self.use_centring(snap)
        return snap

    async def on_assigned(self, assigned: set[Any]) -> None:
        """The worker's partitions changed: own the items on them and recompute their lists."""
        service = await self.ensure_started()
        self.owned = {"need": set(), "offer": set()}
        for tp in assigned:
            if tp.topic in KIND_OF:
                self.owned[KIND_OF[tp.topic]].add(tp.partition)
        self.assigned = True
        self.metrics.set_owned(sum(len(v) for v in self.owned.values()))
        log.info("assigned %s", {k: sorted(v) for k, v in self.owned.items()})
        t0 = time.perf_counter()
        sent = await service.reconcile()
        log.info("reconciled owned lists in %.2fs, %d events sent", time.perf_counter() - t0, sent)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.producer is not None:
            await self.producer.stop()
