"""The pydantic models and the JSON Schemas in schemas/ agree, checked both ways."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from ssmatch import schemas
from ssmatch.events import (
    PAYLOAD_MODELS,
    DeadLetterPayload,
    Envelope,
    InvalidEvent,
    ItemPayload,
    ItemWithdrawnPayload,
    MatchDecidedPayload,
    MatchLifecyclePayload,
    MatchProposedPayload,
    MatchRetractedPayload,
    OrganizationPayload,
    TokenRevokedPayload,
    deterministic_event_id,
    make_event,
    match_id_for,
    parse_event,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def item(**kw: Any) -> ItemPayload:
    base = dict(
        id="n1", kind="need", organization_id="o1", title="Drought-tolerant seed systems", description="d",
        keywords=["seeds"], sdgs=[2], sectors=["agriculture"], modalities=["capacity_development"], languages=["en"],
        country="MWI", status="open", revision=1, created_at=NOW, updated_at=NOW,
    )
    base.update(kw)
    return ItemPayload(**base)


SAMPLES: dict[tuple[str, int], Any] = {
    ("need.published", 1): ("need", "n1", item()),
    ("need.updated", 1): ("need", "n1", item(revision=2, text_language="en", expires_at=NOW)),
    ("need.withdrawn", 1): ("need", "n1", ItemWithdrawnPayload(id="n1", kind="need", organization_id="o1", revision=3)),
    ("offer.published", 1): ("offer", "f1", item(id="f1", kind="offer", delivery_countries=["MWI"], triangular_partners=["DEU"])),
    ("offer.updated", 1): ("offer", "f1", item(id="f1", kind="offer", revision=2)),
    ("offer.withdrawn", 1): ("offer", "f1", ItemWithdrawnPayload(id="f1", kind="offer", organization_id="o2", revision=2, reason="done")),
    ("match.proposed", 1): ("match", "n1.f1", MatchProposedPayload(
        match_id="n1.f1", need_id="n1", offer_id="f1", need_organization_id="o1", offer_organization_id="o2",
        score=0.8, explanation={"components": {"text": 0.3}}, rules_version="1", need_revision=1, offer_revision=1)),
    ("match.retracted", 1): ("match", "n1.f1", MatchRetractedPayload(match_id="n1.f1", need_id="n1", offer_id="f1", reason="withdrawn")),
    ("match.decided", 1): ("match", "n1.f1", MatchDecidedPayload(
        match_id="n1.f1", need_id="n1", offer_id="f1", decision="approve", decided_by="b1",
        need_organization_id="o1", offer_organization_id="o2", score=0.8)),
    ("match.lifecycle", 1): ("match", "n1.f1", MatchLifecyclePayload(
        match_id="n1.f1", need_id="n1", offer_id="f1", event="agreement_reached", reported_by="o1",
        need_organization_id="o1", offer_organization_id="o2", note="MoU signed")),
    ("deadletter.recorded", 1): ("match", "k", DeadLetterPayload(
        consumer="notify", source_topic="ssmatch.matches", source_partition=0, source_offset=5, reason="bad", raw="{}")),
    ("organization.created", 1): ("organization", "o1", OrganizationPayload(
        organization_id="o1", name="Ministry", type="country_office", country="MWI", language="en", revision=1)),
    ("organization.updated", 1): ("organization", "o1", OrganizationPayload(
        organization_id="o1", name="Ministry of Agriculture", type="country_office", country="MWI", language="fr", revision=2)),
    ("organization.contact_changed", 1): ("organization", "o1", OrganizationPayload(
        organization_id="o1", name="Ministry", type="country_office", country="MWI", language="en", revision=3,
        contact={"name": "Awa", "email": "awa@example.org"})),
    ("token.revoked", 1): ("token", "t1", TokenRevokedPayload(token_id="t1", organization_id="o1", revoked_at=NOW)),
}


def test_every_schema_has_a_model_and_every_model_a_schema() -> None:
    assert set(schemas.known_event_types()) == set(PAYLOAD_MODELS)
    assert set(SAMPLES) == set(PAYLOAD_MODELS)


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_model_instances_validate_against_the_json_schema(key: tuple[str, int]) -> None:
    entity_type, entity_id, payload = SAMPLES[key]
    event = make_event(key[0], entity_type, entity_id, payload, producer="test", version=key[1])
    doc = event.to_json_dict()
    assert schemas.validation_errors(doc, schemas.event_schema_id(*key)) == []
    env, typed = parse_event(event.to_bytes())
    assert env == event and typed == payload


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_schema_required_fields_equal_model_required_fields(key: tuple[str, int]) -> None:
    model = PAYLOAD_MODELS[key]
    event_schema = schemas.schema(schemas.event_schema_id(*key))
    payload_schema = schemas.schema(event_schema["properties"]["payload"]["$ref"])
    model_required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert set(payload_schema["required"]) == model_required
    assert set(payload_schema["properties"]) == set(model.model_fields)
    env_schema = schemas.schema("https://ssmatch.org/schemas/envelope.v1.json")
    assert set(env_schema["required"]) == {n for n, f in Envelope.model_fields.items() if f.is_required()}


def _valid_doc(key: tuple[str, int]) -> dict[str, Any]:
    entity_type, entity_id, payload = SAMPLES[key]
    return make_event(key[0], entity_type, entity_id, payload, producer="test").to_json_dict()


MUTATIONS = [
    ("missing payload field", lambda d: d["payload"].pop(next(iter(d["payload"])))),
    ("unknown payload field", lambda d: d["payload"].__setitem__("surprise", 1)),
    ("unknown envelope field", lambda d: d.__setitem__("extra", True)),
    ("wrong entity_type", lambda d: d.__setitem__("entity_type", "widget")),
    ("missing correlation id", lambda d: d.pop("correlation_id")),
]


@pytest.mark.parametrize("key", sorted(SAMPLES))
@pytest.mark.parametrize("name,mutate", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_invalid_documents_are_rejected_by_schema_and_model(key: tuple[str, int], name: str, mutate: Any) -> None:
    doc = _valid_doc(key)
    mutate(doc)
    assert schemas.validation_errors(doc, schemas.event_schema_id(*key)), name
    with pytest.raises(InvalidEvent):
        parse_event(doc)
    with pytest.raises((pydantic.ValidationError, KeyError)):
        env = Envelope.model_validate(doc)
        env.typed_payload()


def test_out_of_range_values_are_rejected_both_ways() -> None:
    doc = _valid_doc(("match.proposed", 1))
    doc["payload"]["score"] = 1.5
    assert schemas.validation_errors(doc, schemas.event_schema_id("match.proposed", 1))
    with pytest.raises(InvalidEvent, match="score"):
        parse_event(doc)
    doc = _valid_doc(("need.published", 1))
    doc["payload"]["sdgs"] = [18]
    with pytest.raises(InvalidEvent):
        parse_event(doc)


def test_parse_event_names_the_problem_for_garbage() -> None:
    with pytest.raises(InvalidEvent, match="not JSON"):
        parse_event(b"\xff\xfe not json")
    with pytest.raises(InvalidEvent, match="unknown event type"):
        parse_event(b'{"type": "need.exploded", "version": 1}')
    with pytest.raises(InvalidEvent, match="unknown event type"):
        parse_event(b'{"type": "need.published", "version": 9}')
    doc = copy.deepcopy(_valid_doc(("need.published", 1)))
    doc["payload"]["country"] = "malawi"
    with pytest.raises(InvalidEvent, match="country"):
        parse_event(doc)


def test_topics_file_names_every_event_once_with_partitions() -> None:
    seen: list[str] = []
    for topic in schemas.topics():
        assert topic["partitions"] >= 1 and topic["key"]
        seen += topic["events"]
    assert sorted(seen) == sorted(t for t, _ in schemas.known_event_types())
    assert schemas.topic_for_event("need.updated") == "ssmatch.needs"
    assert schemas.topic_for_event("match.decided") == "ssmatch.decisions"


def test_deterministic_ids_and_match_ids() -> None:
    assert deterministic_event_id("a", 1) == deterministic_event_id("a", 1)
    assert deterministic_event_id("a", 1) != deterministic_event_id("a", 2)
    assert match_id_for("n1", "f1") == "n1.f1"
