"""The whole flow of CONTRACT.md through plain HTTP, with Kafka in between.

A country office posts a need, a provider an offer that shares a sector; the matcher proposes the
pair; the broker sees it in the queue and in its inbox, approves it, and both parties are told.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from services.matcher.scoring import load_rules
from tests.e2e.conftest import ADMIN

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def poll(fn: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s; last: {last!r}")


def make_org(catalog: httpx.Client, name: str, type_: str, country: str) -> tuple[str, str]:
    org = catalog.post("/v1/organizations", json={"name": name, "type": type_, "country": country}, headers=auth(ADMIN))
    assert org.status_code == 201, org.text
    tok = catalog.post("/v1/tokens", json={"organization_id": org.json()["id"]}, headers=auth(ADMIN))
    assert tok.status_code == 201, tok.text
    return org.json()["id"], tok.json()["token"]


NEED = {
    "title": "Drought-tolerant seed systems for smallholder farmers",
    "description": "The Ministry of Agriculture seeks training for extension workers on seed multiplication.",
    "sdgs": [2, 13],
    "sectors": ["agriculture"],
    "modalities": ["capacity_development"],
    "languages": ["en"],
}
OFFER = {
    "title": "Smallholder training on drought-tolerant seeds",
    "description": "Our research agency has trained 5,000 smallholders on seed systems in semi-arid regions.",
    "sdgs": [2],
    "sectors": ["agriculture", "science_technology"],
    "modalities": ["capacity_development", "expert_deployment"],
    "languages": ["en", "pt"],
}


def test_need_and_offer_become_a_match_that_a_broker_approves_and_both_parties_hear_of(catalog: httpx.Client, notify: httpx.Client) -> None:
    _office_id, office = make_org(catalog, "Ministry of Agriculture, Malawi", "country_office", "MWI")
    _provider_id, provider = make_org(catalog, "Agricultural research agency, Brazil", "solution_provider", "BRA")
    _broker_id, broker = make_org(catalog, "South-South brokers", "broker", "KEN")

    need = catalog.post("/v1/needs", json=NEED, headers=auth(office))
    assert need.status_code == 201, need.text
    assert need.json()["country"] == "MWI"  # defaults to the organization's
    offer = catalog.post("/v1/offers", json=OFFER, headers=auth(provider))
    assert offer.status_code == 201, offer.text
    need_id, offer_id = need.json()["id"], offer.json()["id"]

    # other tests share this stack: wait for this pair, not just any match of the need
    matches = poll(lambda: [m for m in catalog.get(f"/v1/needs/{need_id}/matches", headers=auth(office)).json()["items"] if m["offer_id"] == offer_id])
    match = matches[0]
    assert match["status"] == "proposed" and 0 <= match["score"] <= 1
    assert match["id"] == f"{need_id}.{offer_id}" and match["explanation"]["components"]

    queue = catalog.get("/v1/matches", params={"status": "proposed"}, headers=auth(broker)).json()["items"]
    assert match["id"] in [m["id"] for m in queue]
    assert catalog.get("/v1/matches", headers=auth(office)).status_code == 403

    broker_inbox = poll(lambda: [n for n in notify.get("/v1/notifications", headers=auth(broker)).json()["items"] if n["match_id"] == match["id"]])
    assert broker_inbox[0]["kind"] == "match_proposed" and broker_inbox[0]["read"] is False

    decided = catalog.post(f"/v1/matches/{match['id']}/decision", json={"decision": "approve", "note": "Good fit"}, headers=auth(broker))
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    again = catalog.post(f"/v1/matches/{match['id']}/decision", json={"decision": "reject"}, headers=auth(broker))
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_decided"

    for token in (office, provider):
        entries = poll(lambda token=token: [
            n for n in notify.get("/v1/notifications", headers=auth(token)).json()["items"]
            if n["match_id"] == match["id"] and n["kind"] == "match_approved"
        ])
        assert len(entries) == 1
        assert entries[0]["data"]["need_title"] == NEED["title"]
    # the approval is not overwritten by later events: still approved
    time.sleep(1.0)
    assert catalog.get(f"/v1/matches/{match['id']}", headers=auth(office)).json()["status"] == "approved"


def test_withdrawn_offer_retracts_its_proposals(catalog: httpx.Client) -> None:
    _, office = make_org(catalog, "Ministry of Health, Burundi", "country_office", "BDI")
    _, provider = make_org(catalog, "HIV care institute", "solution_provider", "ZAF")
    need = catalog.post("/v1/needs", json={**NEED, "sectors": ["health"], "title": "HIV testing centre"}, headers=auth(office)).json()
    offer = catalog.post("/v1/offers", json={**OFFER, "sectors": ["health"], "title": "HIV testing know-how"}, headers=auth(provider)).json()
    def with_offer() -> list[Any]:
        return [m for m in catalog.get(f"/v1/needs/{need['id']}/matches", headers=auth(office)).json()["items"] if m["offer_id"] == offer["id"]]

    poll(with_offer)
    assert catalog.delete(f"/v1/offers/{offer['id']}", headers=auth(provider)).status_code == 200
    poll(lambda: with_offer() == [])
    retracted = catalog.get(f"/v1/needs/{need['id']}/matches", params={"status": "retracted"}, headers=auth(office)).json()["items"]
    assert retracted and retracted[0]["offer_id"] == offer["id"]


def test_every_service_reports_healthy(stack: Any) -> None:
    for name in ("catalog", "matcher", "notify"):
        assert httpx.get(f"{stack.url(name)}/healthz", timeout=5).status_code == 200


def test_matcher_explains_any_pair_and_shows_its_rules(stack: Any, catalog: httpx.Client) -> None:
    matcher = stack.url("matcher")
    _, office = make_org(catalog, "Ministère de l'Agriculture, Sénégal", "country_office", "SEN")
    assert httpx.get(f"{matcher}/v1/rules", timeout=10).status_code == 401
    rules = httpx.get(f"{matcher}/v1/rules", headers=auth(office), timeout=10).json()
    assert rules["version"] == load_rules().version and rules["rules"]["weights"]["semantic"] > 0
    need = {**NEED, "country": "SEN", "text_language": "en"}
    offer = {**OFFER, "country": "BRA", "text_language": "en"}
    r = httpx.post(f"{matcher}/v1/score", json={"need": need, "offer": offer}, headers=auth(office), timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 < body["score"] <= 1 and body["excluded"] is False
    assert body["explanation"]["rules_version"] == load_rules().version
    assert len(body["explanation"]["reason_codes"]) == len(body["explanation"]["reasons"])
    assert abs(sum(body["explanation"]["components"].values()) - body["score"]) < 0.01
    far = httpx.post(f"{matcher}/v1/score", json={"need": need, "offer": {**offer, "delivery_countries": ["PER"]}}, headers=auth(office), timeout=60).json()
    assert far["excluded"] is True and any("does not deliver to SEN" in r for r in far["explanation"]["reasons"])
    bad = httpx.post(f"{matcher}/v1/score", json={"need": {"title": 3}}, headers=auth(office), timeout=10)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_failed"


def test_after_approval_each_lifecycle_step_reaches_the_other_side(catalog: httpx.Client, notify: httpx.Client) -> None:
    _, office = make_org(catalog, "Ministry of Water, Malawi", "country_office", "MWI")
    _, provider = make_org(catalog, "Water utility peer network, Brazil", "solution_provider", "BRA")
    _, broker = make_org(catalog, "Regional brokering desk", "broker", "ZAF")
    _, outsider = make_org(catalog, "Unrelated office", "country_office", "KEN")
    need = catalog.post("/v1/needs", json={**NEED, "sectors": ["water_sanitation"], "title": "Reduce water losses in city networks",
                                           "description": "Our utility loses 40% of treated water to leaks; we need leak detection training."},
                        headers=auth(office)).json()
    offer = catalog.post("/v1/offers", json={**OFFER, "sectors": ["water_sanitation"], "title": "Leak detection and non-revenue water training",
                                             "description": "Our utility cut water losses from 45% to 20% and trains peers in leak detection."},
                         headers=auth(provider)).json()
    match_id = f"{need['id']}.{offer['id']}"
    poll(lambda: catalog.get(f"/v1/matches/{match_id}", headers=auth(broker)).status_code == 200)
    early = catalog.post(f"/v1/matches/{match_id}/lifecycle", json={"event": "agreement_reached"}, headers=auth(office))
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_approved"
    assert catalog.post(f"/v1/matches/{match_id}/decision", json={"decision": "approve"}, headers=auth(broker)).status_code == 200
    assert catalog.post(f"/v1/matches/{match_id}/lifecycle", json={"event": "completed"}, headers=auth(office)).status_code == 409
    assert catalog.post(f"/v1/matches/{match_id}/lifecycle", json={"event": "agreement_reached"}, headers=auth(outsider)).status_code == 403
    agreed = catalog.post(f"/v1/matches/{match_id}/lifecycle", json={"event": "agreement_reached", "note": "MoU signed"}, headers=auth(office))
    assert agreed.status_code == 200 and agreed.json()["lifecycle"] == "agreement_reached"
    done = catalog.post(f"/v1/matches/{match_id}/lifecycle", json={"event": "completed"}, headers=auth(provider))
    assert done.status_code == 200 and done.json()["lifecycle"] == "completed"

    def lifecycle_alerts(token: str) -> list[str]:
        items = notify.get("/v1/notifications", headers=auth(token)).json()["items"]
        return sorted(n["data"]["event"] for n in items if n["match_id"] == match_id and n["kind"] == "match_lifecycle")

    assert poll(lambda: lifecycle_alerts(provider) == ["agreement_reached"] or None)
    assert poll(lambda: lifecycle_alerts(office) == ["completed"] or None)
    assert poll(lambda: lifecycle_alerts(broker) == ["agreement_reached", "completed"] or None)


def test_the_matcher_dead_letters_a_record_it_cannot_read_and_keeps_matching(stack: Any, catalog: httpx.Client) -> None:
    import asyncio
    import json
    import uuid

    from aiokafka import AIOKafkaProducer

    from tests.helpers import read_topic

    marker = f"garbage-{uuid.uuid4().hex}"

    async def publish_and_read() -> list[Any]:
        producer = AIOKafkaProducer(bootstrap_servers=stack.config.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("ssmatch.needs", key=marker.encode(), value=b"{not an event")
        finally:
            await producer.stop()

        def from_matcher(record: Any) -> bool:
            event = json.loads(record.value)
            return event["payload"]["consumer"] == "matcher" and event["payload"]["source_key"] == marker

        return await read_topic(stack.config.kafka_bootstrap, "ssmatch.deadletter", from_matcher, want=1)

    found = asyncio.run(publish_and_read())
    assert found, "the matcher did not dead-letter the unreadable record"
    payload = json.loads(found[0].value)["payload"]
    assert payload["reason"].startswith("invalid event") and payload["raw"] == "{not an event"
    test_withdrawn_offer_retracts_its_proposals(catalog)  # the partition was not stopped by it
