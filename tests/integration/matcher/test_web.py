"""The matcher's HTTP API on a real worker process: who may do what (tokens from a real catalog
process, checked over HTTP), its OpenAPI document under schemathesis (zero 5xx, zero
non-conformance, admin/broker/office tokens), 50+ hand-written hostile inputs each answered with a
clear 4xx in the contract's shape, and a 503 (never a 500) when the catalog cannot be asked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from ssmatch.kafka import ensure_topics
from ssmatch.stack.embedded import start_tansu
from ssmatch.stack.processes import Child, free_port, stop_all, wait_until
from tests.helpers import uid
from tests.integration.services import CatalogService, Org, catalog_process

pytestmark = [pytest.mark.integration]
ADMIN = "matcher-web-admin"
FUZZ_EXAMPLES = 25
NEED = {"title": "Drought-tolerant seed systems for smallholder farmers", "country": "MWI", "sdgs": [2, 13], "sectors": ["agriculture"],
        "modalities": ["capacity_development"], "languages": ["en"],
        "description": "The Ministry of Agriculture seeks training for extension workers on seed multiplication."}
OFFER = {"title": "Smallholder training on drought-tolerant seeds", "country": "BRA", "sdgs": [2], "sectors": ["agriculture"],
         "modalities": ["capacity_development"], "languages": ["en", "pt"],
         "description": "Our research agency has trained 5,000 smallholders on seed systems in semi-arid regions."}


@dataclass
class Stack:
    url: str
    catalog: CatalogService
    office: Org
    provider: Org
    broker: Org
    need_id: str
    offer_id: str
    withdrawn_id: str
    child: Child

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def stack(servers: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A broker of the module's own, a catalog process on it and one matcher worker; a need, an offer
    and a withdrawn need posted through the catalog and known to the matcher."""
    port = free_port()
    broker = start_tansu(port, tmp_path_factory.mktemp("matcher-web-broker"))
    bootstrap = f"127.0.0.1:{port}"
    asyncio.run(ensure_topics(bootstrap))
    matcher_port, prefix = free_port(), f"mw{uid()}"
    log_dir = Path(os.environ.get("SSMATCH_TEST_LOG_DIR", tmp_path_factory.mktemp("matcher-web-logs")))
    try:
        with catalog_process(bootstrap, servers.mongodb_uri, ADMIN) as catalog:
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MONGODB_URI": servers.mongodb_uri, "MATCHER_PORT": str(matcher_port),
                   "SSMATCH_MATCHER_DB": f"t_matcher_{prefix}", "SSMATCH_GROUP_PREFIX": prefix, "SSMATCH_CATALOG_URL": catalog.url,
                   "SSMATCH_ADMIN_TOKEN": ADMIN, "SSMATCH_KAFKA_SESSION_TIMEOUT_S": "6", "SSMATCH_LOG_FORMAT": "text",
                   "SSMATCH_KAFKA_PRODUCER_MAX_BATCH_BYTES": "1"}
            child = Child("matcher-web", [sys.executable, "-m", "services.matcher"], env, log_dir / "matcher-web.log").start()
            url = f"http://127.0.0.1:{matcher_port}"
            try:
                office, provider, broker_org = catalog.org("country_office"), catalog.org("solution_provider"), catalog.org("broker")
                with httpx.Client(base_url=catalog.url, timeout=60) as c:
                    need = c.post("/v1/needs", json=NEED, headers=office.headers).json()["id"]
                    offer = c.post("/v1/offers", json=OFFER, headers=provider.headers).json()["id"]
                    gone = c.post("/v1/needs", json={**NEED, "title": "Solar irrigation pumps for smallholders"}, headers=office.headers).json()["id"]
                    assert c.delete(f"/v1/needs/{gone}", headers=office.headers).status_code in (200, 204)

                def healthy() -> bool:
                    try:
                        return httpx.get(url + "/healthz", timeout=2).status_code == 200
                    except httpx.HTTPError:
                        return False

                wait_until(healthy, 120, "the matcher worker", [child])

                def knows_all() -> bool:
                    auth = {"Authorization": f"Bearer {ADMIN}"}
                    r = httpx.post(url + "/v1/score", json={"need_id": need, "offer_id": offer}, headers=auth, timeout=30)
                    w = httpx.post(url + "/v1/score", json={"need_id": gone, "offer_id": offer}, headers=auth, timeout=30)
                    return r.status_code == 200 and w.status_code == 200

                wait_until(knows_all, 120, "the matcher to index the items", [child])
                yield Stack(url, catalog, office, provider, broker_org, need, offer, gone, child)
            finally:
                stop_all([child], grace_s=5)
    finally:
        stop_all([broker], grace_s=3)


# ---- who may do what ------------------------------------------------------------------------------

def test_authorization_matrix(stack: Stack) -> None:
    revoked = stack.catalog.org("country_office")
    stack.catalog.revoke(revoked)
    callers = {"none": None, "malformed": "not-a-token", "unknown": "ssm_" + "x" * 43, "revoked": revoked.token,
               "admin": ADMIN, "broker": stack.broker.token, "office": stack.office.token, "provider": stack.provider.token}
    pair = {"need_id": stack.need_id, "offer_id": stack.offer_id}
    withdrawn_pair = {"need_id": stack.withdrawn_id, "offer_id": stack.offer_id}
    operations = {
        "GET /v1/rules": (("GET", "/v1/rules", {}), {}),
        "GET /v1/centring": (("GET", "/v1/centring", {}), {}),
        "POST /v1/score (open items)": (("POST", "/v1/score", {"json": pair}), {}),
        # a withdrawn item is its owner's and staff's to look at, anyone else's 404
        "POST /v1/score (withdrawn need)": (("POST", "/v1/score", {"json": withdrawn_pair}), {"provider": 404}),
        "POST /v1/centring": (("POST", "/v1/centring", {}), {"broker": 403, "office": 403, "provider": 403}),
    }
    failures = []
    for name, ((method, path, kwargs), special) in operations.items():
        for who, token in callers.items():
            want = 401 if who in ("none", "malformed", "unknown", "revoked") else special.get(who, 200)
            r = stack.call(method, path, token, **kwargs)
            body = r.json()
            shaped = want == 200 or (isinstance(body.get("error"), dict) and {"code", "message", "details"} <= set(body["error"]))
            if r.status_code != want or not shaped:
                failures.append(f"{name} as {who}: {r.status_code} {r.text[:200]} (want {want})")
    assert not failures, "\n".join(failures)


# ---- hostile inputs -------------------------------------------------------------------------------

def _hostile_cases(stack: Stack) -> list[tuple[str, str, str, dict[str, Any], int]]:
    """(name, method, path, request kwargs, expected status), all with the admin token unless the
    kwargs carry their own headers."""
    pair = {"need_id": stack.need_id, "offer_id": stack.offer_id}
    item = dict(NEED)
    score = "/v1/score"
    cases: list[tuple[str, str, str, dict[str, Any], int]] = [
        ("not JSON", "POST", score, {"content": b"{not json"}, 422),
        ("empty body", "POST", score, {"content": b""}, 422),
        ("JSON array", "POST", score, {"json": [pair]}, 422),
        ("JSON string", "POST", score, {"json": "need"}, 422),
        ("JSON number", "POST", score, {"json": 42}, 422),
        ("JSON null", "POST", score, {"content": b"null"}, 422),
        ("NaN literal", "POST", score, {"content": b'{"need_id": NaN}'}, 422),
        ("Infinity in an embedding", "POST", score, {"content": b'{"offer_id": "x", "need": {"title": "t", "country": "KEN", "embedding": [Infinity]}}'}, 422),
        ("deeply nested", "POST", score, {"content": b'{"need":' * 5000 + b"1" + b"}" * 5000}, 422),
        ("unknown field", "POST", score, {"json": {**pair, "extra": 1}}, 422),
        ("only a need", "POST", score, {"json": {"need_id": stack.need_id}}, 422),
        ("only an offer", "POST", score, {"json": {"offer_id": stack.offer_id}}, 422),
        ("need_id a number", "POST", score, {"json": {"need_id": 5, "offer_id": stack.offer_id}}, 422),
        ("need_id empty", "POST", score, {"json": {"need_id": "", "offer_id": stack.offer_id}}, 422),
        ("need_id 10 KB", "POST", score, {"json": {"need_id": "n" * 10_000, "offer_id": stack.offer_id}}, 422),
        ("need_id with NUL", "POST", score, {"json": {"need_id": "ab\x00cd", "offer_id": stack.offer_id}}, 404),
        ("need_id regex metacharacters", "POST", score, {"json": {"need_id": ".*", "offer_id": stack.offer_id}}, 404),
        ("need_id a $ operator", "POST", score, {"json": {"need_id": {"$ne": None}, "offer_id": stack.offer_id}}, 422),
        ("unknown need id", "POST", score, {"json": {"need_id": "nope", "offer_id": stack.offer_id}}, 404),
        ("offer id given as need id", "POST", score, {"json": {"need_id": stack.offer_id, "offer_id": stack.offer_id}}, 404),
        ("need not an object", "POST", score, {"json": {"need": "text", "offer_id": stack.offer_id}}, 422),
        ("need without title", "POST", score, {"json": {"need": {"country": "KEN"}, "offer_id": stack.offer_id}}, 422),
        ("need with empty title", "POST", score, {"json": {"need": {**item, "title": ""}, "offer_id": stack.offer_id}}, 422),
        ("need title 10 KB", "POST", score, {"json": {"need": {**item, "title": "t" * 10_000}, "offer_id": stack.offer_id}}, 422),
        ("need without country", "POST", score, {"json": {"need": {"title": "Seeds"}, "offer_id": stack.offer_id}}, 422),
        ("country lower case", "POST", score, {"json": {"need": {**item, "country": "mwi"}, "offer_id": stack.offer_id}}, 422),
        ("country a number", "POST", score, {"json": {"need": {**item, "country": 454}, "offer_id": stack.offer_id}}, 422),
        ("sdgs strings", "POST", score, {"json": {"need": {**item, "sdgs": ["two"]}, "offer_id": stack.offer_id}}, 422),
        ("sdgs 100 of them", "POST", score, {"json": {"need": {**item, "sdgs": list(range(100))}, "offer_id": stack.offer_id}}, 422),
        ("sectors not a list", "POST", score, {"json": {"need": {**item, "sectors": "agriculture"}, "offer_id": stack.offer_id}}, 422),
        ("keywords 1000 of them", "POST", score, {"json": {"need": {**item, "keywords": ["k"] * 1000}, "offer_id": stack.offer_id}}, 422),
        ("embedding too short", "POST", score, {"json": {"need": {**item, "embedding": [0.1, 0.2]}, "offer_id": stack.offer_id}}, 422),
        ("embedding of strings", "POST", score, {"json": {"need": {**item, "embedding": ["a"] * 384}, "offer_id": stack.offer_id}}, 422),
        ("embedding 5000 long", "POST", score, {"json": {"need": {**item, "embedding": [0.0] * 5000}, "offer_id": stack.offer_id}}, 422),
        ("accepts_interpretation a string", "POST", score, {"json": {"need": {**item, "accepts_interpretation": "maybe"}, "offer_id": stack.offer_id}}, 422),
        ("description 30 KB", "POST", score, {"json": {"need": {**item, "description": "d" * 30_000}, "offer_id": stack.offer_id}}, 422),
        ("body of 2 MB", "POST", score, {"content": b'{"need_id": "' + b"a" * 2_000_000 + b'"}'}, 413),
        ("invalid UTF-8", "POST", score, {"content": b'{"need_id": "\xff\xfe"}'}, 422),
        ("wrong content type, valid JSON", "POST", score, {"json": pair, "headers": {"Content-Type": "text/plain", "Authorization": f"Bearer {ADMIN}"}}, 200),
        ("GET on score", "GET", score, {}, 405),
        ("PUT on score", "PUT", score, {"json": pair}, 405),
        ("DELETE on rules", "DELETE", "/v1/rules", {}, 405),
        ("PATCH on centring", "PATCH", "/v1/centring", {}, 405),
        ("unknown path", "GET", "/v1/nothing-here", {}, 404),
        ("path traversal", "GET", "/v1/../../etc/passwd", {}, 404),
        ("encoded NUL in path", "GET", "/v1/rules%00", {}, 404),
        ("very long path", "GET", "/v1/" + "a" * 4000, {}, 404),
        ("bearer without a token", "GET", "/v1/rules", {"headers": {"Authorization": "Bearer"}}, 401),
        ("basic auth", "GET", "/v1/rules", {"headers": {"Authorization": "Basic YWRtaW46YWRtaW4="}}, 401),
        ("token 4 KB (the HTTP parser refuses headers over 8 KB itself)", "GET", "/v1/rules", {"headers": {"Authorization": "Bearer ssm_" + "a" * 4_000}}, 401),
        ("token with non-ASCII", "GET", "/v1/rules", {"headers": {"Authorization": "Bearer ssm_ключ".encode()}}, 401),
        ("token of another scheme case", "GET", "/v1/rules", {"headers": {"Authorization": f"BEARER {ADMIN}"}}, 200),
        ("admin token with a suffix", "GET", "/v1/rules", {"headers": {"Authorization": f"Bearer {ADMIN}x"}}, 401),
        ("no token on score", "POST", score, {"json": pair, "headers": {}}, 401),
        ("no token on centring rebuild", "POST", "/v1/centring", {"headers": {}}, 401),
    ]
    return cases


def test_hostile_inputs_get_a_clear_4xx_in_the_contract_shape(stack: Stack) -> None:
    cases = _hostile_cases(stack)
    assert len(cases) >= 50
    failures = []
    for name, method, path, kwargs, want in cases:
        kwargs = dict(kwargs)
        headers = kwargs.pop("headers", {"Authorization": f"Bearer {ADMIN}"})
        r = httpx.request(method, stack.url + path, headers=headers, timeout=60, **kwargs)
        body: Any = None
        with contextlib.suppress(ValueError):
            body = r.json()
        shaped = want == 200 or (isinstance(body, dict) and isinstance(body.get("error"), dict)
                                 and {"code", "message", "details"} <= set(body["error"]))
        if r.status_code != want or not shaped:
            failures.append(f"{name}: {r.status_code} {r.text[:160]!r} (want {want})")
    assert not failures, "\n".join(failures)
    # nothing accepted before is lost: the items still score
    ok = stack.call("POST", "/v1/score", ADMIN, json={"need_id": stack.need_id, "offer_id": stack.offer_id})
    assert ok.status_code == 200 and 0 <= ok.json()["score"] <= 1


# ---- search by meaning --------------------------------------------------------------------------

def test_search_by_meaning_ranks_open_items_within_the_filters_and_answers_concurrent_callers_alike(stack: Stack) -> None:
    """The view's batches (one thread, one embedding call and one product per batch) answer as one
    search at a time does; a withdrawn item is never found; a filter that leaves nothing finds nothing."""
    search = {"q": "semences résistantes à la sécheresse pour petits exploitants", "kind": "need", "k": 10}
    found: dict[str, Any] = {}

    def need_found() -> bool:  # the matcher embeds new items in the background; its snapshot is ≤ 1 s old
        r = stack.call("POST", "/v1/search", stack.office.token, json=search)
        assert r.status_code == 200, r.text
        found.update(r.json())
        return stack.need_id in [h["id"] for h in found["items"]]

    wait_until(need_found, 120, "the need to be found by meaning", [stack.child])
    assert stack.withdrawn_id not in [h["id"] for h in found["items"]]
    assert found["corpus"]["size"] >= 1 and all(-1 <= h["similarity"] <= 1 for h in found["items"])
    only = stack.call("POST", "/v1/search", stack.office.token, json={**search, "filters": {"sectors": ["agriculture"], "country": ["MWI"]}}).json()
    assert stack.need_id in [h["id"] for h in only["items"]]
    none = stack.call("POST", "/v1/search", stack.office.token, json={**search, "filters": {"country": ["FJI"]}}).json()
    assert none["items"] == []

    async def concurrently() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {stack.office.token}"}, timeout=60) as client:
            queries = [search["q"], "formação de professores", "水资源管理", search["q"], "seed multiplication training"]
            answers = await asyncio.gather(*(client.post("/v1/search", json={**search, "q": q}) for q in queries))
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
            return [a.json() for a in answers]

    together = asyncio.run(concurrently())
    alone = stack.call("POST", "/v1/search", stack.office.token, json={**search, "q": "formação de professores"}).json()
    for one, other in ((together[0], together[3]), (together[1], alone)):  # a batch's product may differ in the 7th digit
        assert [h["id"] for h in one["items"]] == [h["id"] for h in other["items"]]
        assert [h["similarity"] for h in one["items"]] == pytest.approx([h["similarity"] for h in other["items"]], abs=1e-5)
        assert one["corpus"]["size"] == other["corpus"]["size"] and one["corpus"]["mean"] == pytest.approx(other["corpus"]["mean"], abs=1e-5)


# ---- the OpenAPI document under schemathesis ------------------------------------------------------

FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("role", ["admin", "broker", "country_office"])
def test_the_api_conforms_to_its_openapi_under_every_role(stack: Stack, role: str) -> None:
    doc = httpx.get(stack.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.1") and {"/v1/score", "/v1/rules", "/v1/centring"} <= set(doc["paths"])
    token = ADMIN if role == "admin" else (stack.broker if role == "broker" else stack.office).token
    schema = schemathesis.openapi.from_dict(doc)
    calls = {"n": 0}
    server_errors: list[str] = []

    @FUZZ
    def check(case: Any) -> None:
        if case.path == "/v1/centring" and case.method == "POST":
            return  # a rebuild re-proposes across the whole catalogue; its authorization is asserted above
        calls["n"] += 1
        response = case.call(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        if response.status_code >= 500:
            server_errors.append(f"{case.method} {case.path}: {response.status_code} {response.text[:200]}")
        case.validate_response(response, excluded_checks=[schemathesis.checks.positive_data_acceptance])

    for operation in schema.get_all_operations():
        op = operation.ok()
        if op.path == "/healthz":
            continue
        strategy = op.as_strategy()
        from hypothesis import given

        given(case=strategy)(check)()
    assert not server_errors, server_errors
    assert calls["n"] >= FUZZ_EXAMPLES * 3
    print(f"\nmatcher fuzz as {role}: {calls['n']} requests, 0 5xx")


# ---- the catalog out of reach ---------------------------------------------------------------------

def test_zz_a_token_the_catalog_cannot_check_gets_503_not_500(stack: Stack) -> None:
    """Runs last in this module (it stops nothing, but points at a catalog that is not there): a
    second worker whose SSMATCH_CATALOG_URL is closed answers 503 with Retry-After."""
    port = free_port()
    env = dict(stack.child.env)
    env.update(MATCHER_PORT=str(port), SSMATCH_CATALOG_URL=f"http://127.0.0.1:{free_port()}", SSMATCH_GROUP_PREFIX=f"mw{uid()}")
    child = Child("matcher-web-nocatalog", [sys.executable, "-m", "services.matcher"], env, stack.child.log_path.with_name("matcher-nocat.log")).start()
    try:
        def answering() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answering, 120, "the second worker's web server", [child])
        r = httpx.get(f"http://127.0.0.1:{port}/v1/rules", headers={"Authorization": f"Bearer {stack.office.token}"}, timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "token_service_unavailable" and r.headers.get("Retry-After")
        admin = httpx.get(f"http://127.0.0.1:{port}/v1/rules", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        assert admin.status_code == 200  # the environment's admin token needs no catalog
    finally:
        stop_all([child], grace_s=5)
