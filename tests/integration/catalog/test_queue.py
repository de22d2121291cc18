"""GET /v1/matches: the broker queue pages with a cursor, filters by facets of the need and the offer,
sorts by score or age, and shows who holds a claim."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.catalog.conftest import NEED, OFFER, Api, post, propose

pytestmark = pytest.mark.integration


async def _world(api: Api) -> dict[str, Any]:
    """Needs in Malawi (LDC, LLDC, Eastern Africa, fr) and Fiji (SIDS, Oceania, en); offers from Brazil."""
    _, mwi = await api.org("country_office", "MWI", name="Malawi office")
    _, fji = await api.org("country_office", "FJI", name="Fiji office")
    _, bra = await api.org("solution_provider", "BRA", name="Brazil provider")
    _, broker = await api.org("broker", "KEN", name="Desk")
    n_mwi = await post(api, "/v1/needs", {**NEED, "sdgs": [2, 4], "sectors": ["food_security"], "languages": ["fr"]}, mwi)
    n_fji = await post(api, "/v1/needs", {**NEED, "sdgs": [6], "sectors": ["water_sanitation"], "languages": ["en"]}, fji)
    o_food = await post(api, "/v1/offers", {**OFFER, "sdgs": [2], "sectors": ["food_security"], "modalities": ["capacity_development"], "languages": ["en", "fr"]}, bra)
    o_water = await post(api, "/v1/offers", {**OFFER, "sdgs": [6], "sectors": ["water_sanitation"], "modalities": ["knowledge_exchange"], "languages": ["pt"]}, bra)
    t0 = datetime.now(UTC)
    ids = {
        "mwi_food": await propose(api, n_mwi, o_food, 0.9, t0 - timedelta(days=10)),
        "mwi_water": await propose(api, n_mwi, o_water, 0.5, t0 - timedelta(days=1)),
        "fji_water": await propose(api, n_fji, o_water, 0.7, t0 - timedelta(days=5)),
        "fji_food": await propose(api, n_fji, o_food, 0.3, t0),
    }
    return {"broker": broker, "ids": ids, "mwi": mwi}


async def _queue(api: Api, headers: dict[str, str], **params: Any) -> list[str]:
    r = await api.client.get("/v1/matches", params={"status": "proposed", **params}, headers=headers)
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["items"]]


async def test_filters_sort_and_claim_holder(api: Api) -> None:
    w = await _world(api)
    ids, broker = w["ids"], w["broker"]
    assert await _queue(api, broker) == [ids["mwi_food"], ids["fji_water"], ids["mwi_water"], ids["fji_food"]]
    age = await _queue(api, broker, sort="age")
    assert age == [ids["mwi_food"], ids["fji_water"], ids["mwi_water"], ids["fji_food"]]  # oldest proposal first
    assert await _queue(api, broker, sdg=6) == [ids["fji_water"], ids["mwi_water"], ids["fji_food"]]
    assert await _queue(api, broker, sector="water_sanitation") == [ids["fji_water"], ids["mwi_water"], ids["fji_food"]]
    assert await _queue(api, broker, modality="knowledge_exchange") == [ids["fji_water"], ids["mwi_water"]]
    assert await _queue(api, broker, region="Eastern Africa") == [ids["mwi_food"], ids["mwi_water"]]
    assert await _queue(api, broker, region="oceania") == [ids["fji_water"], ids["fji_food"]]
    assert await _queue(api, broker, group="SIDS") == [ids["fji_water"], ids["fji_food"]]
    assert await _queue(api, broker, group="LLDC") == [ids["mwi_food"], ids["mwi_water"]]
    assert await _queue(api, broker, need_language="fr", offer_language="en") == [ids["mwi_food"]]
    assert await _queue(api, broker, min_score=0.5, max_score=0.8) == [ids["fji_water"], ids["mwi_water"]]
    assert await _queue(api, broker, min_age_days=2) == [ids["mwi_food"], ids["fji_water"]]
    assert await _queue(api, broker, max_age_days=2) == [ids["mwi_water"], ids["fji_food"]]
    assert await _queue(api, broker, sdg=6, group="SIDS", min_score=0.5) == [ids["fji_water"]]
    # a claim shows in the queue, with its holder
    assert (await api.client.post(f"/v1/matches/{ids['fji_water']}/claim", headers=broker)).status_code == 200
    rows = (await api.client.get("/v1/matches", params={"status": "proposed", "sdg": 6}, headers=broker)).json()["items"]
    assert rows[0]["claimed_by"] and rows[0]["claimed_until"] and rows[1]["claimed_by"] is None
    # bad filters are 422 with the field named
    for params in ({"region": "Atlantis"}, {"sort": "random"}, {"min_score": 2}, {"group": "G77"}, {"cursor": "bm90LWEtY3Vyc29y"}):
        r = await api.client.get("/v1/matches", params=params, headers=broker)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["code"] == "validation_failed"


async def test_cursor_walks_every_match_once_under_ties(api: Api) -> None:
    _, office = await api.org("country_office", "MWI")
    _, provider = await api.org("solution_provider", "BRA")
    _, broker = await api.org("broker", "KEN")
    need = await post(api, "/v1/needs", NEED, office)
    offers = [await post(api, "/v1/offers", OFFER, provider) for _ in range(7)]
    scores = [0.5, 0.5, 0.5, 0.9, 0.2, 0.5, 0.9]  # ties across page borders
    expected = set()
    for offer, score in zip(offers, scores, strict=True):
        expected.add(await propose(api, need, offer, score))
    for sort in ("score", "age"):
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params = {"status": "proposed", "limit": 2, "sort": sort, **({"cursor": cursor} if cursor else {})}
            body = (await api.client.get("/v1/matches", params=params, headers=broker)).json()
            seen += [m["id"] for m in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 7 and set(seen) == expected and pages == 4, (sort, seen)
        if sort == "score":
            got = [s for s in [next(sc for o, sc in zip(offers, scores, strict=False) if m.endswith(o["id"])) for m in seen]]
            assert got == sorted(scores, reverse=True)
    # a cursor of one sort is refused by the other
    first = (await api.client.get("/v1/matches", params={"limit": 2, "sort": "score"}, headers=broker)).json()
    r = await api.client.get("/v1/matches", params={"limit": 2, "sort": "age", "cursor": first["next_cursor"]}, headers=broker)
    assert r.status_code == 422


async def test_edited_need_refreshes_the_facets(api: Api) -> None:
    _, office = await api.org("country_office", "MWI")
    _, provider = await api.org("solution_provider", "BRA")
    _, broker = await api.org("broker", "KEN")
    need = await post(api, "/v1/needs", {**NEED, "sdgs": [2]}, office)
    offer = await post(api, "/v1/offers", {**OFFER, "sdgs": [2]}, provider)
    match_id = await propose(api, need, offer)
    assert await _queue(api, broker, sdg=13) == []
    r = await api.client.patch(f"/v1/needs/{need['id']}", json={"sdgs": [2, 13]}, headers={**office, "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert await _queue(api, broker, sdg=13) == [match_id]
