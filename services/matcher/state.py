"""The matcher's MongoDB: items with their vectors, a text→vector cache, and the owned lists.

Items are revision-guarded upserts written by the worker that owns them; every worker follows the
collection's change stream, so visibility across workers never depends on clocks. A list document
holds a list's version, its entries and the events of its last change until they are sent, so a
worker that dies between storing and sending is completed by the next owner (same event ids).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.errors import DuplicateKeyError

from services.matcher.lists import Entry, Key, ListState
from ssmatch.mongo import bulk_refusals


def pack(vector: Any) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def unpack(raw: bytes | None) -> np.ndarray | None:
    return None if raw is None else np.frombuffer(raw, dtype=np.float32)


def to_index_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored item as the index holds it: the vector as a float32 array."""
    out = {k: v for k, v in doc.items() if k != "vector"}
    out["embedding"] = unpack(doc.get("vector"))
    return out


def list_id(key: Key) -> str:
    return f"{key[0]}:{key[1]}"


class MatcherStore:
    def __init__(self, client: AsyncMongoClient, db_name: str) -> None:
        self.db = client.get_database(db_name)
        self.items = self.db["items"]
        self.vectors = self.db["vectors"]
        self.lists = self.db["lists"]
        self.meta = self.db["meta"]

    async def init(self) -> None:
        await self.lists.create_index("sent")

    # ---- items -------------------------------------------------------------------------------------
    async def put_item(self, doc: dict[str, Any]) -> bool:
        """Store `doc` (vector as float32 bytes) unless a newer or equal revision is stored."""
        return (await self.put_items([doc]))[0]

    async def put_items(self, docs: list[dict[str, Any]]) -> list[bool]:
        """`put_item` for a batch in one round trip: which docs were stored (False: the store already
        held that revision or a newer one). Unordered: one refusal does not stop the others."""
        if not docs:
            return []
        ops = []
        for doc in docs:
            body = {k: v for k, v in doc.items() if k != "embedding"}
            if doc.get("embedding") is not None:
                body["vector"] = pack(doc["embedding"])
            ops.append(UpdateOne({"_id": doc["_id"], "revision": {"$lt": doc["revision"]}}, {"$set": body}, upsert=True))
        return await bulk_refusals(self.items, ops)

    async def withdraw_item(self, kind: str, item_id: str, organization_id: str, revision: int) -> bool:
        try:
            res = await self.items.update_one(
                {"_id": item_id, "revision": {"$lt": revision}},
                {"$set": {"status": "withdrawn", "revision": revision}, "$setOnInsert": {"kind": kind, "organization_id": organization_id}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return res.upserted_id is not None or res.modified_count > 0

    async def all_items(self) -> AsyncIterator[dict[str, Any]]:
        async for doc in self.items.find({}):
            yield to_index_doc(doc)

    async def get_item(self, item_id: str) -> dict[str, Any] | None:
        doc = await self.items.find_one({"_id": item_id})
        return None if doc is None else to_index_doc(doc)

    def watch_items(self) -> Any:
        """Change stream of every item write (any worker), with the full document."""
        return self.items.watch(full_document="updateLookup")

    # ---- text → vector cache ---------------------------------------------------------------------
    async def cached_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        async for doc in self.vectors.find({"_id": {"$in": hashes}}):
            out[doc["_id"]] = unpack(doc["v"])  # type: ignore[assignment]
        return out

    async def cache_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        if vectors:  # first writer wins; a concurrent insert of the same text is a harmless refusal
            await bulk_refusals(self.vectors, [UpdateOne({"_id": h}, {"$setOnInsert": {"v": pack(v)}}, upsert=True)
                                                     for h, v in vectors.items()])

    # ---- lists -------------------------------------------------------------------------------------
    async def load_lists(self, keys: list[Key]) -> dict[Key, tuple[ListState, list[str]]]:
        """List states and their unsent events (serialised envelopes)."""
        out: dict[Key, tuple[ListState, list[str]]] = {}
        ids = [list_id(k) for k in keys]
        for start in range(0, len(ids), 1000):
            async for doc in self.lists.find({"_id": {"$in": ids[start:start + 1000]}}):
                kind, _, item_id = doc["_id"].partition(":")
                entries = {oid: Entry(*e) for oid, e in doc.get("entries", {}).items()}
                out[(kind, item_id)] = (ListState(doc["version"], entries, doc.get("stamp", "")), [] if doc.get("sent", True) else doc.get("pending", []))
        return out

    async def write_list(self, key: Key, previous_version: int, state: ListState, pending: list[str], extra: dict[str, Any]) -> bool:
        """Compare-and-set on the version: False if another writer got there first."""
        return (await self.write_lists([(key, previous_version, state, pending)], extra))[0]

    async def write_lists(self, steps: list[tuple[Key, int, ListState, list[str]]], extra: dict[str, Any] | None = None) -> list[bool]:
        """`write_list` for many lists in one round trip: each a compare-and-set on its version, done
        as a guarded upsert, so a list another writer moved is refused as a duplicate key (False)."""
        ops = []
        for key, previous_version, state, pending in steps:
            body = {
                "version": state.version,
                "entries": {oid: [e.score, e.need_revision, e.offer_revision] for oid, e in state.entries.items()},
                "stamp": state.stamp, "pending": pending, "sent": not pending, **(extra or {}),
            }
            guard = {"version": {"$exists": False}} if previous_version == 0 else {"version": previous_version}
            ops.append(UpdateOne({"_id": list_id(key), **guard}, {"$set": body}, upsert=True))
        return await bulk_refusals(self.lists, ops)

    async def mark_sents(self, steps: list[tuple[Key, int]]) -> None:
        """`mark_sent` for many lists in one round trip."""
        if steps:
            await self.lists.bulk_write([UpdateOne({"_id": list_id(key), "version": version}, {"$set": {"sent": True, "pending": []}})
                                         for key, version in steps], ordered=False)

    async def mark_sent(self, key: Key, version: int) -> None:
        await self.mark_sents([(key, version)])
