"""The AsyncAPI document is generated from schemas/ and topics.json, committed, and served by the catalog."""

from __future__ import annotations

import json
from typing import Any

from ssmatch import schemas
from ssmatch.asyncapi import COMMITTED, generate, render


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref" and isinstance(v, str)] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_committed_document_is_what_the_schemas_generate() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(generate()), "run: python -m ssmatch.asyncapi --write"


def test_every_topic_event_and_ref_is_there_and_resolves() -> None:
    doc = generate()
    assert doc["asyncapi"].startswith("3.")
    assert {c["address"] for c in doc["channels"].values()} == {t["name"] for t in schemas.topics()}
    assert {m["name"] for m in doc["components"]["messages"].values()} == {t for t, _ in schemas.known_event_types()}
    refs = _refs(doc)
    assert refs and all(r.startswith("#/") for r in refs)  # no remote URL left
    for ref in refs:
        _resolve(doc, ref)  # KeyError if dangling
    for op in doc["operations"].values():
        assert op["action"] in ("send", "receive")
        assert all(m["$ref"].startswith(op["channel"]["$ref"] + "/messages/") for m in op["messages"])


def test_embedded_schemas_validate_real_events() -> None:
    """The generated components still validate what the contract's own validators accept."""
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    from ssmatch.events import make_event
    from tests.unit.shared.test_event_contract import SAMPLES

    doc = generate()
    registry = Registry().with_resource("urn:asyncapi", DRAFT202012.create_resource(doc))
    for (event_type, version), (entity_type, entity_id, payload) in SAMPLES.items():
        event = make_event(event_type, entity_type, entity_id, payload, producer="test", version=version).to_json_dict()
        schema = {"$ref": f"urn:asyncapi#/components/schemas/events.{event_type}.v{version}"}
        errors = list(Draft202012Validator(schema, registry=registry).iter_errors(event))
        assert errors == [], (event_type, [e.message for e in errors])
        bad = json.loads(json.dumps(event))
        bad["payload"]["unexpected"] = 1
        assert list(Draft202012Validator(schema, registry=registry).iter_errors(bad)), event_type
