"""POST /v1/matches/{id}/lifecycle: responses per party, agreement → in progress → completed with an
outcome, declined at any step; each step an outbox event with actor, time and note; invalid steps 409."""

from __future__ import annotations

from typing import Any

import pytest

from ssmatch.events import parse_event
from tests.integration.catalog.conftest import NEED, OFFER, Api, post, propose

pytestmark = pytest.mark.integration

OUTCOME = {"results": "40 engineers trained in leak detection", "people_trained": 40, "beneficiaries": 120000,
           "countries": ["MWI", "ZMB"], "resources_mobilised": {"amount": 250000.0, "currency": "USD"}, "gender_responsive": True}


async def _approved(api: Api) -> dict[str, Any]:
    office_id, office = await api.org("country_office", "MWI")
    provider_id, provider = await api.org("solution_provider", "BRA")
    _, broker = await api.org("broker", "KEN")
    _, outsider = await api.org("country_office", "SEN")
    need = await post(api, "/v1/needs", NEED, office)
    offer = await post(api, "/v1/offers", OFFER, provider)
    mid = await propose(api, need, offer)
    assert (await api.client.post(f"/v1/matches/{mid}/decision", json={"decision": "approve"}, headers=broker)).status_code == 200
    return {"mid": mid, "office": office, "provider": provider, "broker": broker, "outsider": outsider, "office_id": office_id, "provider_id": provider_id}


async def _step(api: Api, w: dict[str, Any], who: str, body: dict[str, Any]) -> Any:
    return await api.client.post(f"/v1/matches/{w['mid']}/lifecycle", json=body, headers=w[who])


async def test_full_lifecycle_with_responses_and_outcome(api: Api) -> None:
    w = await _approved(api)
    r = await _step(api, w, "office", {"event": "interested", "note": "we would like to talk"})
    assert r.status_code == 200 and r.json()["lifecycle"] == "interested"
    assert r.json()["responses"]["need"]["response"] == "interested" and r.json()["responses"]["need"]["by"] == w["office_id"]
    again = await _step(api, w, "office", {"event": "not_interested"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_responded"
    assert (await _step(api, w, "office", {"event": "interested", "party": "offer"})).status_code == 403  # not its side
    assert (await _step(api, w, "outsider", {"event": "interested"})).status_code == 403
    r = await _step(api, w, "provider", {"event": "interested", "note": "happy to"})
    assert r.status_code == 200 and set(r.json()["responses"]) == {"need", "offer"}
    assert (await _step(api, w, "provider", {"event": "completed"})).status_code == 409  # not before agreement
    assert (await _step(api, w, "broker", {"event": "in_progress"})).status_code == 409
    assert (await _step(api, w, "broker", {"event": "agreement_reached", "note": "MoU signed"})).json()["lifecycle"] == "agreement_reached"
    assert (await _step(api, w, "office", {"event": "in_progress"})).json()["lifecycle"] == "in_progress"
    bad = await _step(api, w, "provider", {"event": "in_progress", "outcome": OUTCOME})
    assert bad.status_code == 422  # an outcome goes with completed only
    done = await _step(api, w, "provider", {"event": "completed", "note": "finished", "outcome": OUTCOME})
    assert done.status_code == 200, done.text
    match = done.json()
    assert match["lifecycle"] == "completed" and match["outcome"] == OUTCOME
    assert [s["event"] for s in match["lifecycle_history"]] == ["interested", "interested", "agreement_reached", "in_progress", "completed"]
    assert all(s["by"] and s["at"] for s in match["lifecycle_history"])
    final = await _step(api, w, "office", {"event": "declined"})
    assert final.status_code == 409 and final.json()["error"]["code"] == "invalid_transition"
    # every step is one match.lifecycle event through the outbox, valid against schemas/
    rows = await api.app.state.store.outbox.find({"key": w["mid"], "event.type": "match.lifecycle"}).sort("_id", 1).to_list(None)
    import json

    events = [parse_event(json.dumps(r["event"]).encode())[0] for r in rows]
    assert [e.payload["event"] for e in events] == ["interested", "interested", "agreement_reached", "in_progress", "completed"]
    assert [e.payload["party"] for e in events[:2]] == ["need", "offer"]
    assert events[0].payload["note"] == "we would like to talk" and events[0].payload["reported_by"] == w["office_id"]
    assert events[-1].payload["outcome"] == OUTCOME and events[-1].occurred_at


async def test_declines_and_the_old_short_path_still_work(api: Api) -> None:
    w = await _approved(api)
    r = await _step(api, w, "provider", {"event": "not_interested", "note": "no capacity this year"})
    assert r.status_code == 200 and r.json()["lifecycle"] == "not_interested"
    assert (await _step(api, w, "office", {"event": "agreement_reached"})).status_code == 409
    w = await _approved(api)
    assert (await _step(api, w, "office", {"event": "agreement_reached"})).json()["lifecycle"] == "agreement_reached"
    assert (await _step(api, w, "provider", {"event": "completed"})).json()["lifecycle"] == "completed"
    w = await _approved(api)
    assert (await _step(api, w, "office", {"event": "agreement_reached"})).status_code == 200
    assert (await _step(api, w, "office", {"event": "declined", "note": "funding fell through"})).json()["lifecycle"] == "declined"
    # staff answering for a party must name it
    w = await _approved(api)
    assert (await _step(api, w, "broker", {"event": "interested"})).json()["error"]["code"] == "party_required"
    assert (await _step(api, w, "broker", {"event": "interested", "party": "offer"})).json()["responses"]["offer"]["response"] == "interested"


async def test_no_step_on_a_rejected_or_proposed_match(api: Api) -> None:
    _, office = await api.org("country_office", "MWI")
    _, provider = await api.org("solution_provider", "BRA")
    _, broker = await api.org("broker", "KEN")
    need = await post(api, "/v1/needs", NEED, office)
    mid = await propose(api, need, await post(api, "/v1/offers", OFFER, provider))
    early = await api.client.post(f"/v1/matches/{mid}/lifecycle", json={"event": "interested"}, headers=office)
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_approved"
    assert (await api.client.post(f"/v1/matches/{mid}/decision", json={"decision": "reject"}, headers=broker)).status_code == 200
    for event in ("completed", "interested", "agreement_reached", "declined"):
        r = await api.client.post(f"/v1/matches/{mid}/lifecycle", json={"event": event, **({"outcome": OUTCOME} if event == "completed" else {})}, headers=office)
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_approved", (event, r.text)
