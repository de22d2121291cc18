"""The event contract never breaks BACKWARD compatibility with the committed baseline, and the checker
really catches what would break it (each mutation below must be reported; additive ones must not)."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ssmatch.schema_compat import BASELINE, SCHEMAS, check, compare

PAYLOAD = "payloads/match_proposed.v1.json"


def test_current_schemas_are_backward_compatible_with_the_baseline() -> None:
    assert check() == [], "a change to schemas/ breaks consumers; add a .v2 schema instead (see ssmatch/schema_compat.py)"


def _mutated(tmp_path: Path, rel: str, mutate: Callable[[dict[str, Any]], None]) -> Path:
    current = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, current)
    path = current / rel
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    return current


BREAKING: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    ("removed field", PAYLOAD, lambda d: d["properties"].pop("need_title")),
    ("tightened type", PAYLOAD, lambda d: d["properties"]["score"].update(type="integer")),
    ("new required field", PAYLOAD, lambda d: d["required"].append("need_title")),
    ("new required field that did not exist", PAYLOAD, lambda d: (d["properties"].update(x={"type": "string"}), d["required"].append("x"))),
    ("narrowed enum", "payloads/match_decided.v1.json", lambda d: d["properties"]["decision"].update(enum=["approve"])),
    ("lower maxLength", PAYLOAD, lambda d: d["properties"]["need_title"].update(maxLength=10)),
    ("higher minimum", PAYLOAD, lambda d: d["properties"]["need_revision"].update(minimum=2)),
    ("changed pattern", "payloads/item.v1.json", lambda d: d["properties"]["country"].update(pattern="^[A-Z]{2}$")),
    ("changed ref", "events/match.proposed.v1.json", lambda d: d["properties"]["payload"].update({"$ref": "https://ssmatch.org/schemas/payloads/item.v1.json"})),
    ("narrowed envelope entity types", "envelope.v1.json", lambda d: d["properties"]["entity_type"]["enum"].remove("match")),
]
ADDITIVE: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    ("optional field", PAYLOAD, lambda d: d["properties"].update(rank={"type": "integer", "minimum": 1})),
    ("wider enum", "payloads/match_decided.v1.json", lambda d: d["properties"]["decision"]["enum"].append("defer")),
    ("looser maxLength", PAYLOAD, lambda d: d["properties"]["need_title"].update(maxLength=1000)),
    ("integer to number", PAYLOAD, lambda d: d["properties"]["need_revision"].update(type="number")),
    ("new description", PAYLOAD, lambda d: d.update(description="changed words only")),
]


@pytest.mark.parametrize(("why", "rel", "mutate"), BREAKING, ids=[b[0] for b in BREAKING])
def test_breaking_changes_are_reported(tmp_path: Path, why: str, rel: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    problems = check(BASELINE, _mutated(tmp_path, rel, mutate))
    assert problems and all(p.startswith(rel) for p in problems), (why, problems)


@pytest.mark.parametrize(("why", "rel", "mutate"), ADDITIVE, ids=[a[0] for a in ADDITIVE])
def test_additive_changes_pass(tmp_path: Path, why: str, rel: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    assert check(BASELINE, _mutated(tmp_path, rel, mutate)) == [], why


def test_removed_schema_and_topic_changes_are_reported(tmp_path: Path) -> None:
    current = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, current)
    (current / "events" / "match.retracted.v1.json").unlink()
    topics = json.loads((current / "topics.json").read_text())
    topics["topics"][0]["partitions"] += 1
    topics["topics"][1]["events"].pop()
    (current / "topics.json").write_text(json.dumps(topics))
    problems = check(BASELINE, current)
    assert any("match.retracted" in p and "removed" in p for p in problems)
    assert any("partitions changed" in p for p in problems) and any("no longer carries" in p for p in problems)


def test_compare_closing_additional_properties_is_breaking() -> None:
    old = {"type": "object", "properties": {"a": {"type": "string"}}}
    new = copy.deepcopy(old) | {"additionalProperties": False}
    assert compare(old, new) == ["$: additionalProperties closed"]
