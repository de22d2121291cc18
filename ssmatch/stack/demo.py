"""Load the demo catalogue (ssmatch/demo/data.json) through the public API.

Idempotent: organizations are found by name, needs and offers are posted with an Idempotency-Key
derived from their demo key, so a second `make run` on the same data creates nothing twice. Fresh
tokens are issued on every run (stored tokens are hashed, so old ones cannot be shown again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    return json.loads(path.read_text(encoding="utf-8"))


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


def load_demo(catalog_url: str, admin_token: str, data: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """Create demo organizations, tokens, needs and offers; returns (role, organization, token)."""
    data = data or demo_data()
    admin = {"Authorization": f"Bearer {admin_token}"}
    out: list[tuple[str, str, str]] = []
    with httpx.Client(base_url=catalog_url, timeout=30) as client:
        existing = {o["name"]: o for o in _check(client.get("/v1/organizations", headers=admin), "listing organizations")["items"]}
        org_by_key: dict[str, dict[str, Any]] = {}
        tokens: dict[str, str] = {}
        for org in data["organizations"]:
            doc = existing.get(org["name"])
            if doc is None:
                body = {k: org[k] for k in ("name", "type", "country", "contact", "language") if k in org}
                doc = _check(client.post("/v1/organizations", json=body, headers=admin), f"creating organization {org['name']}")
            org_by_key[org["key"]] = doc
            tokens[org["key"]] = _check(
                client.post("/v1/tokens", json={"organization_id": doc["id"]}, headers=admin), f"issuing a token for {org['name']}"
            )["token"]
            out.append((ROLE.get(org["type"], org["type"]), org["name"], tokens[org["key"]]))
        for kind, extra in (("needs", NEED_FIELDS), ("offers", OFFER_FIELDS)):
            for item in data[kind]:
                headers = {"Authorization": f"Bearer {tokens[item['organization']]}", "Idempotency-Key": f"demo-{item['key']}"}
                _check(client.post(f"/v1/{kind}", json=_body(item, extra), headers=headers), f"posting {kind[:-1]} {item['key']}")
    return out
