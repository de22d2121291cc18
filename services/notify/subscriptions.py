"""Organizations' webhook subscriptions and notification preferences (notify's own collections)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, AsyncMongoClient

from services.notify.preferences import Preferences


class SubscriptionStore:
    def __init__(self, client: AsyncMongoClient, db_name: str) -> None:
        db = client.get_database(db_name)
        self.webhooks = db["webhooks"]
        self.preferences = db["preferences"]

    async def init(self) -> None:
        await self.webhooks.create_index([("organization_id", ASCENDING), ("active", ASCENDING)])

    async def add_webhook(self, org_id: str, url: str, secret: str | None) -> dict[str, Any]:
        doc = {
            "_id": str(ObjectId()),
            "organization_id": org_id,
            "url": url,
            "secret": secret or "whsec_" + secrets.token_urlsafe(32),
            "active": True,
            "created_at": datetime.now(UTC),
            "failures": 0,
            "last_error": None,
            "last_status": None,
            "last_delivery_at": None,
        }
        await self.webhooks.insert_one(doc)
        return doc

    async def list_webhooks(self, org_id: str) -> list[dict[str, Any]]:
        return await self.webhooks.find({"organization_id": org_id, "active": True}).sort("_id", ASCENDING).to_list(100)

    async def count_webhooks(self, org_id: str) -> int:
        return await self.webhooks.count_documents({"organization_id": org_id, "active": True})

    async def remove_webhook(self, org_id: str, webhook_id: str) -> bool:
        res = await self.webhooks.update_one({"_id": webhook_id, "organization_id": org_id, "active": True}, {"$set": {"active": False}})
        return res.modified_count == 1

    async def record_result(self, webhook_id: str, ok: bool, status: int | None, error: str | None) -> None:
        fields: dict[str, Any] = {"last_status": status, "last_delivery_at": datetime.now(UTC), "last_error": None if ok else error}
        if ok:
            update: dict[str, Any] = {"$set": {**fields, "failures": 0}}  # consecutive failures
        else:
            update = {"$set": fields, "$inc": {"failures": 1}}
        await self.webhooks.update_one({"_id": webhook_id}, update)

    async def get_preferences(self, org_id: str) -> Preferences:
        doc = await self.preferences.find_one({"_id": org_id})
        return Preferences.model_validate({k: v for k, v in doc.items() if k != "_id"}) if doc else Preferences()

    async def preferences_for(self, org_ids: list[str]) -> dict[str, Preferences]:
        found = {d["_id"]: d async for d in self.preferences.find({"_id": {"$in": org_ids}})}
        return {o: Preferences.model_validate({k: v for k, v in found[o].items() if k != "_id"}) if o in found else Preferences() for o in org_ids}

    async def set_preferences(self, org_id: str, prefs: Preferences) -> Preferences:
        await self.preferences.replace_one({"_id": org_id}, {"_id": org_id, **prefs.model_dump(mode="json")}, upsert=True)
        return prefs
