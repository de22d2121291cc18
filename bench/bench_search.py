"""Search benchmark (issue 13): the catalog's search and filter-only lists at 100,000 items, against
today's regex path on the same data, in the same run.

    python -m bench.bench_search            (SSMATCH_BENCH_ITEMS=20000 for a quicker run)

Starts its own SecantusDB, stores SSMATCH_BENCH_ITEMS needs (default 100,000) with insert_many and the
catalog's indexes, then serves over HTTP (uvicorn, one process each):
  - the catalog with its word index (built from the store at start: `search.index_build_s`),
  - the same catalog without it (today's path: `q` is a regular expression evaluated by the store),
  - a meaning server: the matcher's own `POST /v1/search` view logic (`services.matcher.search`: its
    `Searcher`, batching) with the real embedder for every query, over a 100,000 × 384 matrix of random
    unit vectors. A real
    matcher cannot be given 100,000 vectors here (its model embeds ~8 texts/s: ~3.5 hours), and
    nearest-neighbour cost does not depend on what the vectors mean.
and drives them with CONCURRENCY (16) clients, each request a different query. Prints `name=value`:
`search_p95_ms` (relevance search with a sector filter: words + meaning fused), `list_p95_ms`
(a filter-only page), `search_vs_regex` (requests/s of that search over today's regex `q` with the
same sector filter), and the figures behind them.
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_catalog import WORDS, stop_processes, wait_http  # noqa: E402

N_ITEMS = int(os.environ.get("SSMATCH_BENCH_ITEMS", "100000"))
DURATION_S = float(os.environ.get("BENCH_SEARCH_DURATION_S", "8"))
CONCURRENCY = int(os.environ.get("BENCH_SEARCH_CONCURRENCY", "16"))
#: catalog processes serving the searched catalog behind one port (as behind a load balancer)
CATALOGS = int(os.environ.get("BENCH_SEARCH_CATALOGS", "2"))
#: how requests reach the catalog processes: `least` (the one with the fewest in flight, as a least-request
#: load balancer routes) or `kernel` (the shared SO_REUSEPORT port: the kernel spreads connections once)
BALANCE = os.environ.get("BENCH_SEARCH_BALANCE", "least")
DB = "bench_search"
SECTOR = "agriculture"
CHINESE = ["移民", "统计", "数据库", "学校", "卫生", "能源", "水", "培训"]


# ---- servers (child processes) --------------------------------------------------------------------
def catalog_app(mongodb_uri: str, index_dir: str, matcher_url: str, search: bool) -> Any:
    from services.catalog.app import create_app
    from ssmatch.settings import Settings

    settings = Settings.model_validate({
        "mongodb_uri": mongodb_uri, "catalog_db": DB, "admin_token": "bench-admin", "kafka_bootstrap_servers": "127.0.0.1:9",
        "rate_limit_per_minute": 1e9, "rate_limit_burst": 1_000_000, "search_index_dir": index_dir, "matcher_url": matcher_url,
        "search_meaning_timeout_s": 2.0,
    })
    return create_app(settings, start_background=False, start_search=search)


def meaning_app(items_file: str) -> Any:
    """The matcher's search view (same request model, filters and pure ranking, real embedder) over the
    seeded open items, each with a random unit vector."""
    import json

    import numpy as np
    from fastapi import FastAPI

    from services.matcher import search
    from services.matcher.scoring import Embedder
    from services.matcher.web import SearchRequest

    docs = {d["_id"]: d for d in map(json.loads, Path(items_file).read_text().splitlines())}
    ids = sorted(docs)
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(len(ids), 384)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    searcher = search.Searcher(search.QueryVectors(Embedder().embed))  # as the matcher's view
    corpus = search.Corpus(ids, matrix, docs, search.Columns.of_docs(ids, docs))
    app = FastAPI()

    async def view(request: Request) -> JSONResponse:
        deadline = search.deadline_of(request.headers.get(search.BUDGET_HEADER))
        body = SearchRequest.model_validate(await request.json())
        try:
            found = await searcher.search(search.Question(corpus, body.q, body.k, body.filters, deadline))
        except search.Expired:
            return JSONResponse({"error": {"code": "unavailable", "message": "over budget", "details": None}}, status_code=503)
        return JSONResponse(found.view())

    app.add_api_route("/v1/search", view, methods=["POST"])
    return app


def serve(kind: str, port: int, uri: str, index_dir: str, matcher_url: str, own_port: int | None = None) -> None:
    """One server. With `own_port`, `port` is shared (SO_REUSEPORT: the kernel spreads connections over
    the processes listening on it, as a load balancer in front of several catalog processes would) and
    `own_port` is this process's alone (to see when its index is ready)."""
    import socket

    import uvicorn

    app = meaning_app(str(Path(index_dir).parent / "items.jsonl")) if kind == "meaning" else catalog_app(uri, index_dir, matcher_url, search=kind == "search")
    if own_port is None:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        return
    sockets = []
    for number, shared in ((port, True), (own_port, False)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", number))
        sockets.append(sock)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=sockets)


# ---- set-up -----------------------------------------------------------------------------------------
def seed(uri: str, items_file: Path) -> str:
    """N_ITEMS needs (one in seven in Chinese) straight into the store, the catalog's indexes, a token;
    the open ones' filter fields to `items_file` (for the meaning server)."""
    import json

    from bson import ObjectId
    from pymongo import MongoClient

    from services.catalog.store import CatalogStore
    from ssmatch import reference
    from ssmatch.auth import hash_token, new_token
    from ssmatch.mongo import make_client
    from ssmatch.text import fold

    rng = random.Random(13)
    sectors, modalities = sorted(reference.SECTOR_CODES), sorted(reference.MODALITY_CODES)
    countries = ["MWI", "SEN", "KEN", "BRA", "IND", "NPL", "BOL", "FJI", "HTI", "GHA"]
    now = datetime.now(UTC)
    with MongoClient(uri) as client:
        db = client[DB]
        db.organizations.insert_one({"_id": "bench-office", "name": "Bench office", "type": "country_office", "country": "MWI", "language": "en", "contact": None, "created_at": now})
        token = new_token()
        db.tokens.insert_one({"_id": hash_token(token), "token_id": "bench-token", "organization_id": "bench-office", "role": "seeker", "created_at": now, "expires_at": None, "revoked_at": None})
        batch: list[dict[str, Any]] = []
        for i in range(N_ITEMS):
            chinese = i % 7 == 0
            title = "".join(rng.choices(CHINESE, k=4)) if chinese else " ".join(rng.choices(WORDS, k=6))
            description = "".join(rng.choices(CHINESE, k=20)) if chinese else " ".join(rng.choices(WORDS, k=30))
            doc = {
                "_id": str(ObjectId()), "kind": "need", "organization_id": f"org{rng.randrange(500)}", "title": title, "description": description,
                "keywords": [], "sdgs": sorted(set(rng.choices(range(1, 18), k=2))), "sectors": sorted(set(rng.choices(sectors, k=2))),
                "modalities": [rng.choice(modalities)], "languages": ["zh" if chinese else "en"], "text_language": "zh" if chinese else "en",
                "country": rng.choice(countries), "status": "open" if rng.random() < 0.95 else "withdrawn", "expires_at": None,
                "revision": 1, "created_at": now, "updated_at": now,
            }
            doc["search_text"] = fold(f"{title} {description}")
            batch.append(doc)
            if len(batch) == 5000:
                db.needs.insert_many(batch, ordered=False)
                batch = []
        if batch:
            db.needs.insert_many(batch, ordered=False)
        fields = ("_id", "sectors", "sdgs", "modalities", "languages", "country", "organization_id")
        with items_file.open("w") as fh:
            for doc in db.needs.find({"status": "open"}, dict.fromkeys(fields, 1)):
                fh.write(json.dumps({k: doc.get(k) for k in fields}) + "\n")

    async def indexes() -> None:
        client = make_client(uri)
        try:
            await CatalogStore(client, DB).init_indexes()
        finally:
            await client.close()

    asyncio.run(indexes())
    return token


def wait_index(url: str, proc: subprocess.Popen[bytes], timeout: float = 1800) -> float:
    """Seconds until the catalog's word index is ready (its build from the store at start)."""
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("the catalog exited while building its index")
        try:
            if 'ssmatch_search_index_ready{service="catalog"} 1.0' in httpx.get(url + "/metrics", timeout=5).text:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the word index was not ready in time")


# ---- load -------------------------------------------------------------------------------------------
def queries(seed_: int) -> Callable[[], str]:
    rng = random.Random(seed_)
    return lambda: " ".join(rng.sample(WORDS, 2)) if rng.random() < 0.85 else "".join(rng.sample(CHINESE, 2))


async def measure(urls: str | list[str], token: str, params: Callable[[], dict[str, Any]], *, duration_s: float = DURATION_S,
                  check: Callable[[dict[str, Any]], None] | None = None, served: dict[str, int] | None = None) -> tuple[float, float, float, int]:
    """Requests/s, p50 and p95 (ms) and count at CONCURRENCY clients for `duration_s` (at least one
    request per client: a path slower than the window still gets a rate). The clients share one
    aiohttp session (gzip accepted, as a browser does): it costs ~1.5 ms of CPU a request here, httpx
    ~4 ms, and the clients run on the same two cores as the servers they measure. With several `urls`
    (one server's processes), each request goes to the one with the fewest requests in flight, as a
    least-request load balancer routes; `served` counts the requests each answered."""
    import json

    import aiohttp

    targets = [urls] if isinstance(urls, str) else list(urls)
    in_flight = dict.fromkeys(targets, 0)
    counts = served if served is not None else {}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * len(targets))
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers={"Authorization": f"Bearer {token}"}) as client:
        async def one() -> float:
            url = min(targets, key=lambda u: in_flight[u])
            in_flight[url] += 1
            t0 = time.perf_counter()
            try:
                query = {k: str(v) for k, v in params().items()}
                async with client.get(url + "/v1/needs", params=query) as r:
                    body = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{url}: HTTP {r.status} {body[:200]!r}")
                if check is not None:
                    check(json.loads(body))
                return time.perf_counter() - t0
            finally:
                in_flight[url] -= 1
                counts[url] = counts.get(url, 0) + 1

        latencies: list[float] = []
        t_start = time.perf_counter()
        deadline = t_start + duration_s

        async def worker() -> None:
            latencies.append(await one())
            while time.perf_counter() < deadline:
                latencies.append(await one())

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - t_start
    latencies.sort()
    return len(latencies) / elapsed, latencies[len(latencies) // 2] * 1000, latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] * 1000, len(latencies)


def explain_list(uri: str) -> str:
    """The store's plan for the filter-only page (what `list_p95_ms` measures), as far as it says."""
    from pymongo import MongoClient

    with MongoClient(uri) as client:
        try:
            plan = client[DB].needs.find({"sectors": SECTOR, "sdgs": 2, "status": {"$in": ["open", "matched", "closed"]}}).sort("_id", -1).limit(21).explain()
        except Exception as exc:  # noqa: BLE001 - a store without explain: say so
            return f"unavailable ({type(exc).__name__})"
    text = str(plan.get("queryPlanner", plan))
    for marker in ("IXSCAN", "COLLSCAN", "indexName"):
        if marker in text:
            return marker if marker != "indexName" else "index"
    return text[:80].replace("\n", " ")


def main() -> int:
    from ssmatch.stack.embedded import mongo_uri, start_secantus
    from ssmatch.stack.processes import free_port, stop_all

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        port = free_port()
        store = start_secantus(port, Path(tmp) / "mongo", Path(tmp) / "logs")
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            uri = mongo_uri(port)
            t0 = time.monotonic()
            token = seed(uri, Path(tmp) / "items.jsonl")
            print(f"search.items={N_ITEMS}")
            print(f"search.seed_s={time.monotonic() - t0:.1f}")
            env = {**os.environ, "SSMATCH_LOG_LEVEL": "WARNING", "SSMATCH_LOG_FORMAT": "text", "PYTHONPATH": str(ROOT)}

            def start(kind: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
                return subprocess.Popen([sys.executable, "-m", "bench.bench_search", "--serve", kind, "--port", str(port), "--mongodb-uri", uri,
                                         "--index-dir", str(Path(tmp) / "index"), "--matcher-url", urls["meaning"], *extra], cwd=ROOT, env=env)

            urls: dict[str, str] = {}
            for kind in ("meaning", "regex"):
                p = free_port()
                urls[kind] = f"http://127.0.0.1:{p}"
                procs[kind] = start(kind, p)
                wait_http(urls[kind], procs[kind], timeout=120)
            shared = free_port()
            urls["search"] = f"http://127.0.0.1:{shared}"
            own: dict[str, str] = {}
            for n in range(CATALOGS):  # each keeps its own word index (the first on disk, the others in memory)
                p = free_port()
                own[f"search{n}"] = f"http://127.0.0.1:{p}"
                procs[f"search{n}"] = start("search", shared, "--own-port", str(p))
            for name, url in own.items():
                wait_http(url, procs[name], timeout=120)
            print(f"search.catalog_processes={CATALOGS}")
            print(f"search.index_build_s={max(wait_index(url, procs[name]) for name, url in own.items()):.1f}")
            print(f"list.store_plan={explain_list(uri)}")
            q = queries(1)
            failures: list[str] = []

            def fused(page: dict[str, Any]) -> None:
                if page["search"]["meaning"] != "used":
                    failures.append(page["search"]["message"] or "meaning not used")

            # a least-request balancer over the processes' own ports, or the kernel's spread over the shared one
            searched: str | list[str] = list(own.values()) if BALANCE == "least" else urls["search"]
            served: dict[str, int] = {}

            async def run() -> dict[str, tuple[float, float, float, int]]:
                out = {}
                out["search"] = await measure(searched, token, lambda: {"sector": SECTOR, "q": q(), "sort": "relevance"}, check=fused)
                out["search_words"] = await measure(searched, token, lambda: {"sector": SECTOR, "q": q()})
                rng = random.Random(3)
                out["list"] = await measure(searched, token, lambda: {"sector": rng.choice([SECTOR, "health", "energy"]), "sdg": rng.randrange(1, 18)},
                                            served=served)
                out["list_country_group"] = await measure(searched, token, lambda: {"region": "Africa", "group": "LDC", "sector": SECTOR})
                out["regex"] = await measure(urls["regex"], token, lambda: {"sector": SECTOR, "q": q()}, duration_s=1.0)
                return out

            figures = asyncio.run(run())
            for name, (rate, p50, p95, n) in figures.items():
                print(f"search.{name}_rps={rate:.2f}")
                print(f"search.{name}_p50_ms={p50:.1f}")
                print(f"search.{name}_p95_ms={p95:.1f}")
                print(f"search.{name}_requests={n}")
            print(f"search_p95_ms={figures['search'][2]:.1f}")
            print(f"list_p95_ms={figures['list'][2]:.1f}")
            print(f"search_vs_regex={figures['search'][0] / figures['regex'][0]:.1f}")
            print(f"search.meaning_failures={len(failures)}")
            print(f"search.balance={BALANCE}")
            if served:
                print(f"search.list_served_share_max={max(served.values()) / sum(served.values()):.2f}  # the busiest process's share of the list pages")
            print(f"search.concurrency={CONCURRENCY}")
            print(f"search.total_s={time.monotonic() - started:.1f}")
        finally:
            stop_processes(procs.values())
            stop_all([store], grace_s=5)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["search", "regex", "meaning"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--mongodb-uri")
    parser.add_argument("--index-dir")
    parser.add_argument("--matcher-url")
    parser.add_argument("--own-port", type=int)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.mongodb_uri, args.index_dir, args.matcher_url, args.own_port)
    else:
        sys.exit(main())
