"""Authorization matrix: every caller kind × every catalog endpoint → the exact status code.

Callers: no token, a malformed token, a revoked token, the admin token, two country offices (seeker A
owns the need, seeker B does not), two solution providers (provider A owns the offer) and a broker. Each
case gets fresh resources where the call changes them (PATCH, DELETE, decisions, token revocation), so
one caller's success cannot change what the next one sees. Every failure answers with the contract's
error body. One test per endpoint so a failure names the endpoint and lists every wrong cell.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from services.catalog import service
from services.catalog.models import DecisionIn
from ssmatch.auth import Principal
from ssmatch.events import MatchProposedPayload
from tests.integration.catalog.conftest import NEED, OFFER, Api, admin

pytestmark = pytest.mark.integration

CALLERS = ["none", "malformed", "revoked", "admin", "seeker_a", "seeker_b", "provider_a", "provider_b", "broker"]
TOKENS = [c for c in CALLERS if c not in ("none", "malformed", "revoked")]
UNAUTHENTICATED = {"none": 401, "malformed": 401, "revoked": 401}


@dataclass
class World:
    api: Api
    headers: dict[str, dict[str, str]]
    orgs: dict[str, str]
    need: str = ""
    offer: str = ""
    match: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    async def new_need(self, owner: str = "seeker_a") -> str:
        r = await self.api.client.post("/v1/needs", json=NEED, headers=self.headers[owner])
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def new_offer(self, owner: str = "provider_a") -> str:
        r = await self.api.client.post("/v1/offers", json=OFFER, headers=self.headers[owner])
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def new_match(self) -> str:
        need, offer = await self.new_need(), await self.new_offer()
        payload = MatchProposedPayload(
            match_id=f"{need}.{offer}", need_id=need, offer_id=offer,
            need_organization_id=self.orgs["seeker_a"], offer_organization_id=self.orgs["provider_a"],
            need_title=NEED["title"], offer_title=OFFER["title"], score=0.8,
            explanation={"components": {"text": 0.8}}, rules_version="1", need_revision=1, offer_revision=1,
        )
        assert await self.api.app.state.store.apply_match_proposed(payload, datetime.now(UTC))
        return payload.match_id

    async def new_token_id(self) -> str:
        r = await self.api.client.post("/v1/tokens", json={"organization_id": self.orgs["broker"]}, headers=admin())
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


async def make_world(api: Api) -> World:
    headers: dict[str, dict[str, str]] = {"admin": admin(), "none": {}, "malformed": {"Authorization": "Bearer ssm_not-a-real-token"}}
    orgs: dict[str, str] = {}
    for name, type_, country in [
        ("seeker_a", "country_office", "MWI"), ("seeker_b", "country_office", "SEN"),
        ("provider_a", "solution_provider", "BRA"), ("provider_b", "solution_provider", "IND"), ("broker", "broker", "KEN"),
    ]:
        orgs[name], headers[name] = await api.org(type_, country, name=f"Org {name}")
    org = (await api.client.post("/v1/organizations", json={"name": "Revoked", "type": "country_office", "country": "MWI"}, headers=admin())).json()
    tok = (await api.client.post("/v1/tokens", json={"organization_id": org["id"]}, headers=admin())).json()
    assert (await api.client.delete(f"/v1/tokens/{tok['id']}", headers=admin())).status_code == 200
    headers["revoked"] = {"Authorization": f"Bearer {tok['token']}"}
    world = World(api, headers, orgs)
    world.need, world.offer = await world.new_need(), await world.new_offer()
    world.match = await world.new_match()
    return world


Request = tuple[str, str, dict[str, Any]]  # method, url, extra httpx kwargs
Setup = Callable[[World], Awaitable[Request]]


def fixed(method: str, url: str, **kw: Any) -> Setup:
    async def setup(w: World) -> Request:
        return method, url.format(need=w.need, offer=w.offer, match=w.match, seeker_a=w.orgs["seeker_a"]), kw

    return setup


def expect(allowed: dict[str, int], default: int = 403) -> dict[str, int]:
    """Expected status per caller: the given ones, 401 for the unauthenticated, `default` for the rest."""
    return {c: allowed.get(c, UNAUTHENTICATED.get(c, default)) for c in CALLERS}


def everyone(status: int = 200) -> dict[str, int]:
    return expect({c: status for c in TOKENS})


async def fresh_patch_need(w: World) -> Request:
    return "PATCH", f"/v1/needs/{await w.new_need()}", {"json": {"title": "Updated title"}, "headers": {"If-Match": '"1"'}}


async def fresh_patch_need_no_if_match(w: World) -> Request:
    return "PATCH", f"/v1/needs/{await w.new_need()}", {"json": {"title": "Updated title"}}


async def fresh_patch_need_bad_body(w: World) -> Request:
    return "PATCH", f"/v1/needs/{await w.new_need()}", {"json": {"sdgs": [99]}, "headers": {"If-Match": '"1"'}}


async def fresh_delete_need(w: World) -> Request:
    return "DELETE", f"/v1/needs/{await w.new_need()}", {}


async def fresh_patch_offer(w: World) -> Request:
    return "PATCH", f"/v1/offers/{await w.new_offer()}", {"json": {"title": "Updated title"}, "headers": {"If-Match": '"1"'}}


async def fresh_delete_offer(w: World) -> Request:
    return "DELETE", f"/v1/offers/{await w.new_offer()}", {}


async def fresh_decision(w: World) -> Request:
    return "POST", f"/v1/matches/{await w.new_match()}/decision", {"json": {"decision": "approve", "note": "ok"}}


async def fresh_lifecycle(w: World) -> Request:
    match_id = await w.new_match()
    await service.decide(w.api.app.state.catalog, Principal(role="broker", organization_id=w.orgs["broker"]), match_id, DecisionIn(decision="approve"))
    return "POST", f"/v1/matches/{match_id}/lifecycle", {"json": {"event": "agreement_reached", "note": "MoU"}}


async def fresh_claim(w: World) -> Request:
    return "POST", f"/v1/matches/{await w.new_match()}/claim", {}


async def fresh_release(w: World) -> Request:
    match_id = await w.new_match()
    assert (await w.api.client.post(f"/v1/matches/{match_id}/claim", headers=w.headers["broker"])).status_code == 200
    return "DELETE", f"/v1/matches/{match_id}/claim", {}


async def fresh_bulk(w: World) -> Request:
    return "POST", "/v1/matches/decisions", {"json": {"decisions": [{"match_id": await w.new_match(), "decision": "reject"}]}}


async def fresh_response(w: World) -> Request:
    match_id = await w.new_match()
    await service.decide(w.api.app.state.catalog, Principal(role="broker", organization_id=w.orgs["broker"]), match_id, DecisionIn(decision="approve"))
    return "POST", f"/v1/matches/{match_id}/lifecycle", {"json": {"event": "not_interested", "note": "no", "party": "need"}}


async def contact_after_approval(w: World) -> Request:
    """seeker_a's contact once provider_a has an approved match with it (its counterpart)."""
    if not w.extra.get("approved"):
        await service.decide(w.api.app.state.catalog, Principal(role="broker", organization_id=w.orgs["broker"]), await w.new_match(), DecisionIn(decision="approve"))
        w.extra["approved"] = True
    return "GET", f"/v1/organizations/{w.orgs['seeker_a']}", {}


async def draft_need(w: World) -> Request:
    if "draft" not in w.extra:
        r = await w.api.client.post("/v1/needs", json={**NEED, "status": "draft"}, headers=w.headers["seeker_a"])
        w.extra["draft"] = r.json()["id"]
    return "GET", f"/v1/needs/{w.extra['draft']}", {}


async def issue_token(w: World) -> Request:
    return "POST", "/v1/tokens", {"json": {"organization_id": w.orgs["seeker_b"]}}


async def fresh_token_revoke(w: World) -> Request:
    return "DELETE", f"/v1/tokens/{await w.new_token_id()}", {}


def upload(kind: str) -> Setup:
    row = NEED if kind == "needs" else OFFER
    columns = ["title", "description", "sdgs", "sectors", "modalities", "languages"]
    csv_text = ",".join(columns) + "\n" + ",".join('"' + ";".join(map(str, v)) + '"' if isinstance(v := row[c], list) else f'"{v}"' for c in columns) + "\n"

    async def setup(w: World) -> Request:
        return "POST", f"/v1/imports?kind={kind}&dry_run=true", {"files": {"file": ("items.csv", csv_text.encode(), "text/csv")}}

    return setup


OWNER_NEED = {"seeker_a": 200, "admin": 200}
OWNER_OFFER = {"provider_a": 200, "admin": 200}
STAFF = {"admin": 200, "broker": 200}

#: who sees seeker_a's `contact` (not null), before and after provider_a's match with it is approved
CONTACT_SEEN = {"contact": {"admin", "broker", "seeker_a"}, "contact_after_approval": {"admin", "broker", "seeker_a", "provider_a"}}

MATRIX: list[tuple[str, Setup, dict[str, int] | str]] = [
    ("create organization", fixed("POST", "/v1/organizations", json={"name": "New org", "type": "broker", "country": "KEN"}), expect({"admin": 201})),
    ("create organization, invalid body", fixed("POST", "/v1/organizations", json={"name": "x"}), expect({"admin": 422})),
    ("create organization, malformed JSON", fixed("POST", "/v1/organizations", content=b"{oops", headers={"content-type": "application/json"}), expect({"admin": 422})),
    ("list organizations", fixed("GET", "/v1/organizations"), expect(STAFF)),
    ("get organization", fixed("GET", "/v1/organizations/{seeker_a}"), everyone()),
    ("an organization's contact", fixed("GET", "/v1/organizations/{seeker_a}"), "contact"),
    ("a counterpart's contact after approval", contact_after_approval, "contact_after_approval"),
    ("get unknown organization", fixed("GET", "/v1/organizations/nope"), everyone(404)),
    ("issue token", issue_token, expect({"admin": 201})),
    ("issue token for unknown org", fixed("POST", "/v1/tokens", json={"organization_id": "nope"}), expect({"admin": 404})),
    ("revoke token", fresh_token_revoke, expect({"admin": 200})),
    ("create need", fixed("POST", "/v1/needs", json=NEED), expect({"seeker_a": 201, "seeker_b": 201})),
    ("create need, invalid body", fixed("POST", "/v1/needs", json={**NEED, "sdgs": [0]}), expect({"seeker_a": 422, "seeker_b": 422})),
    ("create need, malformed JSON", fixed("POST", "/v1/needs", content=b"{oops", headers={"content-type": "application/json"}), expect({"seeker_a": 422, "seeker_b": 422})),
    ("create offer", fixed("POST", "/v1/offers", json=OFFER), expect({"provider_a": 201, "provider_b": 201})),
    ("get need", fixed("GET", "/v1/needs/{need}"), everyone()),
    ("get offer", fixed("GET", "/v1/offers/{offer}"), everyone()),
    ("get unknown need", fixed("GET", "/v1/needs/n0000"), everyone(404)),
    ("get another organization's draft", draft_need, expect({**STAFF, "seeker_a": 200}, default=404)),
    ("list drafts", fixed("GET", "/v1/needs?status=draft"), everyone()),
    ("get need as offer", fixed("GET", "/v1/offers/{need}"), everyone(404)),
    ("list needs", fixed("GET", "/v1/needs?region=Africa&group=LDC&sort=relevance&q=ecole"), everyone()),
    ("list offers", fixed("GET", "/v1/offers?sdg=2"), everyone()),
    ("list needs, bad filter", fixed("GET", "/v1/needs?limit=1000"), everyone(422)),
    ("patch need", fresh_patch_need, expect(OWNER_NEED)),
    ("patch need without If-Match", fresh_patch_need_no_if_match, expect({"seeker_a": 428, "admin": 428})),
    ("patch need, invalid body", fresh_patch_need_bad_body, expect({"seeker_a": 422, "admin": 422})),
    ("patch unknown need", fixed("PATCH", "/v1/needs/n0000", json={"title": "Updated"}, headers={"If-Match": '"1"'}), everyone(404)),
    ("withdraw need", fresh_delete_need, expect(OWNER_NEED)),
    ("patch offer", fresh_patch_offer, expect(OWNER_OFFER)),
    ("withdraw offer", fresh_delete_offer, expect(OWNER_OFFER)),
    ("matches of a need", fixed("GET", "/v1/needs/{need}/matches"), expect({**STAFF, "seeker_a": 200})),
    ("matches of an offer", fixed("GET", "/v1/offers/{offer}/matches"), expect({**STAFF, "provider_a": 200})),
    ("matches of an unknown need", fixed("GET", "/v1/needs/n0000/matches"), everyone(404)),
    ("review queue", fixed("GET", "/v1/matches?status=proposed"), expect(STAFF)),
    ("get match", fixed("GET", "/v1/matches/{match}"), expect({**STAFF, "seeker_a": 200, "provider_a": 200})),
    ("get unknown match", fixed("GET", "/v1/matches/a.b"), everyone(404)),
    ("decide match", fresh_decision, expect(STAFF)),
    ("decide match, invalid body", fixed("POST", "/v1/matches/{match}/decision", json={"decision": "maybe"}), expect({"admin": 422, "broker": 422})),
    ("report a lifecycle step", fresh_lifecycle, expect({**STAFF, "seeker_a": 200, "provider_a": 200})),
    ("lifecycle of an unknown match", fixed("POST", "/v1/matches/a.b/lifecycle", json={"event": "declined"}), everyone(404)),
    ("decide unknown match", fixed("POST", "/v1/matches/a.b/decision", json={"decision": "approve"}), expect({"admin": 404, "broker": 404})),
    ("claim a match", fresh_claim, expect(STAFF)),
    ("release a claim", fresh_release, expect({"admin": 200, "broker": 200})),
    ("bulk decisions", fresh_bulk, expect(STAFF)),
    ("respond to an introduction", fresh_response, expect({"seeker_a": 200, "admin": 200, "broker": 200, "provider_a": 403})),
    ("reports summary", fixed("GET", "/v1/reports/summary?group=LDC"), expect(STAFF)),
    ("taxonomy sectors", fixed("GET", "/v1/taxonomy/sectors"), everyone()),
    ("taxonomy modalities", fixed("GET", "/v1/taxonomy/modalities"), everyone()),
    ("taxonomy sdgs", fixed("GET", "/v1/taxonomy/sdgs"), everyone()),
    ("taxonomy countries", fixed("GET", "/v1/taxonomy/countries"), everyone()),
    ("import needs (dry run)", upload("needs"), expect({"seeker_a": 200, "seeker_b": 200})),
    ("import offers (dry run)", upload("offers"), expect({"provider_a": 200, "provider_b": 200})),
]


@pytest.mark.parametrize("name,setup,expected", MATRIX, ids=[m[0] for m in MATRIX])
async def test_authorization_matrix(api: Api, name: str, setup: Setup, expected: dict[str, int] | str) -> None:
    world = await make_world(api)
    contact_rule = expected if isinstance(expected, str) else None
    if contact_rule:
        await api.app.state.store.orgs.update_one({"_id": world.orgs["seeker_a"]}, {"$set": {"contact": {"name": "A", "email": "a@example.org"}}})
        api.app.state.store._org_cache.clear()
        expected = everyone()
    wrong = []
    for caller in CALLERS:
        method, url, kw = await setup(world)
        kw = dict(kw)
        headers = {**kw.pop("headers", {}), **world.headers[caller]}
        r = await api.client.request(method, url, headers=headers, **kw)
        if r.status_code != expected[caller]:
            wrong.append(f"{caller}: got {r.status_code}, want {expected[caller]} ({r.text[:160]})")
        elif contact_rule and r.status_code == 200 and (r.json()["contact"] is not None) != (caller in CONTACT_SEEN[contact_rule]):
            wrong.append(f"{caller}: contact {'shown' if r.json()['contact'] else 'hidden'}, want the opposite")
        elif r.status_code >= 400:
            body = r.json()
            assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
            if r.status_code == 401:
                assert r.headers.get("www-authenticate") == "Bearer"
    assert not wrong, f"{name}:\n" + "\n".join(wrong)


async def test_ops_endpoints_need_no_token(api: Api) -> None:
    assert (await api.client.get("/healthz")).status_code == 200
    assert (await api.client.get("/metrics")).status_code == 200
    assert (await api.client.get("/openapi.json")).status_code == 200
