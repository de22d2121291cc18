"""Event envelope and payload models (pydantic v2), mirroring `schemas/`.

`parse_event` is what every consumer calls: it checks the bytes against the JSON Schema of the
declared type/version and then builds the typed payload, raising `InvalidEvent` with a reason that
goes to the dead-letter topic.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ssmatch import schemas
from ssmatch.logging import correlation_id, new_correlation_id

ItemKind = Literal["need", "offer"]
EntityType = Literal["need", "offer", "match", "organization", "token"]
ItemStatus = Literal["draft", "open", "matched", "closed", "withdrawn"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemPayload(_Strict):
    """Full snapshot of a need or offer (payload of *.published / *.updated)."""

    id: str = Field(min_length=1, max_length=64)
    kind: ItemKind
    organization_id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(max_length=10000)
    keywords: list[str] = Field(max_length=50)
    text_language: str | None = Field(default=None, pattern=r"^[a-z]{2}$")
    sdgs: list[int] = Field(min_length=1)
    sdg_targets: list[str] = Field(default_factory=list)
    sectors: list[str]
    modalities: list[str]
    languages: list[str]
    country: str = Field(pattern=r"^[A-Z]{3}$")
    status: ItemStatus
    revision: int = Field(ge=1)
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    accepts_interpretation: bool = False
    gender_responsive: bool = False
    delivery_countries: list[str] = Field(default_factory=list)
    delivery_regions: list[str] = Field(default_factory=list)
    triangular_partners: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)


class ItemWithdrawnPayload(_Strict):
    id: str = Field(min_length=1, max_length=64)
    kind: ItemKind
    organization_id: str = Field(min_length=1, max_length=64)
    revision: int = Field(ge=1)
    reason: str | None = Field(default=None, max_length=500)


class MatchProposedPayload(_Strict):
    match_id: str = Field(min_length=3, max_length=130)
    need_id: str = Field(min_length=1, max_length=64)
    offer_id: str = Field(min_length=1, max_length=64)
    need_organization_id: str = Field(min_length=1, max_length=64)
    offer_organization_id: str = Field(min_length=1, max_length=64)
    need_title: str | None = Field(default=None, max_length=300)
    offer_title: str | None = Field(default=None, max_length=300)
    score: float = Field(ge=0, le=1)
    explanation: dict[str, Any]
    rules_version: str = Field(min_length=1)
    need_revision: int = Field(ge=1)
    offer_revision: int = Field(ge=1)
    # whose top-K list speaks, and that list's version (absent on events of older matchers)
    side: ItemKind | None = None
    list_version: int | None = Field(default=None, ge=1)
    centring_version: str | None = Field(default=None, min_length=1)


class MatchRetractedPayload(_Strict):
    match_id: str = Field(min_length=3, max_length=130)
    need_id: str = Field(min_length=1, max_length=64)
    offer_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500)
    side: ItemKind | None = None
    list_version: int | None = Field(default=None, ge=1)


class MatchDecidedPayload(_Strict):
    match_id: str = Field(min_length=3, max_length=130)
    need_id: str = Field(min_length=1, max_length=64)
    offer_id: str = Field(min_length=1, max_length=64)
    decision: Literal["approve", "reject"]
    note: str | None = Field(default=None, max_length=2000)
    decided_by: str = Field(min_length=1, max_length=64)
    need_organization_id: str = Field(min_length=1, max_length=64)
    offer_organization_id: str = Field(min_length=1, max_length=64)
    need_title: str | None = Field(default=None, max_length=300)
    offer_title: str | None = Field(default=None, max_length=300)
    score: float = Field(ge=0, le=1)
    explanation: dict[str, Any] = Field(default_factory=dict)


class MatchLifecyclePayload(_Strict):
    match_id: str = Field(min_length=3, max_length=130)
    need_id: str = Field(min_length=1, max_length=64)
    offer_id: str = Field(min_length=1, max_length=64)
    event: Literal["declined", "agreement_reached", "completed", "interested", "not_interested", "in_progress"]
    note: str | None = Field(default=None, max_length=2000)
    reported_by: str = Field(min_length=1, max_length=64)
    need_organization_id: str = Field(min_length=1, max_length=64)
    offer_organization_id: str = Field(min_length=1, max_length=64)
    need_title: str | None = Field(default=None, max_length=300)
    offer_title: str | None = Field(default=None, max_length=300)
    # added (backward compatible): the side a response is for, and a completed partnership's outcome
    party: Literal["need", "offer"] | None = None
    outcome: dict[str, Any] | None = None


class OrganizationContact(_Strict):
    name: str = Field(max_length=120)
    email: str = Field(max_length=254)
    phone: str | None = Field(default=None, max_length=40)


class OrganizationPayload(_Strict):
    """Full snapshot of an organization (organization.created / updated / contact_changed)."""

    organization_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    type: Literal["country_office", "solution_provider", "broker", "admin"]
    country: str = Field(pattern=r"^[A-Z]{3}$")
    language: str = Field(min_length=2, max_length=16)
    contact: OrganizationContact | None = None
    revision: int = Field(ge=1)


class TokenRevokedPayload(_Strict):
    token_id: str = Field(min_length=1, max_length=64)
    organization_id: str = Field(min_length=1, max_length=64)
    revoked_at: datetime


class DeadLetterPayload(_Strict):
    consumer: str
    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    source_key: str | None = None
    reason: str = Field(min_length=1)
    raw: str
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"


PAYLOAD_MODELS: dict[tuple[str, int], type[BaseModel]] = {
    ("need.published", 1): ItemPayload,
    ("need.updated", 1): ItemPayload,
    ("need.withdrawn", 1): ItemWithdrawnPayload,
    ("offer.published", 1): ItemPayload,
    ("offer.updated", 1): ItemPayload,
    ("offer.withdrawn", 1): ItemWithdrawnPayload,
    ("match.proposed", 1): MatchProposedPayload,
    ("match.retracted", 1): MatchRetractedPayload,
    ("match.decided", 1): MatchDecidedPayload,
    ("match.lifecycle", 1): MatchLifecyclePayload,
    ("deadletter.recorded", 1): DeadLetterPayload,
    ("organization.created", 1): OrganizationPayload,
    ("organization.updated", 1): OrganizationPayload,
    ("organization.contact_changed", 1): OrganizationPayload,
    ("token.revoked", 1): TokenRevokedPayload,
}


class Envelope(_Strict):
    """The versioned envelope around every event."""

    event_id: str = Field(min_length=8, max_length=64)
    type: str = Field(pattern=r"^[a-z]+\.[a-z_]+$")
    version: int = Field(ge=1)
    occurred_at: datetime
    correlation_id: str = Field(min_length=1, max_length=64)
    entity_type: EntityType
    entity_id: str = Field(min_length=1, max_length=128)
    producer: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any]

    def typed_payload(self) -> BaseModel:
        return PAYLOAD_MODELS[(self.type, self.version)].model_validate(self.payload)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @property
    def topic(self) -> str:
        return schemas.topic_for_event(self.type)


class InvalidEvent(ValueError):
    """Raised for bytes that are not a valid event of a known type and version."""


def make_event(
    event_type: str,
    entity_type: EntityType,
    entity_id: str,
    payload: BaseModel,
    *,
    producer: str,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    correlation: str | None = None,
    version: int = 1,
) -> Envelope:
    if (event_type, version) not in PAYLOAD_MODELS:
        raise KeyError(f"unknown event {event_type} v{version}")
    return Envelope(
        event_id=event_id or uuid.uuid4().hex,
        type=event_type,
        version=version,
        occurred_at=occurred_at or utcnow(),
        correlation_id=correlation or correlation_id.get() or new_correlation_id(),
        entity_type=entity_type,
        entity_id=entity_id,
        producer=producer,
        payload=payload.model_dump(mode="json"),
    )


def deterministic_event_id(*parts: object) -> str:
    """Same inputs → same id, so a replayed computation yields an event consumers already saw."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "ssmatch:" + ":".join(str(p) for p in parts)).hex


def parse_event(raw: bytes | str | dict[str, Any]) -> tuple[Envelope, BaseModel]:
    """Validate against the JSON Schema of the declared type/version, then build typed models."""
    if isinstance(raw, dict):
        doc = raw
    else:
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidEvent(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidEvent("event is not a JSON object")
    event_type, version = doc.get("type"), doc.get("version")
    if not isinstance(event_type, str) or not isinstance(version, int):
        raise InvalidEvent("missing or malformed 'type'/'version'")
    if (event_type, version) not in PAYLOAD_MODELS:
        raise InvalidEvent(f"unknown event type/version: {event_type} v{version}")
    errors = schemas.validation_errors(doc, schemas.event_schema_id(event_type, version))
    if errors:
        raise InvalidEvent("; ".join(errors[:5]))
    try:
        envelope = Envelope.model_validate(doc)
        return envelope, envelope.typed_payload()
    except ValidationError as exc:
        raise InvalidEvent(str(exc).replace("\n", " ")[:1000]) from exc


def match_id_for(need_id: str, offer_id: str) -> str:
    """A match is identified by its pair."""
    return f"{need_id}.{offer_id}"
