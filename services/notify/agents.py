"""Notify's consumer: match and decision events → alerts, stored before the offset is committed."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from services.notify.inbox import InboxStore
from services.notify.rules import alerts_for
from ssmatch.consumer import EventConsumer, Parsed
from ssmatch.settings import Settings

TOPICS = ["ssmatch.matches", "ssmatch.decisions"]


def notify_consumer(settings: Settings, inbox: InboxStore, catalog_db: AsyncDatabase) -> EventConsumer:
    async def handle_batch(batch: list[Parsed]) -> None:
        """All alerts of one fetch in one unordered, duplicate-tolerant write, before the commit."""
        brokers: list[str] = []
        if any(envelope.type == "match.proposed" for envelope, _, _ in batch):
            brokers = [d["_id"] async for d in catalog_db["organizations"].find({"type": "broker"}, {"_id": 1})]
        alerts = [(alert, envelope.event_id) for envelope, payload, _ in batch for alert in alerts_for(envelope, payload, brokers)]
        await inbox.add_many(alerts)

    return EventConsumer(settings, f"{settings.group_prefix}-notify", TOPICS, None, name="notify", batch_handler=handle_batch)
