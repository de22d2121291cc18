"""Load the JSON Schemas in `schemas/` and validate events against them.

The schemas are the contract; the pydantic models in `ssmatch.events` are checked against them
in tests (both ways), and every consumer validates what it reads with both.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


@lru_cache(maxsize=1)
def _load_all() -> dict[str, dict[str, Any]]:
    """All schema documents by `$id`."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(SCHEMA_DIR.rglob("*.json")):
        if path.name == "topics.json":
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        docs[doc["$id"]] = doc
    return docs


@lru_cache(maxsize=1)
def registry() -> Registry:
    return Registry().with_resources((sid, Resource.from_contents(doc)) for sid, doc in _load_all().items())


def event_schema_id(event_type: str, version: int) -> str:
    return f"https://ssmatch.org/schemas/events/{event_type}.v{version}.json"


def known_event_types() -> list[tuple[str, int]]:
    out = []
    for sid in _load_all():
        if "/events/" in sid:
            name = sid.rsplit("/", 1)[1].removesuffix(".json")
            event_type, _, v = name.rpartition(".v")
            out.append((event_type, int(v)))
    return sorted(out)


def schema(schema_id: str) -> dict[str, Any]:
    return _load_all()[schema_id]


@lru_cache(maxsize=64)
def validator(schema_id: str) -> Draft202012Validator:
    return Draft202012Validator(schema(schema_id), registry=registry(), format_checker=FormatChecker())


def validation_errors(instance: Any, schema_id: str) -> list[str]:
    """Human-readable errors, each prefixed with the JSON path of the bad field; empty when valid."""
    errors = sorted(validator(schema_id).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{e.json_path}: {e.message}" for e in errors]


@lru_cache(maxsize=1)
def topics() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads((SCHEMA_DIR / "topics.json").read_text(encoding="utf-8"))["topics"]
    return found


def topic_for_event(event_type: str) -> str:
    for topic in topics():
        if event_type in topic["events"]:
            return str(topic["name"])
    raise KeyError(f"no topic carries {event_type}")
