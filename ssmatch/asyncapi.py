"""The event contract as an AsyncAPI 3.0 document, generated from ``schemas/`` and ``topics.json``.

``schemas/`` stays the single source: this module only re-arranges it (every JSON Schema becomes a
component, its ``$ref`` URLs become local pointers, every topic a channel, every producer and
consumer an operation). The catalog serves it at ``/asyncapi.json``; ``docs/asyncapi.json`` is the
committed copy that CI compares with a fresh generation (regenerate it with
``python -m ssmatch.asyncapi --write`` after changing ``schemas/``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from ssmatch import schemas

BASE = "https://ssmatch.org/schemas/"
COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"


def component_name(schema_id: str) -> str:
    """``https://ssmatch.org/schemas/payloads/item.v1.json`` → ``payloads.item.v1``."""
    return schema_id.removeprefix(BASE).removesuffix(".json").replace("/", ".")


def _localise(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("$id", "$schema"):
                continue
            if key == "$ref" and isinstance(value, str) and value.startswith(BASE):
                out[key] = f"#/components/schemas/{component_name(value)}"
            else:
                out[key] = _localise(value)
        return out
    if isinstance(node, list):
        return [_localise(v) for v in node]
    return node


def _channel_key(topic: str) -> str:
    return topic.removeprefix("ssmatch.")


def generate() -> dict[str, Any]:
    docs = schemas._load_all()
    components = {component_name(sid): _localise(copy.deepcopy(doc)) for sid, doc in sorted(docs.items())}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    versions = dict(schemas.known_event_types())
    for topic in schemas.topics():
        key = _channel_key(topic["name"])
        channel_messages = {}
        for event_type in topic["events"]:
            version = versions.get(event_type, 1)
            name = f"{event_type}.v{version}"
            doc = docs[schemas.event_schema_id(event_type, version)]
            messages[name] = {
                "name": event_type,
                "title": doc.get("title", name),
                "summary": doc.get("description", ""),
                "contentType": "application/json",
                "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"#/components/schemas/events.{name}"}},
                "bindings": {"kafka": {"key": {"type": "string", "description": topic["key"]}, "bindingVersion": "0.5.0"}},
            }
            channel_messages[event_type] = {"$ref": f"#/components/messages/{name}"}
        channels[key] = {
            "address": topic["name"],
            "title": topic["name"],
            "description": f"Kafka topic with {topic['partitions']} partition(s), keyed by {topic['key']}.",
            "messages": channel_messages,
            "bindings": {"kafka": {"topic": topic["name"], "partitions": topic["partitions"], "bindingVersion": "0.5.0"}},
        }
        refs = [{"$ref": f"#/channels/{key}/messages/{m}"} for m in channel_messages]
        for service in topic["producers"]:
            operations[f"{service}_sends_{key}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{key}"}, "messages": refs,
                "summary": f"{service} publishes to {topic['name']}",
            }
        for service in topic["consumers"]:
            operations[f"{service}_receives_{key}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{key}"}, "messages": refs,
                "summary": f"{service} consumes {topic['name']}",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "South-South Match events",
            "version": "1.0.0",
            "description": "Every event is a versioned envelope (components/schemas/envelope.v1) whose `type` and `version` name its "
                           "payload schema. Generated from schemas/ and schemas/topics.json; do not edit by hand.",
        },
        "defaultContentType": "application/json",
        "servers": {"kafka": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "KAFKA_BOOTSTRAP_SERVERS"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components, "messages": messages},
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help=f"write {COMMITTED}")
    args = parser.parse_args(argv)
    text = render(generate())
    if args.write:
        COMMITTED.parent.mkdir(parents=True, exist_ok=True)
        COMMITTED.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
