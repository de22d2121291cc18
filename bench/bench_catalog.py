"""Catalog benchmark: the real API against a bare FastAPI endpoint on the same store, in the same run.

    python -m bench.bench_catalog            (or: python bench/bench_catalog.py)

Starts its own SecantusDB (temporary directory), stores 100,000 needs with insert_many and builds the
catalog's indexes, then serves
  - the real catalog app (auth, rate limiter, validation, one transaction writing item + outbox event +
    audit entry, JSON views), and
  - a bare FastAPI app doing the minimal equivalent (insert_one of the posted JSON; find with the same
    filter, limit 20),
each with uvicorn in its own process on a free port, and drives both over HTTP with httpx at a fixed
concurrency. Prints one `name=value` per line: absolute rates and `create_vs_bare`, `search_vs_bare`
(target >= 0.5). The relay is not started (no broker here): creates pay for writing the outbox event,
not for publishing it, as in production where publishing is asynchronous.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_ITEMS = int(os.environ.get("BENCH_CATALOG_ITEMS", "100000"))
N_PROPOSALS = int(os.environ.get("BENCH_CATALOG_PROPOSALS", "10000"))
N_OFFERS = 300
FIGURES: dict[str, float] = {}
DURATION_S = float(os.environ.get("BENCH_CATALOG_DURATION_S", "6"))
CONCURRENCY = int(os.environ.get("BENCH_CATALOG_CONCURRENCY", "16"))
DB = "bench_catalog"
ADMIN = "bench-admin"
SECTOR, QUERY = "agriculture", "seed"

WORDS = ["seed", "irrigation", "water", "school", "health", "clinic", "solar", "energy", "training", "digital", "census", "data", "fisheries", "coastal", "forest", "land", "tenure", "housing", "transport", "road", "youth", "employment", "finance", "microcredit", "trade", "customs", "migration", "nutrition", "vaccine", "climate", "drought", "flood", "resilience", "governance", "statistics", "tourism", "culture", "gender"]
NEED_BODY = {
    "title": "Drought-tolerant seed systems for smallholders",
    "description": "The ministry seeks support to multiply and certify drought-tolerant seed varieties.",
    "sdgs": [2, 13],
    "sectors": ["agriculture", "food_security"],
    "modalities": ["capacity_development"],
    "languages": ["en"],
}


# ---- the servers (run in child processes) ------------------------------------------------------
def real_app(mongodb_uri: str) -> Any:
    from services.catalog.app import create_app
    from ssmatch.settings import Settings

    settings = Settings.model_validate(
        {
            "mongodb_uri": mongodb_uri,
            "catalog_db": DB,
            "admin_token": ADMIN,
            "kafka_bootstrap_servers": "127.0.0.1:9",  # unused: the relay is not started
            "rate_limit_per_minute": 1e9,  # the limiter runs on every request but never refuses
            "rate_limit_burst": 1_000_000,
        }
    )
    return create_app(settings, start_background=False)


def bare_app(mongodb_uri: str) -> Any:
    import re
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from bson import ObjectId
    from pymongo import DESCENDING

    from ssmatch.mongo import make_client

    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        client = make_client(mongodb_uri)
        state["coll"] = client.get_database(DB)["needs"]
        state["matches"] = client.get_database(DB)["matches"]
        yield
        await client.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/bare/needs", status_code=201)
    async def create(request: Request) -> dict[str, Any]:
        doc = await request.json()
        doc["_id"] = str(ObjectId())
        await state["coll"].insert_one(doc)
        return {"id": doc["_id"]}

    @app.get("/bare/matches")
    async def queue(sdg: int, limit: int = 50) -> dict[str, Any]:
        """The minimal queue page: proposed matches of an SDG, best first (as if facets were free)."""
        docs = await state["matches"].find({"status": "proposed", "sdgs": sdg}).sort([("score", DESCENDING), ("_id", 1)]).limit(limit).to_list(limit)
        return {"items": [{**d, "id": d.pop("_id")} for d in docs]}

    @app.get("/bare/needs")
    async def search(sector: str, q: str) -> dict[str, Any]:
        query = {"sectors": sector, "status": {"$ne": "withdrawn"}, "search_text": {"$regex": re.escape(q.casefold())}}
        docs = await state["coll"].find(query).sort("_id", DESCENDING).limit(20).to_list(20)
        return {"items": [{**d, "id": d.pop("_id")} for d in docs]}

    return app


def serve(kind: str, port: int, mongodb_uri: str) -> None:
    import uvicorn

    app = real_app(mongodb_uri) if kind == "real" else bare_app(mongodb_uri)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---- set-up ---------------------------------------------------------------------------------
def seed(mongodb_uri: str) -> tuple[str, str]:
    """100k needs straight into the store, the catalog's indexes, and a country office token."""
    from bson import ObjectId
    from pymongo import MongoClient

    from services.catalog.store import CatalogStore
    from ssmatch import reference
    from ssmatch.auth import hash_token, new_token
    from ssmatch.mongo import make_client
    from ssmatch.text import fold

    rng = random.Random(42)
    sectors = sorted(reference.SECTOR_CODES)
    modalities = sorted(reference.MODALITY_CODES)
    countries = ["MWI", "SEN", "KEN", "BRA", "IND", "NPL", "BOL", "FJI", "HTI", "GHA"]
    now = datetime.now(UTC)
    with MongoClient(mongodb_uri) as client:
        db = client[DB]
        db.organizations.insert_one({"_id": "bench-office", "name": "Bench office", "type": "country_office", "country": "MWI", "language": "en", "contact": None, "created_at": now})
        token = new_token()
        db.tokens.insert_one({"_id": hash_token(token), "token_id": "bench-token", "organization_id": "bench-office", "role": "seeker", "created_at": now, "expires_at": None, "revoked_at": None})
        batch: list[dict[str, Any]] = []
        for _ in range(N_ITEMS):
            title = " ".join(rng.choices(WORDS, k=6))
            description = " ".join(rng.choices(WORDS, k=30))
            doc = {
                "_id": str(ObjectId()), "kind": "need", "organization_id": f"org{rng.randrange(500)}", "title": title,
                "description": description, "keywords": [], "sdgs": sorted(set(rng.choices(range(1, 18), k=2))),
                "sectors": sorted(set(rng.choices(sectors, k=2))), "modalities": [rng.choice(modalities)], "languages": ["en"],
                "text_language": "en", "country": rng.choice(countries), "status": "open" if rng.random() < 0.95 else "withdrawn",
                "expires_at": None, "accepts_interpretation": False, "gender_responsive": False, "attributes": {},
                "urgency": "medium", "budget": None, "cost_sharing": False, "time_window": None,
                "revision": 1, "created_at": now, "updated_at": now,
            }
            doc["search_text"] = fold(f"{title} {description}")
            batch.append(doc)
            if len(batch) == 5000:
                db.needs.insert_many(batch, ordered=False)
                batch = []
        if batch:
            db.needs.insert_many(batch, ordered=False)
        db.organizations.insert_one({"_id": "bench-broker", "name": "Bench desk", "type": "broker", "country": "KEN", "language": "en", "contact": None, "created_at": now})
        broker = new_token()
        db.tokens.insert_one({"_id": hash_token(broker), "token_id": "bench-broker-token", "organization_id": "bench-broker", "role": "broker", "created_at": now, "expires_at": None, "revoked_at": None})
        offers = []
        for i in range(N_OFFERS):
            offers.append({"_id": f"offer{i:04d}", "kind": "offer", "organization_id": f"prov{i % 50}", "title": "Offer", "description": "x",
                           "sdgs": sorted(set(rng.choices(range(1, 18), k=2))), "sectors": [rng.choice(sectors)], "modalities": [rng.choice(modalities)],
                           "languages": ["en", "fr"], "country": rng.choice(countries), "status": "open", "revision": 1, "created_at": now, "updated_at": now})
        db.offers.insert_many(offers)
        from services.catalog.domain.queue import match_facets

        need_docs = list(db.needs.find({"status": "open"}).limit(N_PROPOSALS))
        proposals = []
        for i in range(N_PROPOSALS):
            need, offer = need_docs[i % len(need_docs)], offers[rng.randrange(N_OFFERS)]
            need_id, offer_id = need["_id"], offer["_id"]
            score = round(rng.random(), 4)
            proposals.append({"_id": f"{need_id}.{offer_id}", "need_id": need_id, "offer_id": offer_id, "need_organization_id": "org1",
                              "offer_organization_id": "prov1", "need_title": "Need", "offer_title": "Offer", "score": score,
                              "explanation": {"components": {"text": score}}, "rules_version": "1", "need_revision": 1, "offer_revision": 1,
                              "status": "proposed", "proposed_at": now - timedelta(seconds=rng.randrange(30 * 86400)), "created_at": now,
                              # the facets the catalog copies onto each proposal (FacetEnricher), stored here in bulk
                              **match_facets(need, offer)})
        db.matches.insert_many(proposals, ordered=False)

    async def indexes() -> None:
        from services.catalog.adapters.matches import MatchRepository

        client = make_client(mongodb_uri)
        try:
            store = CatalogStore(client, DB)
            await store.init_indexes()
            await MatchRepository(store).init_indexes()
            # what copying facets costs per proposal (the FacetEnricher's work), measured on 200 of them
            repo = MatchRepository(store)
            sample = [d["_id"] for d in await store.matches.find({}, {"_id": 1}).limit(200).to_list(200)]
            for match_id in sample:
                await store.matches.update_one({"_id": match_id}, {"$set": {"facets_v": None}})
            t0 = time.perf_counter()
            done = await repo.enrich_pending()
            FIGURES["catalog.facets_enrich_ms_per_proposal"] = (time.perf_counter() - t0) * 1000 / max(done, 1)
        finally:
            await client.close()

    asyncio.run(indexes())
    return token, broker


# ---- load -----------------------------------------------------------------------------------
async def measure(url: str, method: str, path: str, *, headers: dict[str, str], body: Any = None, params: dict[str, Any] | None = None) -> tuple[float, float, float]:
    """Requests/s, p50 and p95 latency (ms) at CONCURRENCY for DURATION_S (after a short warm-up)."""
    import httpx

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        async def one() -> float:
            t0 = time.perf_counter()
            r = await client.request(method, path, json=body, params=params)
            if r.status_code >= 300:
                raise RuntimeError(f"{method} {url}{path}: HTTP {r.status_code} {r.text[:200]}")
            return time.perf_counter() - t0

        await asyncio.gather(*(one() for _ in range(CONCURRENCY * 2)))  # warm-up: connections, caches
        latencies: list[float] = []
        deadline = time.perf_counter() + DURATION_S

        async def worker() -> None:
            while time.perf_counter() < deadline:
                latencies.append(await one())

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return len(latencies) / elapsed, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.95)] * 1000


async def walk_queue(url: str, headers: dict[str, str], params: dict[str, Any]) -> tuple[int, int, float]:
    """Page through the whole filtered queue by cursor: (rows, pages, p95 ms of a page)."""
    import httpx

    rows = pages = 0
    latencies = []
    cursor = None
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        while True:
            t0 = time.perf_counter()
            r = await client.get("/v1/matches", params={**params, **({"cursor": cursor} if cursor else {})})
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            body = r.json()
            rows += len(body["items"])
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
    latencies.sort()
    return rows, pages, latencies[int(len(latencies) * 0.95)] * 1000


def stop_processes(procs: Iterable[subprocess.Popen[bytes] | None]) -> None:
    """Terminate the bench's servers, killing any that has not gone after 10 s."""
    alive = [p for p in procs if p is not None]
    for proc in alive:
        proc.terminate()
    for proc in alive:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {url} exited with {proc.returncode}")
        try:
            httpx.get(url + "/openapi.json", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"server {url} did not start")


def main() -> int:
    from ssmatch.stack.embedded import mongo_uri, start_secantus
    from ssmatch.stack.processes import free_port, stop_all

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        port = free_port()
        store = start_secantus(port, Path(tmp) / "mongo", Path(tmp) / "logs")
        servers: list[subprocess.Popen[bytes]] = []
        try:
            uri = mongo_uri(port)
            t0 = time.monotonic()
            token, broker = seed(uri)
            print(f"catalog.seed_items={N_ITEMS}")
            print(f"catalog.seed_proposals={N_PROPOSALS}")
            for name, value in FIGURES.items():
                print(f"{name}={value:.1f}")
            print(f"catalog.seed_s={time.monotonic() - t0:.1f}")
            urls = {}
            for kind in ("real", "bare"):
                p = free_port()
                env = {**os.environ, "SSMATCH_LOG_LEVEL": "WARNING", "SSMATCH_LOG_FORMAT": "text", "PYTHONPATH": str(ROOT)}
                proc = subprocess.Popen([sys.executable, "-m", "bench.bench_catalog", "--serve", kind, "--port", str(p), "--mongodb-uri", uri], cwd=ROOT, env=env)
                servers.append(proc)
                urls[kind] = f"http://127.0.0.1:{p}"
                wait_http(urls[kind], proc)
            auth = {"Authorization": f"Bearer {token}"}
            search = {"sector": SECTOR, "q": QUERY}

            staff = {"Authorization": f"Bearer {broker}"}
            queue = {"status": "proposed", "sdg": 2, "limit": 50}

            async def run() -> dict[str, tuple[float, float, float]]:
                out = {}
                out["bare_queue"] = await measure(urls["bare"], "GET", "/bare/matches", headers={}, params={"sdg": 2, "limit": 50})
                out["queue"] = await measure(urls["real"], "GET", "/v1/matches", headers=staff, params=queue)
                out["queue_region_group"] = await measure(urls["real"], "GET", "/v1/matches", headers=staff,
                                                          params={"status": "proposed", "region": "Africa", "group": "LDC", "min_score": 0.3, "limit": 50})

                out["bare_create"] = await measure(urls["bare"], "POST", "/bare/needs", headers={}, body={**NEED_BODY, "status": "open", "search_text": "x"})
                out["create"] = await measure(urls["real"], "POST", "/v1/needs", headers=auth, body=NEED_BODY)
                out["bare_search"] = await measure(urls["bare"], "GET", "/bare/needs", headers={}, params=search)
                out["search"] = await measure(urls["real"], "GET", "/v1/needs", headers=auth, params=search)
                return out

            figures = asyncio.run(run())
            for name, (rate, p50, p95) in figures.items():
                print(f"catalog.{name}_rps={rate:.1f}")
                print(f"catalog.{name}_p50_ms={p50:.1f}")
                print(f"catalog.{name}_p95_ms={p95:.1f}")
            rows, pages, walk_p95 = asyncio.run(walk_queue(urls["real"], staff, {"status": "proposed", "sdg": 2, "limit": 100}))
            age_rows, _age_pages, age_p95 = asyncio.run(walk_queue(urls["real"], staff, {"status": "proposed", "sort": "age", "group": "LDC", "limit": 100}))
            print(f"catalog.queue_age_walk_rows={age_rows}")
            print(f"catalog.queue_age_walk_page_p95_ms={age_p95:.1f}")
            print(f"catalog.queue_walk_rows={rows}")
            print(f"catalog.queue_walk_pages={pages}")
            print(f"catalog.queue_walk_page_p95_ms={walk_p95:.1f}")
            print(f"queue_vs_bare={figures['queue'][0] / figures['bare_queue'][0]:.3f}")
            print(f"create_vs_bare={figures['create'][0] / figures['bare_create'][0]:.3f}")
            print(f"search_vs_bare={figures['search'][0] / figures['bare_search'][0]:.3f}")
            print(f"catalog.concurrency={CONCURRENCY}")
            print(f"catalog.total_s={time.monotonic() - started:.1f}")
        finally:
            stop_processes(servers)
            stop_all([store], grace_s=5)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["real", "bare"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--mongodb-uri")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.mongodb_uri)
    else:
        sys.exit(main())
