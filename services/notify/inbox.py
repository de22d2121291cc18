"""The in-app inbox in MongoDB. A unique key per (fact, recipient, channel) makes delivery idempotent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, InsertOne
from pymongo.errors import BulkWriteError

from services.notify.rules import Alert

CHANNEL = "inbox"


class InboxStore:
    def __init__(self, client: AsyncMongoClient, db_name: str) -> None:
        self.coll = client.get_database(db_name)["inbox"]

    async def init(self) -> None:
        await self.coll.create_index([("dedup_key", ASCENDING), ("organization_id", ASCENDING), ("channel", ASCENDING)], unique=True)
        await self.coll.create_index([("organization_id", ASCENDING), ("_id", DESCENDING)])

    async def add(self, alerts: list[Alert], event_id: str) -> int:
        """Insert alerts, skipping those already delivered; returns how many are new."""
        return await self.add_many([(a, event_id) for a in alerts])

    async def add_many(self, alerts: list[tuple[Alert, str]]) -> int:
        """Insert (alert, event id) pairs in one unordered write; duplicates are skipped."""
        if not alerts:
            return 0
        now = datetime.now(UTC)
        ops = [
            InsertOne(
                {
                    "_id": str(ObjectId()),
                    "organization_id": a.organization_id,
                    "channel": CHANNEL,
                    "kind": a.kind,
                    "match_id": a.match_id,
                    "dedup_key": a.dedup_key,
                    "event_id": event_id,
                    "data": a.data,
                    "created_at": now,
                    "read": False,
                }
            )
            for a, event_id in alerts
        ]
        try:
            res = await self.coll.bulk_write(ops, ordered=False)
            return res.inserted_count
        except BulkWriteError as exc:
            dup_only = all(err.get("code") == 11000 for err in exc.details.get("writeErrors", []))
            if not dup_only:
                raise
            return int(exc.details.get("nInserted", 0))

    async def list_for(self, org_id: str, limit: int, unread_only: bool = False, before: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"organization_id": org_id}
        if unread_only:
            query["read"] = False
        if before:
            query["_id"] = {"$lt": before}
        return await self.coll.find(query).sort("_id", DESCENDING).limit(limit).to_list(limit)

    async def unread_count(self, org_id: str) -> int:
        return await self.coll.count_documents({"organization_id": org_id, "read": False})

    async def mark_read(self, org_id: str, notification_id: str) -> bool:
        res = await self.coll.update_one({"_id": notification_id, "organization_id": org_id}, {"$set": {"read": True}})
        return res.matched_count == 1
