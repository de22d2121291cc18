"""IndexSync: keeps the word index a read model of the catalog's needs and offers.

It follows the store's change stream (every writer's changes: this API, imports, the CLI, another
catalog process), and applies them in batches: whatever arrived while the last commit ran goes into
the next one, so a write is searchable within one commit (~60–100 ms on disk here) without a timer.
The stream is opened *before* catching up, so nothing written meanwhile falls between the two.

At start (and after any stream failure) it catches up: an index of another format, or without a
watermark, is rebuilt from the store; otherwise the items written since its watermark (less a margin
for writers whose clocks or commits lag) are applied again. Then each kind's count is compared with
the store's, and a disagreement (a restored or replaced database, a lost directory) rebuilds it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from services.catalog.adapters.word_index import DELETED, WordIndex
from services.catalog.store import CatalogStore
from ssmatch.tasks import BackgroundTask

log = logging.getLogger(__name__)

KINDS = ("need", "offer")
COLLECTIONS = {"needs": "need", "offers": "offer"}
CATCH_UP_MARGIN = timedelta(seconds=60)
REBUILD_BATCH = 2000
MAX_BATCH = 500
STOP_WAIT_S = 3.0


class StreamInvalidated(RuntimeError):
    """The change stream can no longer say what changed (a dropped collection or database)."""


class IndexSync(BackgroundTask):
    task_name = "word-index-sync"

    def __init__(self, store: CatalogStore, index: WordIndex) -> None:
        super().__init__()
        self.store = store
        self.index = index
        self.applied_total = 0
        self.rebuilds_total = 0
        self.last_rebuild_s: float | None = None
        self.errors_total = 0
        self._stopping = False
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def stats(self) -> dict[str, Any]:
        return {"search_index_ready": self.index.ready, "search_index_applied_total": self.applied_total,
                "search_index_rebuilds_total": self.rebuilds_total, "search_index_errors_total": self.errors_total,
                "search_index_last_rebuild_s": self.last_rebuild_s, "search_index_persistent": self.index.persistent}

    async def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                stream = await self.store.db.watch(
                    [{"$match": {"ns.coll": {"$in": list(COLLECTIONS)}}}], full_document="updateLookup", max_await_time_ms=250
                )
                async with stream:
                    await self.catch_up()
                    self.index.ready = True
                    backoff = 0.2
                    await self._follow(stream)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                self.errors_total += 1
                if isinstance(exc, ExceptionGroup) and exc.subgroup(StreamInvalidated) is not None:
                    log.warning("item change stream invalidated (%s); catching up again", exc.exceptions[0])
                else:
                    log.exception("word index sync failed; catching up again")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _follow(self, stream: Any) -> None:
        """One task reads the stream into a queue, the other applies what is queued, in batches; the
        failure of either ends both (and the caller catches up again)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._read(stream))
            group.create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self._queue.get_nowait())
            await self._apply(batch)

    async def _read(self, stream: Any) -> None:
        while stream.alive:
            change = await stream.try_next()  # None after max_await_time_ms without a change
            if change is None:
                continue
            kind = COLLECTIONS.get(change.get("ns", {}).get("coll", ""))
            doc = change.get("fullDocument")
            if kind is None:
                continue
            if "documentKey" not in change:  # the collection was dropped or renamed: catch up again
                raise StreamInvalidated(str(change.get("operationType")))
            if doc is None:  # deleted (the API never deletes items; an operator might)
                doc = {"_id": change["documentKey"]["_id"], "kind": kind, "status": DELETED}
            self.index.stage(doc)  # lists show it from now, before its commit
            self._queue.put_nowait(doc)
        raise RuntimeError("the item change stream ended")

    async def _apply(self, docs: list[dict[str, Any]]) -> None:
        latest: dict[str, dict[str, Any]] = {}
        for doc in docs:  # the stream is in commit order: the last state of an item wins
            latest[doc["_id"]] = doc
        stamps = [d["updated_at"] for d in latest.values() if isinstance(d.get("updated_at"), datetime)]
        self.applied_total += await asyncio.to_thread(self.index.apply, list(latest.values()), max(stamps) if stamps else None)

    async def catch_up(self) -> None:
        while not self._queue.empty():  # left by a failed stream: the catch-up reads them again
            self._queue.get_nowait()
        watermark = self.index.watermark
        if watermark is None:
            await self.rebuild()
            return
        since = watermark - CATCH_UP_MARGIN
        for kind in KINDS:
            while True:
                docs = await self.store.changed_since(kind, since, limit=REBUILD_BATCH)
                if docs:
                    await self._apply(docs)
                if len(docs) < REBUILD_BATCH:
                    break
                since = docs[-1]["updated_at"]
        for kind in KINDS:
            stored = await self.store.items[kind].count_documents({})
            indexed = self.index.count(kind)
            if stored != indexed:
                log.warning("word index holds %d %ss, the store %d: rebuilding it", indexed, kind, stored)
                await self.rebuild()
                return

    async def rebuild(self) -> None:
        """The whole index again from the store, in batches (searches fall back to the store meanwhile)."""
        t0 = time.perf_counter()
        started = datetime.now(UTC)  # later writes reach the index through the stream opened before
        self.index.ready = False
        await asyncio.to_thread(self.index.clear)
        for kind in KINDS:
            batch: list[dict[str, Any]] = []
            async for doc in self.store.items[kind].find({}):  # natural order: a sort makes SecantusDB hold them all
                batch.append(doc)
                if len(batch) >= REBUILD_BATCH:
                    await self._apply(batch)
                    batch = []
            if batch:
                await self._apply(batch)
        await asyncio.to_thread(self.index.apply, [], started)
        self.rebuilds_total += 1
        self.last_rebuild_s = time.perf_counter() - t0
        log.info("word index rebuilt from the store in %.1fs", self.last_rebuild_s)

    async def stop(self) -> None:
        """Cancel and wait a bounded time: a change-stream read on a dropped database may not return
        for a while, and a read model must never hold up the process's shutdown."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
            self._task = None
        await self._close()

    async def _close(self) -> None:
        await asyncio.to_thread(self.index.close)
