"""Match projection: the catalog's read model of the matcher's match events.

Every need and every offer has one top-K list, written by one matcher worker at a time. A
match.proposed / match.retracted event says whether the pair is in the list of one `side`, at that
list's `list_version` (monotone per item and side, across restarts and replays). The projection
keeps, per pair, the newest state it saw for each side: a pair is `proposed` while either side
holds it and `retracted` when neither does. Decided matches (approved, rejected and every later
lifecycle state) are never touched. Events without `side` (older matchers) keep their old meaning.
`project` is the decision, pure; `CatalogStore.apply_match_*` only read, decide and write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRecord
from pydantic import BaseModel

from ssmatch.consumer import EventConsumer
from ssmatch.events import Envelope, MatchProposedPayload, MatchRetractedPayload
from ssmatch.logging import correlation_id
from ssmatch.settings import Settings

if TYPE_CHECKING:
    from services.catalog.store import CatalogStore

MATCHES_TOPIC = "ssmatch.matches"
OPEN_STATES = ("proposed", "retracted")


@dataclass(frozen=True)
class Projected:
    """What to write: the match's new status, its per-side state, and the proposal fields (if any)."""

    status: str
    sides: dict[str, dict[str, Any]]
    fields: dict[str, Any]


def proposal_fields(payload: MatchProposedPayload) -> dict[str, Any]:
    return {
        "need_id": payload.need_id,
        "offer_id": payload.offer_id,
        "need_organization_id": payload.need_organization_id,
        "offer_organization_id": payload.offer_organization_id,
        "need_title": payload.need_title,
        "offer_title": payload.offer_title,
        "score": payload.score,
        "explanation": payload.explanation,
        "rules_version": payload.rules_version,
        "need_revision": payload.need_revision,
        "offer_revision": payload.offer_revision,
        **({"centring_version": payload.centring_version} if payload.centring_version else {}),
    }


def project(current: dict[str, Any] | None, payload: MatchProposedPayload | MatchRetractedPayload) -> Projected | None:
    """The new state of a match after a sided event, or None when the event changes nothing
    (decided match, stale version, retraction of an unknown pair). Pure: easy to test."""
    assert payload.side is not None and payload.list_version is not None, "legacy events are projected by the store"
    proposing = isinstance(payload, MatchProposedPayload)
    if current is not None and current.get("status") not in OPEN_STATES:
        return None
    if current is None and not proposing:
        return None
    sides: dict[str, dict[str, Any]] = dict((current or {}).get("sides") or {})
    held = sides.get(payload.side)
    if held is not None and int(held.get("v", 0)) >= payload.list_version:
        return None
    sides[payload.side] = {"v": payload.list_version, "in": proposing}
    held_by_any = any(s.get("in") for s in sides.values())
    fields = proposal_fields(payload) if isinstance(payload, MatchProposedPayload) else {}
    return Projected(status="proposed" if held_by_any else "retracted", sides=sides, fields=fields)


Sided = MatchProposedPayload | MatchRetractedPayload


def sided_update(current: dict[str, Any] | None, payload: Sided, occurred_at: datetime) -> dict[str, Any] | None:
    """The `$set` one sided event makes on the match as `current` holds it (None: no change)."""
    decision = project(current, payload)
    if decision is None:
        return None
    update: dict[str, Any] = {**decision.fields, "status": decision.status, "sides": decision.sides}
    if decision.status == "proposed" and isinstance(payload, MatchProposedPayload):
        update["proposed_at"] = occurred_at
    if decision.status == "retracted" and (current or {}).get("status") != "retracted":
        update.update(retracted_reason=getattr(payload, "reason", "no longer proposed"), retracted_at=occurred_at)
    return update


def fold_updates(current: dict[str, Any] | None, events: list[tuple[Sided, datetime]]) -> dict[str, Any] | None:
    """One `$set` equal to applying `events` (all of one match, in order) one after the other: the
    projection of a batch writes each match once instead of once per event. Pure."""
    state = current
    merged: dict[str, Any] = {}
    for payload, occurred_at in events:
        update = sided_update(state, payload, occurred_at)
        if update is None:
            continue
        merged.update(update)
        state = {**(state or {"_id": payload.match_id}), **update}
    return merged or None


def match_projection(settings: Settings, store: CatalogStore) -> EventConsumer:
    """The catalog's consumer of match events. A fetch's events are applied as one batch: each match
    is read once and written once, whatever number of its events the batch holds, since a burst of
    new items makes thousands of events and one round trip per event kept proposals waiting."""

    async def handle_batch(batch: list[tuple[Envelope, BaseModel, ConsumerRecord]]) -> None:
        token = correlation_id.set(batch[0][0].correlation_id)
        try:
            await store.apply_match_events([(payload, envelope.occurred_at) for envelope, payload, _ in batch
                                            if isinstance(payload, MatchProposedPayload | MatchRetractedPayload)])
        finally:
            correlation_id.reset(token)

    return EventConsumer(settings, f"{settings.group_prefix}-catalog-matches", [MATCHES_TOPIC], None, name="catalog-matches",
                         batch_handler=handle_batch)
