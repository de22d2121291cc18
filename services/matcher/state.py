"""The matcher's state in MongoDB: the items it has seen (with their vectors) and its proposals.

Kept in MongoDB with idempotent, revision-guarded upserts instead of faust tables, whose recovery
after a restart is unreliable on the embedded broker (STACK.md). An in-memory copy makes scoring
fast; it is refreshed incrementally from MongoDB so several matcher instances see each other's items.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.errors import DuplicateKeyError

from services.matcher.scoring.centering import LanguageCentroids


def now() -> datetime:
    return datetime.now(UTC)


class MatcherState:
    def __init__(self, client: AsyncMongoClient, db_name: str, language_prior_weight: float = 5.0) -> None:
        self.db = client.get_database(db_name)
        self.items_coll = self.db["items"]
        self.proposals = self.db["proposals"]
        self.items: dict[str, dict[str, dict[str, Any]]] = {"need": {}, "offer": {}}
        self._synced_until: datetime | None = None
        # per-language means of the stored vectors, kept in step with `items` (see scoring/centering.py)
        self.centroids = LanguageCentroids(prior_weight=language_prior_weight)
        self.loaded = False

    async def init(self) -> None:
        await self.items_coll.create_index([("stored_at", ASCENDING)])
        await self.items_coll.create_index([("kind", ASCENDING), ("status", ASCENDING)])
        await self.proposals.create_index([("need_id", ASCENDING)])
        await self.proposals.create_index([("offer_id", ASCENDING)])
        await self.refresh()
        self.loaded = True

    async def refresh(self) -> None:
        """Pull items stored since the last sync (by any instance) into memory."""
        query: dict[str, Any] = {}
        started = now()
        if self._synced_until is not None:
            query["stored_at"] = {"$gte": self._synced_until - timedelta(seconds=2)}
        async for doc in self.items_coll.find(query):
            self._remember(doc)
        self._synced_until = started

    def _remember(self, doc: dict[str, Any]) -> None:
        current = self.items[doc["kind"]].get(doc["_id"])
        if current is None or current["revision"] <= doc["revision"]:
            if current is not None and current.get("embedding") is not None:
                self.centroids.remove(current.get("text_language"), np.asarray(current["embedding"]))
            if doc.get("embedding") is not None:
                self.centroids.add(doc.get("text_language"), np.asarray(doc["embedding"]))
            self.items[doc["kind"]][doc["_id"]] = doc

    async def upsert_item(self, doc: dict[str, Any]) -> bool:
        """Store an item if its revision is newer than what we hold; False for a stale redelivery."""
        doc = {**doc, "stored_at": now()}
        try:
            res = await self.items_coll.update_one(
                {"_id": doc["_id"], "revision": {"$lt": doc["revision"]}}, {"$set": doc}, upsert=True
            )
        except DuplicateKeyError:
            return False
        if res.upserted_id is None and res.modified_count == 0:
            return False
        self._remember(doc)
        return True

    async def withdraw_item(self, kind: str, item_id: str, revision: int) -> bool:
        res = await self.items_coll.update_one(
            {"_id": item_id, "revision": {"$lt": revision}},
            {"$set": {"status": "withdrawn", "revision": revision, "stored_at": now()}},
        )
        if item_id in self.items[kind]:
            held = self.items[kind][item_id]
            if held["revision"] < revision:
                self.items[kind][item_id] = {**held, "status": "withdrawn", "revision": revision}
        return res.modified_count > 0

    def get(self, kind: str, item_id: str) -> dict[str, Any] | None:
        return self.items[kind].get(item_id)

    def candidates(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.items[kind].values() if d.get("status") == "open"]

    async def active_proposals(self, kind: str, item_id: str) -> list[dict[str, Any]]:
        return await self.proposals.find({f"{kind}_id": item_id, "active": True}).to_list(None)

    async def record_proposals(self, proposals: list[dict[str, Any]], retracted_ids: list[str]) -> None:
        ops: list[Any] = [
            UpdateOne({"_id": p["match_id"]}, {"$set": {**{k: v for k, v in p.items() if k != "match_id"}, "active": True, "at": now()}}, upsert=True)
            for p in proposals
        ]
        ops += [UpdateOne({"_id": mid}, {"$set": {"active": False, "at": now()}}) for mid in retracted_ids]
        if ops:
            await self.proposals.bulk_write(ops, ordered=False)
