"""Load the demo catalogue (ssmatch/demo/data.json) through the public API.

Idempotent by the demo's own keys, never by names: the launcher keeps a small registry in the store
(database `ssmatch_stack`, collection `demo_organizations`, one row per (catalog database, demo key)
→ organization id), so another organization that shares a demo organization's name is neither
reused nor in the way. Needs and offers are posted with an Idempotency-Key derived from their demo
key, so a second `make run` on the same data creates nothing twice. Fresh tokens are issued on every
run (stored tokens are hashed, so old ones cannot be shown again).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

DEMO_FILE = Path(__file__).resolve().parent.parent / "demo" / "data.json"
ITEM_FIELDS = (
    "title", "description", "keywords", "sdgs", "sectors", "modalities", "languages", "country", "text_language",
    "expires_at", "accepts_interpretation", "gender_responsive",
)
OFFER_FIELDS = ("delivery_countries", "triangular_partners", "capacity", "cost_terms")
NEED_FIELDS = ("urgency", "cost_sharing")
ROLE = {"country_office": "country office", "solution_provider": "provider", "broker": "broker"}


def demo_data(path: Path = DEMO_FILE) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _body(item: dict[str, Any], extra_fields: tuple[str, ...]) -> dict[str, Any]:
    body = {k: item[k] for k in ITEM_FIELDS + extra_fields if k in item and item[k] is not None}
    attributes = dict(item.get("attributes") or {})
    if item.get("source"):
        attributes["source"] = item["source"]
    body["attributes"] = attributes
    return body


def _check(resp: httpx.Response, what: str) -> dict[str, Any]:
    if resp.status_code >= 400:
        raise RuntimeError(f"demo data: {what} failed with {resp.status_code}: {resp.text[:500]}")
    return resp.json()  # type: ignore[no-any-return]


class DemoRegistry(Protocol):
    """Where the launcher remembers which organization it created for each demo key."""

    def get(self, key: str) -> str | None: ...
    def put(self, key: str, organization_id: str) -> None: ...
    def empty(self) -> bool: ...


class MemoryRegistry:
    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.rows.get(key)

    def put(self, key: str, organization_id: str) -> None:
        self.rows[key] = organization_id

    def empty(self) -> bool:
        return not self.rows


class MongoRegistry:
    """The registry in the document store, next to the data it describes (scoped by catalog database)."""

    def __init__(self, mongodb_uri: str, catalog_db: str) -> None:
        from pymongo import MongoClient

        self.client: Any = MongoClient(mongodb_uri, serverSelectionTimeoutMS=10000, appname="ssmatch-launcher")
        self.rows = self.client["ssmatch_stack"]["demo_organizations"]
        self.scope = catalog_db

    def get(self, key: str) -> str | None:
        row = self.rows.find_one({"_id": f"{self.scope}/{key}"})
        return str(row["organization_id"]) if row else None

    def put(self, key: str, organization_id: str) -> None:
        self.rows.replace_one(
            {"_id": f"{self.scope}/{key}"}, {"catalog_db": self.scope, "key": key, "organization_id": organization_id}, upsert=True
        )

    def empty(self) -> bool:
        return self.rows.count_documents({"catalog_db": self.scope}, limit=1) == 0

    def close(self) -> None:
        self.client.close()


def _same(org: dict[str, Any], doc: dict[str, Any]) -> bool:
    return all(doc.get(k) == org[k] for k in ("name", "type", "country"))


def _find_or_create(
    client: httpx.Client, admin: dict[str, str], org: dict[str, Any], registry: DemoRegistry, legacy: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> dict[str, Any]:
    known = registry.get(org["key"])
    if known is not None:
        resp = client.get(f"/v1/organizations/{known}", headers=admin)
        if resp.status_code == 200 and resp.json().get("type") == org["type"]:
            return _check(resp, f"reading organization {org['name']}")
    doc = legacy(org)
    if doc is None:
        body = {k: org[k] for k in ("name", "type", "country", "contact", "language") if k in org}
        doc = _check(client.post("/v1/organizations", json=body, headers=admin), f"creating organization {org['name']}")
    registry.put(org["key"], doc["id"])
    return doc


def load_demo(
    catalog_url: str, admin_token: str, data: dict[str, Any] | None = None, registry: DemoRegistry | None = None
) -> list[tuple[str, str, str]]:
    """Create demo organizations, tokens, needs and offers; returns (role, organization, token)."""
    data = data or demo_data()
    registry = registry if registry is not None else MemoryRegistry()
    admin = {"Authorization": f"Bearer {admin_token}"}
    out: list[tuple[str, str, str]] = []
    with httpx.Client(base_url=catalog_url, timeout=30) as client:
        adoptable: list[dict[str, Any]] = []
        if registry.empty():
            # Data loaded before the registry existed: adopt a demo organization only when exactly
            # one organization has its name, type and country (never one that merely shares a name).
            adoptable = _check(client.get("/v1/organizations", headers=admin), "listing organizations")["items"]

        def legacy(org: dict[str, Any]) -> dict[str, Any] | None:
            same = [d for d in adoptable if _same(org, d)]
            return same[0] if len(same) == 1 else None

        tokens: dict[str, str] = {}
        for org in data["organizations"]:
            doc = _find_or_create(client, admin, org, registry, legacy)
            tokens[org["key"]] = _check(
                client.post("/v1/tokens", json={"organization_id": doc["id"]}, headers=admin), f"issuing a token for {org['name']}"
            )["token"]
            out.append((ROLE.get(org["type"], org["type"]), org["name"], tokens[org["key"]]))
        for kind, extra in (("needs", NEED_FIELDS), ("offers", OFFER_FIELDS)):
            for item in data[kind]:
                headers = {"Authorization": f"Bearer {tokens[item['organization']]}", "Idempotency-Key": f"demo-{item['key']}"}
                _check(client.post(f"/v1/{kind}", json=_body(item, extra), headers=headers), f"posting {kind[:-1]} {item['key']}")
    return out
