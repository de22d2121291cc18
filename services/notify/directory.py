"""Notify's own projection of what it needs from the catalog: organizations and items' expiry.

Each service owns its data: notify never reads the catalog's database. It learns organizations from
``organization.*`` events and needs/offers (owner, title, status, expiry) from ``need.*``/``offer.*``
events, and keeps the newest revision of each (a replayed or reordered older event changes nothing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ssmatch.events import Envelope, ItemPayload, ItemWithdrawnPayload, OrganizationPayload

ITEM_FIELDS = ("kind", "organization_id", "title", "status", "expires_at", "revision")


class Directory:
    def __init__(self, client: AsyncMongoClient, db_name: str) -> None:
        db = client.get_database(db_name)
        self.orgs = db["organizations"]
        self.items = db["items"]

    async def init(self) -> None:
        await self.orgs.create_index([("type", ASCENDING)])
        await self.items.create_index([("status", ASCENDING), ("expires_at", ASCENDING)])

    async def _upsert_newer(self, coll: Any, entity_id: str, revision: int, fields: dict[str, Any]) -> bool:
        """Write ``fields`` unless a revision at least as new is stored already."""
        try:
            res = await coll.update_one({"_id": entity_id, "revision": {"$lt": revision}}, {"$set": {**fields, "revision": revision}}, upsert=True)
        except DuplicateKeyError:
            return False  # the stored one is as new or newer
        return bool(res.modified_count or res.upserted_id is not None)

    @staticmethod
    def _projection(payload: BaseModel) -> tuple[str, str, int, dict[str, Any]] | None:
        """(collection, id, revision, fields) this event projects to; None for other event types."""
        if isinstance(payload, OrganizationPayload):
            fields = payload.model_dump(mode="python", exclude={"organization_id", "revision"})
            return "orgs", payload.organization_id, payload.revision, fields
        if isinstance(payload, ItemPayload):
            return "items", payload.id, payload.revision, payload.model_dump(mode="python", include=set(ITEM_FIELDS) - {"revision"})
        if isinstance(payload, ItemWithdrawnPayload):
            fields = {"kind": payload.kind, "organization_id": payload.organization_id, "status": "withdrawn"}
            return "items", payload.id, payload.revision, fields
        return None

    async def apply(self, envelope: Envelope, payload: BaseModel) -> bool:
        """Project one event; True if it changed something. Other event types are ignored."""
        projected = self._projection(payload)
        if projected is None:
            return False
        coll, entity_id, revision, fields = projected
        return await self._upsert_newer(getattr(self, coll), entity_id, revision, fields)

    async def apply_many(self, payloads: list[BaseModel]) -> int:
        """Project a batch in one unordered bulk write per collection, keeping only the newest revision
        of each entity: a new notify catching up on the whole topic history (thousands of events)
        makes a few round trips per fetch, not one per event. Returns how many events were projected."""
        newest: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        for payload in payloads:
            projected = self._projection(payload)
            if projected is None:
                continue
            coll, entity_id, revision, fields = projected
            seen = newest.get((coll, entity_id))
            if seen is None or revision > seen[0]:
                newest[(coll, entity_id)] = (revision, fields)
        for coll in ("orgs", "items"):
            batch = {eid: (rev, fields) for (c, eid), (rev, fields) in newest.items() if c == coll}
            if batch:
                await self._insert_or_update_newer(getattr(self, coll), batch)
        return len(newest)

    @staticmethod
    async def _insert_or_update_newer(coll: Any, batch: dict[str, tuple[int, dict[str, Any]]]) -> None:
        """Insert what is new (one cheap unordered insert: the common case when catching up), then
        update, revision-guarded, only the entities that were already there."""
        present: set[str] = set()
        try:
            await coll.insert_many([{"_id": eid, **fields, "revision": rev} for eid, (rev, fields) in batch.items()], ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(err.get("code") != 11000 for err in errors):
                raise
            present = {err["op"]["_id"] for err in errors}
        if not present:
            return
        ops = [UpdateOne({"_id": eid, "revision": {"$lt": batch[eid][0]}}, {"$set": {**batch[eid][1], "revision": batch[eid][0]}}, upsert=True)
               for eid in sorted(present)]
        try:
            await coll.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            # duplicate key = a revision at least as new is stored already; anything else is real
            if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
                raise

    async def orgs_by_id(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d async for d in self.orgs.find({"_id": {"$in": ids}})}

    async def broker_ids(self) -> list[str]:
        return [d["_id"] async for d in self.orgs.find({"type": "broker"}, {"_id": 1}).sort("_id", ASCENDING)]

    async def open_items_expiring(self, after: datetime, until: datetime) -> AsyncIterator[dict[str, Any]]:
        async for doc in self.items.find({"status": "open", "expires_at": {"$gt": after, "$lte": until}}):
            yield doc
