"""Issue 11 privacy: an organization's contact, and draft/withdrawn items, are not for everyone."""

from __future__ import annotations

import pytest

from tests.integration.catalog.conftest import NEED, OFFER, Api, admin, post, propose

pytestmark = pytest.mark.integration
CONTACT = {"name": "Amina Banda", "email": "amina@example.org", "phone": "+265 1 000 000"}


async def _org_with_contact(api: Api, type_: str, country: str) -> tuple[str, dict[str, str]]:
    r = await api.client.post("/v1/organizations", json={"name": f"{type_} {country}", "type": type_, "country": country, "contact": CONTACT}, headers=admin())
    assert r.status_code == 201
    t = await api.client.post("/v1/tokens", json={"organization_id": r.json()["id"]}, headers=admin())
    return r.json()["id"], {"Authorization": f"Bearer {t.json()['token']}"}


async def test_contact_is_visible_to_self_staff_and_an_approved_counterpart_only(api: Api) -> None:
    office_id, office = await _org_with_contact(api, "country_office", "MWI")
    provider_id, provider = await _org_with_contact(api, "solution_provider", "BRA")
    _, other_provider = await _org_with_contact(api, "solution_provider", "IND")
    _, broker = await api.org("broker", "KEN")

    async def contact(of: str, headers: dict[str, str]) -> object:
        r = await api.client.get(f"/v1/organizations/{of}", headers=headers)
        assert r.status_code == 200
        return r.json()["contact"]

    assert await contact(office_id, office) == CONTACT
    assert await contact(office_id, broker) == CONTACT
    assert await contact(office_id, admin()) == CONTACT
    assert await contact(office_id, provider) is None
    assert await contact(office_id, other_provider) is None
    need = await post(api, "/v1/needs", NEED, office)
    offer = await post(api, "/v1/offers", OFFER, provider)
    other = await post(api, "/v1/offers", OFFER, other_provider)
    proposed = await propose(api, need, offer)
    rejected = await propose(api, need, other)
    assert await contact(office_id, provider) is None  # proposed is not an introduction
    assert (await api.client.post(f"/v1/matches/{rejected}/decision", json={"decision": "reject"}, headers=broker)).status_code == 200
    assert await contact(office_id, other_provider) is None
    assert (await api.client.post(f"/v1/matches/{proposed}/decision", json={"decision": "approve"}, headers=broker)).status_code == 200
    assert await contact(office_id, provider) == CONTACT
    assert await contact(provider_id, office) == CONTACT
    assert await contact(office_id, other_provider) is None


async def test_drafts_and_withdrawn_items_are_for_owner_and_staff(api: Api) -> None:
    owner_id, owner = await api.org("country_office", "MWI")
    _, other = await api.org("country_office", "SEN")
    _, provider = await api.org("solution_provider", "BRA")
    _, broker = await api.org("broker", "KEN")
    draft = await post(api, "/v1/needs", {**NEED, "status": "draft", "title": "Draft need"}, owner)
    withdrawn = await post(api, "/v1/needs", {**NEED, "title": "Withdrawn need"}, owner)
    assert (await api.client.delete(f"/v1/needs/{withdrawn['id']}", headers=owner)).status_code == 200
    public = await post(api, "/v1/needs", {**NEED, "title": "Open need"}, owner)
    for item in (draft, withdrawn):
        for headers in (other, provider):
            r = await api.client.get(f"/v1/needs/{item['id']}", headers=headers)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
            assert (await api.client.get(f"/v1/needs/{item['id']}/matches", headers=headers)).status_code == 404
            assert (await api.client.patch(f"/v1/needs/{item['id']}", json={"title": "x y z"}, headers={**headers, "If-Match": '"1"'})).status_code == 404
        for headers in (owner, broker, admin()):
            assert (await api.client.get(f"/v1/needs/{item['id']}", headers=headers)).status_code == 200

    async def listed(headers: dict[str, str], **params: str) -> set[str]:
        r = await api.client.get("/v1/needs", params={"organization_id": owner_id, **params}, headers=headers)
        assert r.status_code == 200, r.text
        return {i["id"] for i in r.json()["items"]}

    for status in ("draft", "withdrawn"):
        assert await listed(other, status=status) == set()
        assert await listed(provider, status=status) == set()
    assert await listed(owner, status="draft") == {draft["id"]}
    assert await listed(owner, status="withdrawn") == {withdrawn["id"]}
    assert await listed(broker, status="draft") == {draft["id"]}
    assert await listed(other) == {public["id"]}
    assert await listed(broker) == {public["id"], draft["id"]}
