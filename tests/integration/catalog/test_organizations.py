"""An organization edits its own name, language and contact; each change is one event on
`ssmatch.organizations` (through the outbox, with the new revision) so notify's projection follows."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.catalog.conftest import Api, admin

pytestmark = pytest.mark.integration

CONTACT = {"name": "Awa Diop", "email": "awa@agri.example.sn"}


async def org_events(api: Api, org_id: str) -> list[dict[str, Any]]:
    return [d["event"] async for d in api.app.state.store.outbox.find({"key": org_id}).sort("_id", 1)]


async def test_an_organization_changes_its_contact_then_its_name_and_each_change_is_published(api: Api) -> None:
    org_id, office = await api.org("country_office", "SEN", name="Ministère de l'Agriculture")
    r = await api.client.patch(f"/v1/organizations/{org_id}", json={"contact": CONTACT}, headers=office)
    assert r.status_code == 200, r.text
    assert r.json()["contact"]["email"] == CONTACT["email"] and r.json()["name"] == "Ministère de l'Agriculture"
    r = await api.client.patch(f"/v1/organizations/{org_id}", json={"name": "Ministère de l'Agriculture et de l'Équipement rural",
                                                                     "language": "fr"}, headers=office)
    assert r.status_code == 200 and r.json()["language"] == "fr"
    # the same values again change nothing and publish nothing
    assert (await api.client.patch(f"/v1/organizations/{org_id}", json={"language": "fr"}, headers=office)).status_code == 200
    events = await org_events(api, org_id)
    assert [(e["type"], e["payload"]["revision"]) for e in events] == [
        ("organization.created", 1), ("organization.contact_changed", 2), ("organization.updated", 3)]
    assert events[1]["payload"]["contact"]["email"] == CONTACT["email"]
    assert events[2]["payload"]["name"].endswith("Équipement rural") and events[2]["payload"]["contact"] == {**CONTACT, "phone": None}
    # a fresh read shows the new name; removing the contact is a contact change too
    r = await api.client.patch(f"/v1/organizations/{org_id}", json={"contact": None}, headers=admin())
    assert r.status_code == 200 and r.json()["contact"] is None
    assert (await org_events(api, org_id))[-1]["type"] == "organization.contact_changed"
    got = await api.client.get(f"/v1/organizations/{org_id}", headers=office)
    assert got.json()["name"].endswith("Équipement rural") and got.json()["contact"] is None


async def test_only_the_organization_itself_or_an_admin_may_change_it(api: Api) -> None:
    org_id, office = await api.org("country_office", "SEN")
    _, other = await api.org("country_office", "MLI", name="Other")
    _, broker = await api.org("broker", "KEN", name="Broker")
    for headers in (other, broker):
        r = await api.client.patch(f"/v1/organizations/{org_id}", json={"name": "Taken over"}, headers=headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert (await api.client.patch(f"/v1/organizations/{org_id}", json={"name": "Renamed"})).status_code == 401
    assert (await api.client.patch("/v1/organizations/nope", json={"name": "Renamed"}, headers=admin())).status_code == 404
    assert (await api.client.get(f"/v1/organizations/{org_id}", headers=office)).json()["name"] == "Org"


@pytest.mark.parametrize("body", [
    {}, {"type": "broker"}, {"country": "FRA"}, {"name": None}, {"language": None}, {"name": "x"}, {"name": "n" * 201},
    {"contact": {"name": "No email"}}, {"contact": {"name": "A", "email": "not-an-email"}}, {"language": "klingon-x-1234567890abcdefgh"},
    {"unknown": 1}, ["name"],
])
async def test_bad_changes_are_refused_with_422_and_change_nothing(api: Api, body: Any) -> None:
    org_id, office = await api.org("country_office", "SEN")
    r = await api.client.patch(f"/v1/organizations/{org_id}", json=body, headers=office)
    assert r.status_code == 422, (body, r.status_code, r.text)
    assert r.json()["error"]["code"] == "validation_failed"
    assert [e["type"] for e in await org_events(api, org_id)] == ["organization.created"]
