"""Catalog API behaviour users rely on, against the real document store."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest

from ssmatch import reference, schemas
from tests.integration.catalog.conftest import NEED, OFFER, Api, admin

pytestmark = pytest.mark.integration


def error(resp: Any) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


async def test_create_read_and_default_country(api: Api) -> None:
    _, office = await api.org(country="SEN")
    r = await api.client.post("/v1/needs", json=NEED, headers=office)
    assert r.status_code == 201
    need = r.json()
    assert need["country"] == "SEN" and need["status"] == "open" and need["revision"] == 1
    assert need["text_language"] == "fr"
    got = await api.client.get(f"/v1/needs/{need['id']}", headers=office)
    assert got.status_code == 200 and got.headers["etag"] == '"1"'
    assert got.json()["title"] == NEED["title"]


async def test_auth_is_required_and_roles_are_enforced(api: Api) -> None:
    _, office = await api.org()
    _, provider = await api.org("solution_provider", "BRA")
    assert (await api.client.post("/v1/needs", json=NEED)).status_code == 401
    bad = await api.client.post("/v1/needs", json=NEED, headers={"Authorization": "Bearer ssm_nope"})
    assert bad.status_code == 401 and error(bad)["code"] == "unauthorized"
    wrong_role = await api.client.post("/v1/needs", json=NEED, headers=provider)
    assert wrong_role.status_code == 403 and error(wrong_role)["code"] == "forbidden"
    assert (await api.client.post("/v1/offers", json=OFFER, headers=office)).status_code == 403
    assert (await api.client.post("/v1/organizations", json={"name": "X", "type": "broker", "country": "KEN"}, headers=office)).status_code == 403


async def test_revoked_token_stops_working(api: Api) -> None:
    org = (await api.client.post("/v1/organizations", json={"name": "Rev", "type": "country_office", "country": "MWI"}, headers=admin())).json()
    tok = (await api.client.post("/v1/tokens", json={"organization_id": org["id"]}, headers=admin())).json()
    headers = {"Authorization": f"Bearer {tok['token']}"}
    assert (await api.client.get("/v1/needs", headers=headers)).status_code == 200
    assert (await api.client.delete(f"/v1/tokens/{tok['id']}", headers=admin())).status_code == 200
    assert (await api.client.get("/v1/needs", headers=headers)).status_code == 401
    stored = await api.app.state.store.tokens.find_one({"token_id": tok["id"]})
    assert tok["token"] not in json.dumps(stored, default=str)  # only the hash is stored


@pytest.mark.parametrize(
    "patch,path",
    [
        ({"sectors": ["agri"]}, "$.sectors[0]"),
        ({"sdgs": [18]}, "$.sdgs[0]"),
        ({"sdgs": []}, "$.sdgs"),
        ({"modalities": ["lunch"]}, "$.modalities[0]"),
        ({"languages": ["French"]}, "$.languages[0]"),
        ({"country": "XXX"}, "$.country"),
        ({"title": ""}, "$.title"),
        ({"title": "x" * 201}, "$.title"),
        ({"colour": "blue"}, "$.colour"),
        ({"attributes": {"$where": "1"}}, "$.attributes"),
        ({"attributes": {"a.b": 1}}, "$.attributes"),
        ({"expires_at": "2027-01-01T00:00:00"}, "$"),
    ],
)
async def test_validation_errors_name_the_bad_field(api: Api, patch: dict[str, Any], path: str) -> None:
    _, office = await api.org()
    r = await api.client.post("/v1/needs", json={**NEED, **patch}, headers=office)
    assert r.status_code == 422, r.text
    err = error(r)
    assert err["code"] == "validation_failed"
    assert path in [d["path"] for d in err["details"]], err["details"]


async def test_text_is_stored_nfc_normalised(api: Api) -> None:
    _, office = await api.org()
    decomposed = unicodedata.normalize("NFD", "Réseau d'eau potable à Niamey")
    r = await api.client.post("/v1/needs", json={**NEED, "title": decomposed}, headers=office)
    assert r.json()["title"] == unicodedata.normalize("NFC", decomposed) != decomposed


async def test_non_json_and_oversized_bodies_are_4xx(api: Api) -> None:
    _, office = await api.org()
    r = await api.client.post("/v1/needs", content=b"{oops", headers={**office, "content-type": "application/json"})
    assert r.status_code == 422 and error(r)["code"] == "validation_failed"
    big = {**NEED, "description": "x" * 300_000}
    r = await api.client.post("/v1/needs", json=big, headers=office)
    assert r.status_code == 413 and error(r)["code"] == "payload_too_large"


async def test_patch_needs_if_match_and_refuses_stale_versions(api: Api) -> None:
    _, office = await api.org()
    _, other = await api.org(name="Other office")
    need = (await api.client.post("/v1/needs", json=NEED, headers=office)).json()
    url = f"/v1/needs/{need['id']}"
    missing = await api.client.patch(url, json={"title": "New title here"}, headers=office)
    assert missing.status_code == 428 and error(missing)["code"] == "precondition_required"
    ok = await api.client.patch(url, json={"title": "New title here"}, headers={**office, "If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"' and ok.json()["title"] == "New title here"
    stale = await api.client.patch(url, json={"title": "Lost update"}, headers={**office, "If-Match": '"1"'})
    assert stale.status_code == 412 and error(stale)["details"]["current_etag"] == '"2"'
    assert (await api.client.patch(url, json={"title": "Not mine"}, headers={**other, "If-Match": '"2"'})).status_code == 403
    bad = await api.client.patch(url, json={"sdgs": [0]}, headers={**office, "If-Match": '"2"'})
    assert bad.status_code == 422 and "$.sdgs[0]" in [d["path"] for d in error(bad)["details"]]
    readonly = await api.client.patch(url, json={"organization_id": "x"}, headers={**office, "If-Match": '"2"'})
    assert readonly.status_code == 422
    assert (await api.client.get(url, headers=office)).json()["title"] == "New title here"


async def test_idempotency_key_returns_the_first_response_and_creates_nothing_twice(api: Api) -> None:
    office_id, office = await api.org()
    headers = {**office, "Idempotency-Key": "retry-42"}
    first = await api.client.post("/v1/needs", json=NEED, headers=headers)
    second = await api.client.post("/v1/needs", json=NEED, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    listed = (await api.client.get("/v1/needs", params={"organization_id": office_id}, headers=office)).json()["items"]
    assert len(listed) == 1
    conflict = await api.client.post("/v1/needs", json={**NEED, "title": "Something else entirely"}, headers=headers)
    assert conflict.status_code == 409 and error(conflict)["code"] == "idempotency_key_reused"
    # keys are per organization: another office may use the same key
    _, other = await api.org(name="Another")
    assert (await api.client.post("/v1/needs", json=NEED, headers={**other, "Idempotency-Key": "retry-42"})).json()["id"] != first.json()["id"]


async def test_every_change_is_one_outbox_event_and_one_audit_entry(api: Api) -> None:
    _, office = await api.org()
    need = (await api.client.post("/v1/needs", json=NEED, headers=office)).json()
    await api.client.patch(f"/v1/needs/{need['id']}", json={"sdgs": [2]}, headers={**office, "If-Match": '"1"'})
    await api.client.delete(f"/v1/needs/{need['id']}", headers=office)
    store = api.app.state.store
    events = [d["event"] async for d in store.outbox.find({"key": need["id"]}).sort("_id", 1)]
    assert [e["type"] for e in events] == ["need.published", "need.updated", "need.withdrawn"]
    for e in events:
        assert schemas.validation_errors(e, schemas.event_schema_id(e["type"], e["version"])) == []
    assert [e["payload"]["revision"] for e in events] == [1, 2, 3]
    audit = [a["action"] async for a in store.audit.find({"entity_id": need["id"]}).sort("at", 1)]
    assert audit == ["create", "update", "withdraw"]


async def test_withdraw_is_owner_only_and_hides_from_default_lists(api: Api) -> None:
    office_id, office = await api.org()
    _, other = await api.org(name="Other")
    need = (await api.client.post("/v1/needs", json=NEED, headers=office)).json()
    assert (await api.client.delete(f"/v1/needs/{need['id']}", headers=other)).status_code == 403
    r = await api.client.delete(f"/v1/needs/{need['id']}", headers=office)
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    assert (await api.client.get("/v1/needs", params={"organization_id": office_id}, headers=office)).json()["items"] == []
    gone = (await api.client.get("/v1/needs", params={"organization_id": office_id, "status": "withdrawn"}, headers=office)).json()["items"]
    assert [n["id"] for n in gone] == [need["id"]]
    assert (await api.client.get("/v1/needs/does-not-exist", headers=office)).status_code == 404


async def test_list_filters_text_search_and_cursor_pagination(api: Api) -> None:
    office_id, office = await api.org()
    made = []
    for i in range(7):
        body = {**NEED, "title": f"Besoin numéro {i} sécurité", "sdgs": [2 if i % 2 else 6], "sectors": ["food_security" if i % 2 else "water_sanitation"]}
        made.append((await api.client.post("/v1/needs", json=body, headers=office)).json()["id"])
    zh = {**NEED, "title": "建立移民统计数据库", "description": "需要技术援助", "languages": ["zh"], "sectors": ["migration"]}
    zh_id = (await api.client.post("/v1/needs", json=zh, headers=office)).json()["id"]
    params = {"organization_id": office_id}
    seen: list[str] = []
    cursor = None
    while True:
        page = (await api.client.get("/v1/needs", params={**params, "limit": 3, **({"cursor": cursor} if cursor else {})}, headers=office)).json()
        assert len(page["items"]) <= 3
        seen += [n["id"] for n in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed([*made, zh_id]))  # newest first, each once
    by_sdg = (await api.client.get("/v1/needs", params={**params, "sdg": 6}, headers=office)).json()["items"]
    assert len(by_sdg) == 4
    by_sector = (await api.client.get("/v1/needs", params={**params, "sector": "food_security"}, headers=office)).json()["items"]
    assert len(by_sector) == 3
    folded = (await api.client.get("/v1/needs", params={**params, "q": "SECURITE numero 3"}, headers=office)).json()["items"]
    assert [n["id"] for n in folded] == [made[3]]
    chinese = (await api.client.get("/v1/needs", params={**params, "q": "统计"}, headers=office)).json()["items"]
    assert [n["id"] for n in chinese] == [zh_id]
    assert (await api.client.get("/v1/needs", params={"limit": 101}, headers=office)).status_code == 422
    assert (await api.client.get("/v1/needs", params={"cursor": "garbage!"}, headers=office)).status_code == 422


async def test_taxonomy_endpoints_serve_the_canonical_codes_with_etags(api: Api) -> None:
    _, office = await api.org()
    sectors = await api.client.get("/v1/taxonomy/sectors", headers=office)
    assert sectors.status_code == 200
    assert {s["code"] for s in sectors.json()["items"]} == set(reference.SECTOR_CODES)
    assert all({"en", "fr", "es"} <= set(s["names"]) for s in sectors.json()["items"])
    cached = await api.client.get("/v1/taxonomy/sectors", headers={**office, "If-None-Match": sectors.headers["etag"]})
    assert cached.status_code == 304
    modalities = (await api.client.get("/v1/taxonomy/modalities", headers=office)).json()["items"]
    assert {m["code"] for m in modalities} == set(reference.MODALITY_CODES)
    sdgs = (await api.client.get("/v1/taxonomy/sdgs", headers=office)).json()["items"]
    assert [s["code"] for s in sdgs] == list(range(1, 18))
    countries = (await api.client.get("/v1/taxonomy/countries", headers=office)).json()["items"]
    assert any(c["code"] == "MWI" and c["ldc"] for c in countries)
    assert (await api.client.get("/v1/taxonomy/sectors")).status_code == 401


async def test_decisions_need_a_broker_and_an_existing_match(api: Api) -> None:
    _, office = await api.org()
    _, broker = await api.org("broker", "KEN")
    assert (await api.client.post("/v1/matches/a.b/decision", json={"decision": "approve"}, headers=office)).status_code == 403
    assert (await api.client.post("/v1/matches/a.b/decision", json={"decision": "approve"}, headers=broker)).status_code == 404
    bad = await api.client.post("/v1/matches/a.b/decision", json={"decision": "maybe"}, headers=broker)
    assert bad.status_code == 422
    assert (await api.client.get("/v1/matches", params={"status": "proposed"}, headers=broker)).json() == {"items": [], "next_cursor": None}


async def test_errors_are_json_with_a_code_even_for_unknown_routes(api: Api) -> None:
    r = await api.client.get("/v1/nothing-here")
    assert r.status_code == 404 and error(r)["code"] == "not_found"
    r = await api.client.put("/v1/needs", headers=admin())
    assert r.status_code == 405 and error(r)["code"] == "method_not_allowed"


async def test_offers_accept_delivery_regions_and_refuse_unknown_ones(api: Api) -> None:
    _, provider = await api.org("solution_provider", "BRA")
    ok = await api.client.post("/v1/offers", json={**OFFER, "delivery_regions": ["Western Africa", "SIDS"]}, headers=provider)
    assert ok.status_code == 201 and ok.json()["delivery_regions"] == ["Western Africa", "SIDS"]
    bad = await api.client.post("/v1/offers", json={**OFFER, "delivery_regions": ["Atlantis"]}, headers=provider)
    assert bad.status_code == 422 and "$.delivery_regions[0]" in [d["path"] for d in error(bad)["details"]]


async def test_sdg_targets_are_validated_against_their_goals(api: Api) -> None:
    _, office = await api.org()
    ok = await api.client.post("/v1/needs", json={**NEED, "sdgs": [2, 17], "sdg_targets": ["2.4", "17.a"]}, headers=office)
    assert ok.status_code == 201 and ok.json()["sdg_targets"] == ["2.4", "17.a"]
    event = await api.app.state.store.outbox.find_one({"key": ok.json()["id"]})
    assert event["event"]["payload"]["sdg_targets"] == ["2.4", "17.a"]
    stray = await api.client.post("/v1/needs", json={**NEED, "sdgs": [2], "sdg_targets": ["6.1"]}, headers=office)
    assert stray.status_code == 422 and "6.1" in json.dumps(error(stray)["details"])
    bad = await api.client.post("/v1/needs", json={**NEED, "sdg_targets": ["2.x"]}, headers=office)
    assert bad.status_code == 422 and "$.sdg_targets[0]" in [d["path"] for d in error(bad)["details"]]


async def test_spec_and_code_agree_on_if_match_and_whole_number_days(api: Api) -> None:
    """Issue 11: If-Match is documented as required on PATCH (428 without it), and `expires_in_days: 84.0`,
    an integer to JSON Schema, is accepted as the spec says; 84.5 is not."""
    spec = (await api.client.get("/openapi.json")).json()
    for path in ("/v1/needs/{item_id}", "/v1/offers/{item_id}"):
        params = {p["name"].lower(): p for p in spec["paths"][path]["patch"]["parameters"]}
        assert params["if-match"]["required"] is True and params["if-match"]["in"] == "header"
        assert "428" in spec["paths"][path]["patch"]["responses"]
    org_id, _ = await api.org()
    r = await api.client.post("/v1/tokens", json={"organization_id": org_id, "expires_in_days": 84.0}, headers=admin())
    assert r.status_code == 201, r.text
    assert (await api.client.post("/v1/tokens", json={"organization_id": org_id, "expires_in_days": 84.5}, headers=admin())).status_code == 422


async def test_the_catalog_reads_a_valid_token_once_per_cache_lifetime_and_never_caches_a_refusal(api: Api) -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta

    from ssmatch.auth import TokenAuthority, hash_token

    authority = api.app.state.authority
    assert authority.cache_ttl_s > 0
    _, headers = await api.org()
    before = authority.lookups_total
    for _ in range(5):
        assert (await api.client.get("/v1/needs", headers=headers)).status_code == 200
    assert authority.lookups_total - before == 1

    store = api.app.state.store
    own = TokenAuthority(store.db, None, local=True, cache_ttl_s=5)
    token = "ssm_" + "a" * 40
    assert await own.resolve(token) is None  # unknown: refused, and the refusal is not kept
    doc = {"_id": hash_token(token), "token_id": "tok-cache", "organization_id": "org-cache", "role": "seeker",
           "created_at": datetime.now(UTC), "expires_at": datetime.now(UTC) + timedelta(seconds=0.5), "revoked_at": None}
    await store.tokens.insert_one(doc)
    principal = await own.resolve(token)
    assert principal is not None and principal.organization_id == "org-cache"
    await asyncio.sleep(0.6)  # let the token's own expiry pass (the cached answer is still fresh)
    assert await own.resolve(token) is None
