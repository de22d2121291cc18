"""Notify's consumer: match and decision events → alerts, stored before the offset is committed."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from services.notify.inbox import InboxStore
from services.notify.rules import alerts_for
from ssmatch.consumer import EventConsumer
from ssmatch.events import Envelope
from ssmatch.settings import Settings

TOPICS = ["ssmatch.matches", "ssmatch.decisions"]


def notify_consumer(settings: Settings, inbox: InboxStore, catalog_db: AsyncDatabase) -> EventConsumer:
    async def handle(envelope: Envelope, payload: BaseModel, _: ConsumerRecord) -> None:
        brokers: list[str] = []
        if envelope.type == "match.proposed":
            brokers = [d["_id"] async for d in catalog_db["organizations"].find({"type": "broker"}, {"_id": 1})]
        await inbox.add(alerts_for(envelope, payload, brokers), envelope.event_id)

    return EventConsumer(settings, "ssmatch-notify", TOPICS, handle, name="notify")
