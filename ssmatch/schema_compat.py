"""BACKWARD-compatibility check of ``schemas/`` against a committed baseline.

BACKWARD means: consumers built on the new schemas still accept every event that was valid under
the baseline (events already on the topics, or still produced by a service not yet upgraded). So
widening is fine (a new optional field, a new enum value, a looser bound, a new event type or
topic), and these are breaking: a removed schema, event type or field (with
``additionalProperties: false`` old events carrying it would be refused), a type that accepts less,
a new required field, a narrowed enum or const, a tighter bound, a changed pattern or format,
closing ``additionalProperties``, a changed ``$ref``, a removed topic or a changed partition count.

Run ``python -m ssmatch.schema_compat`` (exit 1 on a break); ``--snapshot`` refreshes the baseline
after a deliberate, versioned change (a new ``.v2`` file rather than an edited ``.v1`` is the way to
make one).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
BASELINE = ROOT / "tests" / "contract" / "baseline"

_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_EXACT = ("pattern", "format", "$ref", "multipleOf")
_TYPES_WIDENING = {"integer": {"integer", "number"}}


def _types(node: dict[str, Any]) -> set[str] | None:
    t = node.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else set(t)


def _accepts_type(new: set[str], old_type: str) -> bool:
    return old_type in new or bool(_TYPES_WIDENING.get(old_type, set()) & new) or (old_type == "integer" and "number" in new)


def compare(old: Any, new: Any, path: str = "$") -> list[str]:
    """Breaking changes from schema ``old`` to ``new`` (both plain JSON Schema nodes)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [f"{path}: changed from {old!r} to {new!r}"]
    problems: list[str] = []
    old_t, new_t = _types(old), _types(new)
    if old_t is not None:
        if new_t is not None and not all(_accepts_type(new_t, t) for t in old_t):
            problems.append(f"{path}: type narrowed from {sorted(old_t)} to {sorted(new_t)}")
    elif new_t is not None and not any(k in old for k in ("const", "enum", "$ref", "allOf", "oneOf", "anyOf")):
        problems.append(f"{path}: type {sorted(new_t)} added where any type was accepted")
    if "enum" in new:
        if "enum" in old:
            lost = [v for v in old["enum"] if v not in new["enum"]]
            if lost:
                problems.append(f"{path}: enum values removed: {lost}")
        elif "const" in old:
            if old["const"] not in new["enum"]:
                problems.append(f"{path}: enum no longer admits the former const {old['const']!r}")
        else:
            problems.append(f"{path}: enum added")
    if "const" in new and ("const" not in old or old["const"] != new["const"]):
        problems.append(f"{path}: const set to {new['const']!r}")
    for key in _LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]):
            problems.append(f"{path}: {key} raised to {new[key]} (was {old.get(key)})")
    for key in _UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]):
            problems.append(f"{path}: {key} lowered to {new[key]} (was {old.get(key)})")
    for key in _EXACT:
        if key in new and new.get(key) != old.get(key):
            problems.append(f"{path}: {key} changed from {old.get(key)!r} to {new[key]!r}")
    added_required = sorted(set(new.get("required", [])) - set(old.get("required", [])))
    if added_required:
        problems.append(f"{path}: new required fields {added_required}")
    if old.get("additionalProperties", True) is not False and new.get("additionalProperties", True) is False:
        problems.append(f"{path}: additionalProperties closed")
    if isinstance(old.get("additionalProperties"), dict) and isinstance(new.get("additionalProperties"), dict):
        problems += compare(old["additionalProperties"], new["additionalProperties"], f"{path}.*")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, sub in old_props.items():
        if name not in new_props:
            if new.get("additionalProperties", True) is False or name in new.get("required", []):
                problems.append(f"{path}.{name}: field removed")
            continue
        problems += compare(sub, new_props[name], f"{path}.{name}")
    for key in ("items", "contains", "not", "if", "then", "else"):
        if key in old and key in new:
            problems += compare(old[key], new[key], f"{path}.{key}")
        elif key in new and key in ("items", "contains", "not", "if"):
            problems.append(f"{path}: {key} added")
    for key in ("oneOf", "anyOf"):
        if key in old:
            if key not in new:
                problems.append(f"{path}: {key} removed")
                continue
            if len(new[key]) < len(old[key]):
                problems.append(f"{path}: {key} lost alternatives")
            for i, (o, n) in enumerate(zip(old[key], new[key], strict=False)):
                problems += compare(o, n, f"{path}.{key}[{i}]")
        elif key in new:
            problems.append(f"{path}: {key} added")
    if "allOf" in old or "allOf" in new:
        o_all, n_all = old.get("allOf", []), new.get("allOf", [])
        if len(n_all) > len(o_all):
            problems.append(f"{path}: allOf gained constraints")
        for i, (o, n) in enumerate(zip(o_all, n_all, strict=False)):
            problems += compare(o, n, f"{path}.allOf[{i}]")
    return problems


def _load(directory: Path) -> dict[str, dict[str, Any]]:
    return {str(p.relative_to(directory)): json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.rglob("*.json"))}


def check(baseline: Path = BASELINE, current: Path = SCHEMAS) -> list[str]:
    """Every breaking change from the baseline directory to the current one."""
    old_docs, new_docs = _load(baseline), _load(current)
    problems: list[str] = []
    for rel, old in old_docs.items():
        if rel == "topics.json":
            continue
        new = new_docs.get(rel)
        if new is None:
            problems.append(f"{rel}: schema removed")
            continue
        problems += [f"{rel}: {p}" for p in compare(old, new)]
    if "topics.json" in old_docs:
        new_topics = {t["name"]: t for t in new_docs.get("topics.json", {"topics": []})["topics"]}
        for topic in old_docs["topics.json"]["topics"]:
            now = new_topics.get(topic["name"])
            if now is None:
                problems.append(f"topics.json: topic {topic['name']} removed")
                continue
            if now["partitions"] != topic["partitions"]:
                problems.append(f"topics.json: {topic['name']} partitions changed {topic['partitions']} → {now['partitions']}")
            lost = sorted(set(topic["events"]) - set(now["events"]))
            if lost:
                problems.append(f"topics.json: {topic['name']} no longer carries {lost}")
    return problems


def snapshot(baseline: Path = BASELINE, current: Path = SCHEMAS) -> None:
    if baseline.exists():
        shutil.rmtree(baseline)
    shutil.copytree(current, baseline)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="BACKWARD-compatibility check of schemas/ against the baseline")
    parser.add_argument("--snapshot", action="store_true", help="replace the baseline with the current schemas")
    args = parser.parse_args(argv)
    if args.snapshot:
        snapshot()
        return 0
    problems = check()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
