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
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

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

    async def apply(self, envelope: Envelope, payload: BaseModel) -> bool:
        """Project one event; True if it changed something. Other event types are ignored."""
        if isinstance(payload, OrganizationPayload):
            fields = payload.model_dump(mode="python", exclude={"organization_id", "revision"})
            return await self._upsert_newer(self.orgs, payload.organization_id, payload.revision, fields)
        if isinstance(payload, ItemPayload):
            fields = payload.model_dump(mode="python", include=set(ITEM_FIELDS) - {"revision"})
            return await self._upsert_newer(self.items, payload.id, payload.revision, fields)
        if isinstance(payload, ItemWithdrawnPayload):
            fields = {"kind": payload.kind, "organization_id": payload.organization_id, "status": "withdrawn"}
            return await self._upsert_newer(self.items, payload.id, payload.revision, fields)
        return False

    async def orgs_by_id(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d async for d in self.orgs.find({"_id": {"$in": ids}})}

    async def broker_ids(self) -> list[str]:
        return [d["_id"] async for d in self.orgs.find({"type": "broker"}, {"_id": 1}).sort("_id", ASCENDING)]

    async def open_items_expiring(self, after: datetime, until: datetime) -> AsyncIterator[dict[str, Any]]:
        async for doc in self.items.find({"status": "open", "expires_at": {"$gt": after, "$lte": until}}):
            yield doc
