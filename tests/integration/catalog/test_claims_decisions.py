"""Claims (POST/DELETE /v1/matches/{id}/claim), single decisions and bulk decisions, with every 409."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.catalog.conftest import NEED, OFFER, Api, admin, post, propose

pytestmark = pytest.mark.integration


async def _setup(api: Api, matches: int = 1) -> dict[str, Any]:
    _, office = await api.org("country_office", "MWI")
    _, provider = await api.org("solution_provider", "BRA")
    broker_a_id, broker_a = await api.org("broker", "KEN", name="Desk A")
    broker_b_id, broker_b = await api.org("broker", "ZAF", name="Desk B")
    need = await post(api, "/v1/needs", NEED, office)
    ids = [await propose(api, need, await post(api, "/v1/offers", OFFER, provider), 0.5 + i / 100) for i in range(matches)]
    return {"office": office, "provider": provider, "a": broker_a, "b": broker_b, "a_id": broker_a_id, "b_id": broker_b_id, "need": need, "ids": ids}


async def test_claim_blocks_other_brokers_until_released_or_expired(api: Api) -> None:
    w = await _setup(api)
    mid = w["ids"][0]
    first = await api.client.post(f"/v1/matches/{mid}/claim", headers=w["a"])
    assert first.status_code == 200 and first.json()["claimed_by"] == w["a_id"]
    until = datetime.fromisoformat(first.json()["claimed_until"])
    assert timedelta(minutes=1) < until - datetime.now(UTC) <= timedelta(minutes=10)
    assert (await api.client.post(f"/v1/matches/{mid}/claim", headers=w["a"])).status_code == 200  # renew
    taken = await api.client.post(f"/v1/matches/{mid}/claim", headers=w["b"])
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "claimed"
    assert taken.json()["error"]["details"]["claimed_by"] == w["a_id"]
    # deciding a match claimed by someone else: 409; releasing someone else's claim: 409
    refused = await api.client.post(f"/v1/matches/{mid}/decision", json={"decision": "approve"}, headers=w["b"])
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "claimed"
    assert (await api.client.delete(f"/v1/matches/{mid}/claim", headers=w["b"])).status_code == 409
    shown = (await api.client.get(f"/v1/matches/{mid}", headers=w["b"])).json()
    assert shown["claimed_by"] == w["a_id"]
    released = await api.client.delete(f"/v1/matches/{mid}/claim", headers=w["a"])
    assert released.status_code == 200 and released.json()["claimed_by"] is None
    assert (await api.client.post(f"/v1/matches/{mid}/claim", headers=w["b"])).status_code == 200
    # an expired claim is no claim
    await api.app.state.store.matches.update_one({"_id": mid}, {"$set": {"claimed_until": datetime.now(UTC) - timedelta(seconds=1)}})
    assert (await api.client.get(f"/v1/matches/{mid}", headers=w["a"])).json()["claimed_by"] is None
    decided = await api.client.post(f"/v1/matches/{mid}/decision", json={"decision": "approve", "note": "good fit"}, headers=w["a"])
    assert decided.status_code == 200 and decided.json()["status"] == "approved" and decided.json()["claimed_by"] is None
    # decided: no more claims or decisions
    again = await api.client.post(f"/v1/matches/{mid}/decision", json={"decision": "reject"}, headers=w["a"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_decided"
    late = await api.client.post(f"/v1/matches/{mid}/claim", headers=w["b"])
    assert late.status_code == 409 and late.json()["error"]["code"] == "not_proposed"
    # parties and unknown matches
    assert (await api.client.post(f"/v1/matches/{mid}/claim", headers=w["office"])).status_code == 403
    assert (await api.client.post("/v1/matches/a.b/claim", headers=w["a"])).status_code == 404


async def test_claim_holder_may_decide_and_admin_may_release(api: Api) -> None:
    w = await _setup(api, 2)
    one, two = w["ids"]
    assert (await api.client.post(f"/v1/matches/{one}/claim", headers=w["a"])).status_code == 200
    assert (await api.client.post(f"/v1/matches/{one}/decision", json={"decision": "reject"}, headers=w["a"])).json()["status"] == "rejected"
    assert (await api.client.post(f"/v1/matches/{two}/claim", headers=w["a"])).status_code == 200
    assert (await api.client.delete(f"/v1/matches/{two}/claim", headers=admin())).status_code == 200
    assert (await api.client.post(f"/v1/matches/{two}/claim", headers=w["b"])).status_code == 200


async def test_approval_needs_an_open_need_and_offer(api: Api) -> None:
    w = await _setup(api, 2)
    one, two = w["ids"]
    offer_id = one.split(".")[1]
    assert (await api.client.delete(f"/v1/offers/{offer_id}", headers=w["provider"])).status_code == 200
    r = await api.client.post(f"/v1/matches/{one}/decision", json={"decision": "approve"}, headers=w["a"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "offer_not_open"
    assert r.json()["error"]["details"] == {"kind": "offer", "id": offer_id, "status": "withdrawn"}
    r = await api.client.patch(f"/v1/needs/{w['need']['id']}", json={"status": "closed"}, headers={**w["office"], "If-Match": '"1"'})
    assert r.status_code == 200
    r = await api.client.post(f"/v1/matches/{two}/decision", json={"decision": "approve"}, headers=w["a"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "need_not_open" and "closed" in r.json()["error"]["message"]
    # rejecting is still possible
    assert (await api.client.post(f"/v1/matches/{two}/decision", json={"decision": "reject"}, headers=w["a"])).status_code == 200
    assert (await api.client.get(f"/v1/matches/{one}", headers=w["a"])).json()["status"] == "proposed"


async def test_bulk_decisions_apply_or_refuse_each_alone(api: Api) -> None:
    w = await _setup(api, 4)
    a, b, c, d = w["ids"]
    assert (await api.client.post(f"/v1/matches/{b}/claim", headers=w["b"])).status_code == 200
    assert (await api.client.post(f"/v1/matches/{c}/decision", json={"decision": "reject"}, headers=w["a"])).status_code == 200
    body = {"decisions": [
        {"match_id": a, "decision": "approve", "note": "bulk"},
        {"match_id": b, "decision": "approve"},
        {"match_id": c, "decision": "approve"},
        {"match_id": "nope.nope", "decision": "reject"},
        {"match_id": d, "decision": "reject", "note": "not relevant"},
    ]}
    r = await api.client.post("/v1/matches/decisions", json=body, headers=w["a"])
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["match_id"] for x in results] == [a, b, c, "nope.nope", d]
    assert [x["status"] for x in results] == ["approved", "proposed", "rejected", None, "rejected"]
    assert [x["http_status"] for x in results] == [200, 409, 409, 404, 200]
    assert [x["error"] and x["error"]["code"] for x in results] == [None, "claimed", "already_decided", "not_found", None]
    events = await api.app.state.store.outbox.count_documents({"event.type": "match.decided", "key": {"$in": [a, b, c, d]}})
    assert events == 3  # c's earlier rejection, a and d now
    # limits and roles
    too_many = {"decisions": [{"match_id": a, "decision": "approve"}] * 51}
    assert (await api.client.post("/v1/matches/decisions", json=too_many, headers=w["a"])).status_code == 422
    assert (await api.client.post("/v1/matches/decisions", json={"decisions": []}, headers=w["a"])).status_code == 422
    assert (await api.client.post("/v1/matches/decisions", json=body, headers=w["office"])).status_code == 403
