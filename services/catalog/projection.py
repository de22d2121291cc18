"""Match projection: the catalog's read model of the matcher's match events."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from pydantic import BaseModel

from services.catalog.store import CatalogStore
from ssmatch.consumer import EventConsumer
from ssmatch.events import Envelope, MatchProposedPayload, MatchRetractedPayload
from ssmatch.settings import Settings

MATCHES_TOPIC = "ssmatch.matches"


def match_projection(settings: Settings, store: CatalogStore) -> EventConsumer:
    async def handle(envelope: Envelope, payload: BaseModel, _: ConsumerRecord) -> None:
        if isinstance(payload, MatchProposedPayload):
            await store.apply_match_proposed(payload, envelope.occurred_at)
        elif isinstance(payload, MatchRetractedPayload):
            await store.apply_match_retracted(payload, envelope.occurred_at)

    return EventConsumer(settings, f"{settings.group_prefix}-catalog-matches", [MATCHES_TOPIC], handle, name="catalog-matches")
