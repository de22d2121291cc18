"""Demo loading is idempotent by the demo's own keys: an organization that merely shares a demo
organization's name is neither reused nor in the way of a second `make run`."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from ssmatch.stack.demo import MongoRegistry, demo_data, load_demo
from ssmatch.stack.launcher import Stack
from tests.e2e.conftest import ADMIN
from tests.helpers import uid

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _small_demo() -> dict[str, Any]:
    """One need and one offer of the real demo data with their organizations, under keys unique to this run."""
    data = demo_data()
    need, offer = data["needs"][0], data["offers"][0]
    orgs = [copy.deepcopy(o) for o in data["organizations"] if o["key"] in (need["organization"], offer["organization"])]
    tag = uid("-")
    for org in orgs:
        org["key"] += tag
    need, offer = copy.deepcopy(need), copy.deepcopy(offer)
    need["organization"] += tag
    offer["organization"] += tag
    need["key"] += tag
    offer["key"] += tag
    return {"organizations": orgs, "needs": [need], "offers": [offer]}


def test_a_second_load_works_when_another_organization_shares_a_demo_name(stack: Stack, catalog: httpx.Client, servers: Any) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    data = _small_demo()
    registry = MongoRegistry(servers.mongodb_uri, "ssmatch_catalog")
    try:
        first = load_demo(stack.url("catalog"), ADMIN, data=data, registry=registry)
        ids = {o["key"]: registry.get(o["key"]) for o in data["organizations"]}
        # Someone else registers organizations with the same names (one of another type).
        for org in data["organizations"]:
            other_type = "broker" if org["type"] != "broker" else "country_office"
            r = catalog.post("/v1/organizations", json={"name": org["name"], "type": other_type, "country": org["country"]}, headers=admin)
            assert r.status_code == 201, r.text

        second = load_demo(stack.url("catalog"), ADMIN, data=data, registry=registry)
        assert [(role, name) for role, name, _ in second] == [(role, name) for role, name, _ in first]
        assert {o["key"]: registry.get(o["key"]) for o in data["organizations"]} == ids  # the same organizations
        for kind in ("needs", "offers"):
            owner = ids[data[kind][0]["organization"]]
            items = catalog.get(f"/v1/{kind}", params={"organization_id": owner}, headers=admin).json()["items"]
            assert len(items) == 1  # posted once, by the demo organization, not by its namesake
            # withdraw them again: other tests share this stack's matcher
            assert catalog.delete(f"/v1/{kind}/{items[0]['id']}", headers=admin).status_code == 200
    finally:
        registry.close()
