"""Who hears about what: pure mapping from an event to the alerts it causes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ssmatch.events import Envelope, MatchDecidedPayload, MatchLifecyclePayload, MatchProposedPayload

#: lifecycle steps notify has messages for (services/notify/templates.py LIFECYCLE_EVENTS)
ANNOUNCED_LIFECYCLE = frozenset({"declined", "agreement_reached", "completed"})


@dataclass(frozen=True)
class Alert:
    organization_id: str
    kind: str
    match_id: str
    dedup_key: str
    data: dict[str, Any]


def alerts_for(envelope: Envelope, payload: BaseModel, broker_org_ids: list[str]) -> list[Alert]:
    """One alert per recipient. The dedup key names the fact, not the event, so a re-scored or
    replayed proposal of the same pair does not alert a broker twice."""
    if isinstance(payload, MatchProposedPayload):
        data = payload.model_dump(exclude={"match_id", "need_organization_id", "offer_organization_id", "rules_version", "need_revision", "offer_revision"})
        return [
            Alert(org, "match_proposed", payload.match_id, f"match_proposed:{payload.match_id}", data)
            for org in broker_org_ids
        ]
    if isinstance(payload, MatchDecidedPayload):
        kind = "match_approved" if payload.decision == "approve" else "match_rejected"
        data = payload.model_dump(exclude={"match_id", "decision", "decided_by"})
        recipients = dict.fromkeys([payload.need_organization_id, payload.offer_organization_id])
        return [Alert(org, kind, payload.match_id, f"match_decided:{payload.match_id}", data) for org in recipients]
    if isinstance(payload, MatchLifecyclePayload):
        if payload.event not in ANNOUNCED_LIFECYCLE:
            return []  # the catalog's newer steps (responses, in_progress) have no message template yet
        # the side that did not report it hears of it, and the brokers who made the introduction
        data = payload.model_dump(exclude={"match_id"})
        parties = [o for o in (payload.need_organization_id, payload.offer_organization_id) if o != payload.reported_by]
        recipients = dict.fromkeys(parties + [b for b in broker_org_ids if b != payload.reported_by])
        key = f"match_lifecycle:{payload.match_id}:{payload.event}"
        return [Alert(org, "match_lifecycle", payload.match_id, key, data) for org in recipients]
    return []
