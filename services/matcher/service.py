"""MatcherService: what a matcher worker does with item events, independent of faust.

`ingest` embeds new text versions (once per text, cached in the store), stores the items
(revision-guarded) and adds them to the index. `settle` recomputes every owned list a change can
affect and publishes each list's change as one versioned step: the list document (version, entries,
and the events of the step) is written first with a compare-and-set on the version, then the events
are sent, then the step is marked sent. A step stored but not sent is re-sent with the same event
ids by whoever owns the list next. `reconcile` recomputes every owned list after an assignment, a
restart, a rules or centring change. All index changes and scoring happen under one lock; scoring
runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel

from services.matcher.lists import Entry, ItemIndex, Key, ListBook, ListState, other, to_match_item
from services.matcher.scoring import CandidateSet, item_text, score_against
from services.matcher.state import MatcherStore
from ssmatch.events import (
    ItemPayload,
    ItemWithdrawnPayload,
    MatchProposedPayload,
    MatchRetractedPayload,
    deterministic_event_id,
    make_event,
    match_id_for,
)

log = logging.getLogger(__name__)
PRODUCER = "matcher"
Record = tuple[bytes, bytes]  # (key, value) for the matches topic
Sender = Callable[[list[Record]], Awaitable[None]]
Embed = Callable[[list[str]], np.ndarray]


def item_keys(payloads: list[BaseModel]) -> list[Key]:
    """The (kind, id) of every item the payloads name, in order, once each."""
    return list(dict.fromkeys((p.kind, p.id) for p in payloads if isinstance(p, ItemPayload | ItemWithdrawnPayload)))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class Stats:
    """Counters the metrics endpoint reads (kept here so the service needs no metrics library)."""

    def __init__(self) -> None:
        self.proposed = 0
        self.retracted = 0
        self.list_writes = 0
        self.stage_seconds: dict[str, list[float]] = {}

    def observe(self, stage: str, seconds: float) -> None:
        self.stage_seconds.setdefault(stage, []).append(seconds)


class MatcherService:
    def __init__(self, store: MatcherStore, book: ListBook, embed: Embed, send: Sender, rules_version: str, centring_version: str,
                 on_stage: Callable[[str, float], None] | None = None) -> None:
        self.store = store
        self.book = book
        self.index: ItemIndex = book.index
        self.embed = embed
        self.send = send
        self.rules_version = rules_version
        self.centring_version = centring_version
        self.stamp = f"{rules_version}|{centring_version}"
        self.lock = asyncio.Lock()
        self.stats = Stats()
        self._on_stage = on_stage or self.stats.observe
        self._expired_seen: set[tuple[Key, int]] = set()
        # (id, revision) of the items this worker is storing: their change-stream echo is not news
        self._storing: set[tuple[str, int]] = set()
        self._marking: asyncio.Task[None] | None = None

    # ---- loading -----------------------------------------------------------------------------------
    async def load(self) -> None:
        """Fill the index from the store (call after opening the change stream, so nothing is missed)."""
        async with self.lock:
            async for doc in self.store.all_items():
                self.index.put(doc)

    async def on_stored(self, doc: dict[str, Any]) -> None:
        """An item another worker (or this one) stored: index it and settle what it affects. This
        worker's own writes are indexed and settled by the batch that made them (`ingest`): settling
        their echo as well would score each of them twice and hold the lock meanwhile."""
        if (doc["_id"], doc["revision"]) in self._storing:
            return
        async with self.lock:
            if not self.index.put(doc):
                return
        await self.settle([(doc["kind"], doc["_id"])])

    # ---- stage 1: embed and store ------------------------------------------------------------------
    async def ingest(self, payloads: list[BaseModel]) -> list[Key]:
        """Store a batch of item events; returns every item the batch names (stale or not), since a
        redelivered event must be settled again (its output may never have been sent)."""
        t0 = time.perf_counter()
        docs: list[dict[str, Any]] = []
        for snap in (p for p in payloads if isinstance(p, ItemPayload)):
            doc = snap.model_dump(mode="python")
            doc["_id"] = doc.pop("id")
            doc["text_hash"] = text_hash(item_text(to_match_item(doc)))
            docs.append(doc)
        fresh = await self._attach_vectors(docs)
        t1 = time.perf_counter()
        self._on_stage("embed", t1 - t0)
        withdrawals = [p for p in payloads if isinstance(p, ItemWithdrawnPayload)]
        storing = {(doc["_id"], doc["revision"]) for doc in docs} | {(p.id, p.revision) for p in withdrawals}
        storing -= self._storing
        self._storing |= storing
        try:
            # the text → vector cache and the items are written together: one round trip of waiting, not two
            _, stored_flags = await asyncio.gather(self.store.cache_vectors(fresh), self.store.put_items(docs))
            for doc, stored in zip(docs, stored_flags, strict=True):
                await self._index(doc if stored else None, doc["kind"], doc["_id"], doc["revision"])
            for p in withdrawals:
                stored = await self.store.withdraw_item(p.kind, p.id, p.organization_id, p.revision)
                mini = {"_id": p.id, "kind": p.kind, "organization_id": p.organization_id, "status": "withdrawn", "revision": p.revision}
                await self._index(mini if stored else None, p.kind, p.id, p.revision)
        finally:
            self._storing -= storing
        self._on_stage("store", time.perf_counter() - t1)
        return item_keys(payloads)

    async def _index(self, doc: dict[str, Any] | None, kind: str, item_id: str, revision: int) -> None:
        """Index what was stored; when the store already had it (another worker, or before a crash),
        index the stored version if this worker has not seen it yet."""
        if doc is None:
            held = self.index.get(kind, item_id)
            if held is not None and held["revision"] >= revision:
                return
            doc = await self.store.get_item(item_id)
            if doc is None:
                return
        async with self.lock:
            self.index.put(doc)

    async def _attach_vectors(self, docs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Give each doc its vector: the index's when the text is unchanged, else the cache's, else a
        fresh embedding. Returns the fresh ones (text hash → vector), for the caller to cache."""
        need: dict[str, list[dict[str, Any]]] = {}
        for doc in docs:
            held = self.index.get(doc["kind"], doc["_id"])
            vector = self.index.embedding(doc["kind"], doc["_id"]) if held is not None and held.get("text_hash") == doc["text_hash"] else None
            if vector is not None:
                doc["embedding"] = vector
            else:
                need.setdefault(doc["text_hash"], []).append(doc)
        fresh: dict[str, np.ndarray] = {}
        if not need:
            return fresh
        found = await self.store.cached_vectors(list(need))
        missing = [h for h in need if h not in found]
        if missing:
            texts = [item_text(to_match_item(need[h][0])) for h in missing]
            # embedding is CPU-bound (~90 ms per long text here): off the event loop
            vectors = await asyncio.to_thread(self.embed, texts)
            fresh = {h: np.asarray(v, dtype=np.float32) for h, v in zip(missing, vectors, strict=True)}
            found.update(fresh)
        for h, group in need.items():
            for doc in group:
                doc["embedding"] = found[h]
        return fresh

    # ---- stage 2: settle the lists -----------------------------------------------------------------
    async def settle(self, keys: list[Key], now: datetime | None = None) -> int:
        """Recompute every owned list the changes of `keys` can affect; returns events sent.
        `now` decides expiry (tests move it; the worker uses the clock)."""
        t0 = time.perf_counter()
        async with self.lock:
            try:
                affected = await asyncio.to_thread(self._affected, keys, now)
                self._on_stage("candidates", time.perf_counter() - t0)
                sent = await self._write_many(sorted(affected), now, changed=keys)
            finally:
                self.book.forget_scores()
        self._on_stage("settle", time.perf_counter() - t0)
        return sent

    def _affected(self, keys: list[Key], now: datetime | None) -> set[Key]:
        now = now or datetime.now(UTC)
        self.book.prefetch(keys, now)
        out: set[Key] = set()
        for key in keys:
            if self.index.get(*key) is not None:
                out |= self.book.affected(key, now)
            elif self.book.owns(*key):
                out.add(key)
        return out

    async def reconcile(self) -> int:
        """After an assignment (or a restart): take over the owned lists (sending what a previous
        owner stored but did not send), drop the others, recompute every owned list."""
        async with self.lock:
            owned = [(k, i) for k in ("need", "offer") for i in self.index.docs[k] if self.book.owns(k, i)]
            self.book.forget([k for k in self.book.lists if not self.book.owns(*k)])
            sent = await self._take_over([k for k in owned if k not in self.book.lists])
            for start in range(0, len(owned), 256):
                sent += await self._write_many(sorted(owned)[start:start + 256])
        return sent

    async def _take_over(self, keys: list[Key]) -> int:
        loaded = await self.store.load_lists(keys)
        sent = 0
        for key in keys:
            state, pending = loaded.get(key, (ListState(), []))
            self.book.set_list(key, state)
            if pending:
                await self.send([tuple(part.encode() for part in r.split("\n", 1)) for r in pending])  # type: ignore[misc]
                await self.store.mark_sent(key, state.version)
                sent += len(pending)
        return sent

    async def expire_due(self, now: datetime | None = None) -> int:
        """Items whose expiry passed since the last look: settle them like a change (no event needed)."""
        now = now or datetime.now(UTC)
        due = [key for key in self.index.expiring(now.timestamp())
               if (key, self.index.get(*key)["revision"]) not in self._expired_seen]  # type: ignore[index]
        if not due:
            return 0
        sent = await self.settle(due, now)
        self._expired_seen.update((key, self.index.get(*key)["revision"]) for key in due)  # type: ignore[index]
        return sent

    async def _write_many(self, keys: list[Key], now: datetime | None = None, changed: list[Key] | None = None) -> int:
        """The steps of many lists at once: one scoring pass in a thread, the list documents written
        in one bulk, all events sent together, then marked sent. A list another writer moved is
        redone alone (`_write`). With `changed` (the items whose change made these lists move), a list
        scored under the rules and centring in force is derived from what it was (`ListBook.updated`);
        without, every list is recomputed."""
        missing = [k for k in keys if k not in self.book.lists]
        taken_over = set(missing)
        if missing:
            await self._take_over(missing)

        def compute() -> list[tuple[Key, ListState, ListState, list[Record]]]:
            out = []
            for key in keys:
                state = self.book.lists[key]
                # derive only from a list this worker computed: one just taken over from the store may
                # predate changes nobody settled while it had no owner
                derive = changed is not None and state.stamp == self.stamp and key not in taken_over
                new = self.book.updated(key, changed, now) if derive else self.book.top_k(key, now)  # type: ignore[arg-type]
                if new == state.entries and state.stamp == self.stamp:
                    continue
                step = ListState(state.version + 1, new, self.stamp)
                out.append((key, state, step, self._events(key, state, step)))
            return out

        t0 = time.perf_counter()
        steps = await asyncio.to_thread(compute)
        t1 = time.perf_counter()
        self._on_stage("lists_compute", t1 - t0)
        if not steps:
            return 0
        written = await self.store.write_lists([
            (key, state.version, step, [f"{k.decode()}\n{v.decode()}" for k, v in records]) for key, state, step, records in steps
        ])
        records_out: list[Record] = []
        done: list[tuple[Key, int]] = []
        redo: list[Key] = []
        for (key, _, step, records), ok in zip(steps, written, strict=True):
            if ok:
                self.book.set_list(key, step)
                self.stats.list_writes += 1
                records_out += records
                done.append((key, step.version))
            else:
                redo.append(key)
        t2 = time.perf_counter()
        self._on_stage("lists_write", t2 - t1)
        await self.send(records_out)
        self._on_stage("send", time.perf_counter() - t2)
        await self._mark_sent_soon(done)
        sent = len(records_out)
        for key in redo:
            self.book.lists.pop(key, None)
            sent += await self._write(key, now)
        return sent

    async def _mark_sent_soon(self, steps: list[tuple[Key, int]]) -> None:
        """Mark sent steps off the path of the next batch: it waits only if the previous marking is
        still running (one at a time). A step left unmarked (the worker died first, or the store
        refused) is sent again with the same event ids by whoever takes its list over, and consumers
        absorb repeats, so marking is bookkeeping, not what makes a proposal visible."""
        await self.flush_marks()
        if not steps:
            return

        async def mark() -> None:
            t0 = time.perf_counter()
            try:
                await self.store.mark_sents(steps)
            except Exception as exc:  # noqa: BLE001 - see the docstring: a repeat, not a loss
                log.warning("could not mark %d sent list steps; a takeover will send them again", len(steps), extra={"error": repr(exc)})
            self._on_stage("mark_sent", time.perf_counter() - t0)

        self._marking = asyncio.create_task(mark())

    async def flush_marks(self) -> None:
        """Wait for the marking in flight, if any."""
        marking, self._marking = self._marking, None
        if marking is not None:
            await marking

    async def _write(self, key: Key, now: datetime | None = None) -> int:
        """One versioned step of one list: compute, store (compare-and-set), send, mark sent."""
        if key not in self.book.lists:
            await self._take_over([key])
        for _ in range(5):
            state = self.book.lists[key]
            new = await asyncio.to_thread(self.book.top_k, key, now)
            if new == state.entries and state.stamp == self.stamp:
                return 0
            step = ListState(state.version + 1, new, self.stamp)
            records = await asyncio.to_thread(self._events, key, state, step)
            if await self.store.write_list(key, state.version, step, [f"{k.decode()}\n{v.decode()}" for k, v in records], {}):
                break
            # another writer moved the list (a rebalance in flight): take its state and recompute
            self.book.lists.pop(key, None)
            await self._take_over([key])
        else:
            raise RuntimeError(f"list {key} kept changing under this worker")
        self.book.set_list(key, step)
        self.stats.list_writes += 1
        await self.send(records)
        await self.store.mark_sent(key, step.version)
        return len(records)

    def _events(self, key: Key, before: ListState, after: ListState) -> list[Record]:
        kind, item_id = key
        out: list[Record] = []
        me = self.index.get(kind, item_id) or {}
        for oid, entry in after.entries.items():
            if before.entries.get(oid) == entry and before.stamp == after.stamp:
                continue
            out.append(self._proposed(kind, me, self.index.get(other(kind), oid) or {}, entry, after.version))
            self.stats.proposed += 1
        for oid in before.entries:
            if oid in after.entries:
                continue
            need_id, offer_id = (item_id, oid) if kind == "need" else (oid, item_id)
            mid = match_id_for(need_id, offer_id)
            why = self._why_dropped(kind, item_id, oid)
            payload = MatchRetractedPayload(match_id=mid, need_id=need_id, offer_id=offer_id, reason=why, side=kind, list_version=after.version)  # type: ignore[arg-type]
            event = make_event("match.retracted", "match", mid, payload, producer=PRODUCER,
                               event_id=deterministic_event_id("retracted", mid, kind, after.version))
            out.append((mid.encode(), event.to_bytes()))
            self.stats.retracted += 1
        return out

    def _why_dropped(self, kind: str, item_id: str, oid: str) -> str:
        for k, i in ((kind, item_id), (other(kind), oid)):
            doc = self.index.get(k, i)
            if doc is None or doc.get("status") != "open":
                return f"{k} {i} is {doc.get('status') if doc else 'gone'}"
        return f"no longer in the {kind}'s top list (rescored, or better pairs arrived, or an item expired)"

    def _proposed(self, kind: str, me: dict[str, Any], them: dict[str, Any], entry: Entry, version: int) -> Record:
        need, offer = (me, them) if kind == "need" else (them, me)
        mid = match_id_for(need["_id"], offer["_id"])
        cset = CandidateSet.build([self.index.prepared(other(kind), them["_id"])])
        explanation = score_against(self.index.prepared(kind, me["_id"]), cset, self.book.rules, self.book.centroids).score(0).explanation()
        explanation["centring_version"] = self.centring_version
        payload = MatchProposedPayload(
            match_id=mid, need_id=need["_id"], offer_id=offer["_id"],
            need_organization_id=need["organization_id"], offer_organization_id=offer["organization_id"],
            need_title=need["title"][:300], offer_title=offer["title"][:300],
            score=min(1.0, max(0.0, entry.score)), explanation=explanation,
            rules_version=self.rules_version, need_revision=entry.need_revision, offer_revision=entry.offer_revision,
            side=kind, list_version=version, centring_version=self.centring_version,  # type: ignore[arg-type]
        )
        event = make_event("match.proposed", "match", mid, payload, producer=PRODUCER,
                           event_id=deterministic_event_id("proposed", mid, kind, version))
        return (mid.encode(), event.to_bytes())
