"""GET /v1/reports/summary: the dashboard's figures, with the queue's filters, in a stable shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.catalog.conftest import NEED, OFFER, Api, post, propose

pytestmark = pytest.mark.integration
KEYS = {"filters", "generated_at", "totals", "by_sdg", "by_region", "by_sector", "funnel", "shares", "median_days", "outcomes", "time_series"}


async def test_summary_counts_funnel_shares_medians_outcomes_and_series(api: Api) -> None:
    _, mwi = await api.org("country_office", "MWI")
    _, fji = await api.org("country_office", "FJI")
    _, bra = await api.org("solution_provider", "BRA")
    _, broker = await api.org("broker", "KEN")
    empty = await api.client.get("/v1/reports/summary", headers=broker)
    assert empty.status_code == 200 and set(empty.json()) == KEYS
    assert empty.json()["funnel"] == {"posted": 0, "matched": 0, "approved": 0, "agreement": 0, "completed": 0}
    assert empty.json()["median_days"] == {"posting_to_first_match": None, "posting_to_introduction": None}

    n1 = await post(api, "/v1/needs", {**NEED, "sdgs": [2], "sectors": ["food_security"], "gender_responsive": True}, mwi)
    n2 = await post(api, "/v1/needs", {**NEED, "sdgs": [6], "sectors": ["water_sanitation"]}, fji)
    await post(api, "/v1/needs", {**NEED, "sdgs": [4], "sectors": ["education"]}, fji)  # never matched
    await post(api, "/v1/needs", {**NEED, "status": "draft"}, mwi)  # drafts are not posted
    o1 = await post(api, "/v1/offers", {**OFFER, "sdgs": [2], "sectors": ["food_security"]}, bra)
    o2 = await post(api, "/v1/offers", {**OFFER, "sdgs": [6], "sectors": ["water_sanitation"]}, bra)
    # proposals two days after posting (the store's clock is now, so move the needs back instead)
    store = api.app.state.store
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    await store.items["need"].update_many({"_id": {"$in": [n1["id"], n2["id"]]}}, {"$set": {"created_at": two_days_ago}})
    m1 = await propose(api, n1, o1, 0.9)
    m2 = await propose(api, n2, o2, 0.6)
    await propose(api, n1, o2, 0.2)
    for mid in (m1, m2):
        assert (await api.client.post(f"/v1/matches/{mid}/decision", json={"decision": "approve"}, headers=broker)).status_code == 200
    outcome = {"results": "school meals for 3 districts", "people_trained": 25, "beneficiaries": 4000, "countries": ["MWI"],
               "resources_mobilised": {"amount": 1000.5, "currency": "USD"}, "gender_responsive": True}
    for body in ({"event": "agreement_reached"}, {"event": "in_progress"}, {"event": "completed", "outcome": outcome}):
        r = await api.client.post(f"/v1/matches/{m1}/lifecycle", json=body, headers=broker)
        assert r.status_code == 200, r.text

    s = (await api.client.get("/v1/reports/summary", headers=broker)).json()
    assert set(s) == KEYS
    assert s["totals"] == {"needs": 3, "offers": 2, "matches": 3, "partnerships": 1}
    assert s["funnel"] == {"posted": 3, "matched": 2, "approved": 2, "agreement": 1, "completed": 1}
    sdg2 = next(r for r in s["by_sdg"] if r["sdg"] == 2)
    assert sdg2 == {"sdg": 2, "needs": 1, "offers": 1, "matches": 2, "partnerships": 1}  # drafts are not counted
    assert len(s["by_sdg"]) == 17 and [r["region"] for r in s["by_region"]] == ["Africa", "Americas", "Asia", "Europe", "Oceania"]
    oceania = next(r for r in s["by_region"] if r["region"] == "Oceania")
    assert oceania == {"region": "Oceania", "needs": 2, "offers": 0, "matches": 1, "partnerships": 0}
    water = next(r for r in s["by_sector"] if r["sector"] == "water_sanitation")
    assert water["needs"] == 1 and water["matches"] == 2
    assert s["shares"]["count"] == 3 and s["shares"]["SIDS"] == round(1 / 3, 4) and s["shares"]["LDC"] == round(2 / 3, 4)
    assert s["shares"]["gender_responsive"] == round(2 / 3, 4)
    assert 1.9 <= s["median_days"]["posting_to_first_match"] <= 2.1
    assert 1.9 <= s["median_days"]["posting_to_introduction"] <= 2.1
    assert s["outcomes"] == {"completed": 1, "people_trained": 25, "beneficiaries": 4000, "countries_reached": 1, "countries": ["MWI"],
                             "resources_mobilised": [{"currency": "USD", "amount": 1000.5}], "gender_responsive": 1, "gender_responsive_share": 1.0}
    month = datetime.now(UTC).strftime("%Y-%m")
    this_month = next(r for r in s["time_series"] if r["month"] == month)
    assert this_month["matches"] == 3 and this_month["approved"] == 2 and this_month["completed"] == 1 and this_month["offers"] == 2

    # filters as the queue: SIDS only
    f = (await api.client.get("/v1/reports/summary", params={"group": "SIDS"}, headers=broker)).json()
    assert f["filters"] == {"group": "SIDS"}
    assert f["totals"] == {"needs": 2, "offers": 0, "matches": 1, "partnerships": 0}
    assert f["funnel"]["posted"] == 2 and f["funnel"]["approved"] == 1
    f = (await api.client.get("/v1/reports/summary", params={"sdg": 2, "min_score": 0.5}, headers=broker)).json()
    assert f["totals"]["matches"] == 1 and f["outcomes"]["people_trained"] == 25
    assert (await api.client.get("/v1/reports/summary", headers=mwi)).status_code == 403
