"""Region and country-group filters, relevance sorting, and the derived geography of organizations."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.catalog.conftest import NEED, Api, admin

pytestmark = pytest.mark.integration


async def _needs_in(api: Api, countries: list[str]) -> tuple[dict[str, str], dict[str, str], str]:
    """One need per country, posted by one office; returns ({country: need id}, office headers, office id)."""
    office_id, office = await api.org(country="MWI")
    ids = {}
    for code in countries:
        r = await api.client.post("/v1/needs", json={**NEED, "country": code}, headers=office)
        assert r.status_code == 201, r.text
        ids[code] = r.json()["id"]
    return ids, office, office_id


async def _ids(api: Api, headers: dict[str, str], **params: Any) -> set[str]:
    r = await api.client.get("/v1/needs", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return {n["id"] for n in r.json()["items"]}


async def test_region_and_group_filters_use_un_m49_and_un_country_groups(api: Api) -> None:
    # MWI: Eastern Africa, LDC+LLDC; KEN: Eastern Africa; SEN: Western Africa, LDC; BOL: South America, LLDC;
    # FJI: Melanesia, SIDS; HTI: Caribbean, LDC+SIDS; NPL: Southern Asia, LDC+LLDC
    ids, office, office_id = await _needs_in(api, ["MWI", "KEN", "SEN", "BOL", "FJI", "HTI", "NPL"])
    mine = {"organization_id": office_id, "limit": 100}

    def of(*codes: str) -> set[str]:
        return {ids[c] for c in codes}

    assert await _ids(api, office, **mine, region="Africa") == of("MWI", "KEN", "SEN")
    assert await _ids(api, office, **mine, region="Eastern Africa") == of("MWI", "KEN")
    assert await _ids(api, office, **mine, region="eastern africa") == of("MWI", "KEN")  # case-insensitive
    assert await _ids(api, office, **mine, region="Latin America and the Caribbean") == of("BOL", "HTI")
    assert await _ids(api, office, **mine, region="Oceania") == of("FJI")
    assert await _ids(api, office, **mine, group="LDC") == of("MWI", "SEN", "HTI", "NPL")
    assert await _ids(api, office, **mine, group="LLDC") == of("MWI", "BOL", "NPL")
    assert await _ids(api, office, **mine, group="SIDS") == of("FJI", "HTI")
    # filters combine: region ∩ group ∩ country
    assert await _ids(api, office, **mine, region="Africa", group="LLDC") == of("MWI")
    assert await _ids(api, office, **mine, region="Africa", group="SIDS") == set()
    assert await _ids(api, office, **mine, region="Africa", country="KEN") == of("KEN")
    assert await _ids(api, office, **mine, region="Asia", country="KEN") == set()
    # and with the other filters and pagination
    page = (await api.client.get("/v1/needs", params={**mine, "group": "LDC", "limit": 3}, headers=office)).json()
    rest = (await api.client.get("/v1/needs", params={**mine, "group": "LDC", "limit": 3, "cursor": page["next_cursor"]}, headers=office)).json()
    assert {n["id"] for n in page["items"] + rest["items"]} == of("MWI", "SEN", "HTI", "NPL") and rest["next_cursor"] is None

    bad = await api.client.get("/v1/needs", params={"region": "Atlantis"}, headers=office)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["path"] == "$.region"
    assert (await api.client.get("/v1/needs", params={"group": "G77"}, headers=office)).status_code == 422
    assert (await api.client.get("/v1/offers", params={"region": "Africa", "group": "LDC"}, headers=office)).status_code == 200


async def test_sort_by_relevance_ranks_title_matches_above_description_matches(api: Api) -> None:
    office_id, office = await api.org()
    bodies = {
        "desc_one": {"title": "Programme support", "description": "We need help with irrigation pumps."},
        "title_both": {"title": "Irrigation pumps for smallholders", "description": "Solar irrigation pumps."},
        "title_one": {"title": "Irrigation scheme", "description": "Canal works and pumps."},
        "none": {"title": "School meals", "description": "Nothing about water."},
    }
    ids = {}
    for key, text in bodies.items():  # posted in this order: recency would rank them in reverse
        ids[key] = (await api.client.post("/v1/needs", json={**NEED, **text}, headers=office)).json()["id"]
    params = {"organization_id": office_id, "q": "irrigation pumps"}
    recency = (await api.client.get("/v1/needs", params=params, headers=office)).json()["items"]
    assert [n["id"] for n in recency] == [ids["title_one"], ids["title_both"], ids["desc_one"]]
    ranked = (await api.client.get("/v1/needs", params={**params, "sort": "relevance"}, headers=office)).json()
    # title_both: both terms in the title; title_one: one term in the title; desc_one: none in the title
    assert [n["id"] for n in ranked["items"]] == [ids["title_both"], ids["title_one"], ids["desc_one"]]
    assert ranked["next_cursor"] is None
    # relevance pages with its own cursor and sees every item once
    first = (await api.client.get("/v1/needs", params={**params, "sort": "relevance", "limit": 2}, headers=office)).json()
    second = (await api.client.get("/v1/needs", params={**params, "sort": "relevance", "limit": 2, "cursor": first["next_cursor"]}, headers=office)).json()
    assert [n["id"] for n in first["items"] + second["items"]] == [n["id"] for n in ranked["items"]]
    assert second["next_cursor"] is None
    # a recency cursor is not a relevance cursor
    recency_page = (await api.client.get("/v1/needs", params={"organization_id": office_id, "limit": 1}, headers=office)).json()
    wrong = await api.client.get("/v1/needs", params={**params, "sort": "relevance", "cursor": recency_page["next_cursor"]}, headers=office)
    assert wrong.status_code == 422
    # without q, relevance is recency
    no_q = (await api.client.get("/v1/needs", params={"organization_id": office_id, "sort": "relevance"}, headers=office)).json()["items"]
    assert [n["id"] for n in no_q] == list(reversed(list(ids.values())))
    assert (await api.client.get("/v1/needs", params={"sort": "best"}, headers=office)).status_code == 422


async def test_organizations_expose_their_region_subregion_and_groups(api: Api) -> None:
    cases = {
        "MWI": ("Africa", "Sub-Saharan Africa", "Eastern Africa", ["LDC", "LLDC"]),
        "FJI": ("Oceania", "Melanesia", None, ["SIDS"]),
        "BRA": ("Americas", "Latin America and the Caribbean", "South America", []),
    }
    for code, (region, subregion, intermediate, groups) in cases.items():
        r = await api.client.post("/v1/organizations", json={"name": f"Office {code}", "type": "country_office", "country": code}, headers=admin())
        assert r.status_code == 201
        for org in (r.json(), (await api.client.get(f"/v1/organizations/{r.json()['id']}", headers=admin())).json()):
            assert (org["region"], org["subregion"], org["intermediate_region"], org["groups"]) == (region, subregion, intermediate, groups)
    listed = (await api.client.get("/v1/organizations", headers=admin())).json()["items"]
    assert {o["country"]: o["groups"] for o in listed} == {c: v[3] for c, v in cases.items()}
    stored = await api.app.state.store.orgs.find_one({"country": "MWI"})
    assert "groups" not in stored and "region" not in stored  # derived, never stored
