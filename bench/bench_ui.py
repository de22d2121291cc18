"""Workspace benchmark: the broker's queue page against the bare JSON queue on the same store.

    python -m bench.bench_ui          (or: python bench/bench_ui.py)

Starts its own SecantusDB (temporary directory), stores 10,000 proposed matches (and the needs and
offers they pair, over several regions and sectors, with the queue facets the catalog copies onto
each match) and serves the real catalog app with uvicorn in a child process. A broker signs in to the workspace once; the bench then requests, one after another, the queue
page (`/ui/queue` with filters, rendered HTML) and the JSON queue with the same filters
(`/v1/matches?status=proposed&...`, the API a script would use) and prints
  queue_page_p95_ms=   95th percentile latency of the filtered queue page
  queue_api_p95_ms=    the same for the JSON endpoint
  queue_page_vs_api=   requests per second of the page / of the JSON endpoint (target >= 0.5)
"""

from __future__ import annotations

import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_catalog import stop_processes  # noqa: E402

N_MATCHES = int(os.environ.get("BENCH_UI_MATCHES", "10000"))
N_REQUESTS = int(os.environ.get("BENCH_UI_REQUESTS", "30"))
DB = "bench_ui"
ADMIN = "bench-admin"
COUNTRIES = ["SEN", "MLI", "KEN", "BOL", "FJI", "NPL", "HTI", "VNM"]
SECTORS = ["agriculture", "food_security", "health", "education", "water_sanitation"]


def seed(mongodb_uri: str) -> None:
    from bson import ObjectId
    from pymongo import MongoClient

    from services.catalog.domain.queue import match_facets

    rng = random.Random(7)
    now = datetime.now(UTC)
    with MongoClient(mongodb_uri) as client:
        db = client[DB]
        needs = []
        for i in range(N_MATCHES // 4):
            needs.append({"_id": str(ObjectId()), "kind": "need", "organization_id": "o1", "title": f"Need {i}", "description": "d",
                          "sdgs": [rng.randint(1, 17)], "sectors": [rng.choice(SECTORS)], "modalities": ["capacity_development"],
                          "languages": ["en"], "country": rng.choice(COUNTRIES), "status": "open", "revision": 1,
                          "created_at": now, "updated_at": now})
        offers = [{**n, "_id": str(ObjectId()), "kind": "offer", "organization_id": "o2", "title": f"Offer {i}", "country": "BRA"}
                  for i, n in enumerate(needs)]
        db.needs.insert_many(needs)
        db.offers.insert_many(offers)
        matches = []
        for i in range(N_MATCHES):
            need = needs[i % len(needs)]
            offer = offers[(i * 7 + i // len(needs)) % len(offers)]  # distinct pairs
            offer_id = offer["_id"]
            score = round(rng.random(), 4)
            matches.append({"_id": f"{need['_id']}.{offer_id}", "need_id": need["_id"], "offer_id": offer_id,
                            "need_organization_id": "o1", "offer_organization_id": "o2", "need_title": need["title"],
                            "offer_title": f"Offer {i}", "score": score,
                            "explanation": {"components": {"semantic": score * 0.6, "sectors": score * 0.4}, "reasons": ["same sector"]},
                            "rules_version": "bench", "need_revision": 1, "offer_revision": 1, "status": "proposed",
                            "proposed_at": now - timedelta(minutes=i), "created_at": now, **match_facets(need, offer)})
        db.matches.insert_many(matches)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("catalog exited")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("catalog did not start")


def timed(client: httpx.Client, path: str, params: dict[str, str], headers: dict[str, str] | None = None) -> list[float]:
    for _ in range(2):  # warm-up
        client.get(path, params=params, headers=headers)
    out = []
    for _ in range(N_REQUESTS):
        t0 = time.perf_counter()
        r = client.get(path, params=params, headers=headers)
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] * 1000


def main() -> int:
    from ssmatch.stack.embedded import mongo_uri, start_secantus
    from ssmatch.stack.processes import free_port, stop_all

    with tempfile.TemporaryDirectory() as tmp:
        mport = free_port()
        store = start_secantus(mport, Path(tmp) / "mongo", Path(tmp) / "logs")
        proc = None
        try:
            uri = mongo_uri(mport)
            seed(uri)  # before start-up: the catalog then builds its indexes over the stored rows
            port = free_port()
            env = {**os.environ, "MONGODB_URI": uri, "SSMATCH_CATALOG_DB": DB, "SSMATCH_ADMIN_TOKEN": ADMIN, "CATALOG_PORT": str(port),
                   "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "SSMATCH_RATE_LIMIT_PER_MINUTE": "0", "SSMATCH_LOG_LEVEL": "WARNING",
                   "NOTIFY_PORT": str(free_port())}
            code = ("import uvicorn; from services.catalog.app import create_app; "
                    f"uvicorn.run(create_app(start_background=False), host='127.0.0.1', port={port}, log_level='warning', access_log=False)")
            proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
            url = f"http://127.0.0.1:{port}"
            wait_http(url, proc)
            with httpx.Client(base_url=url, timeout=300) as client:
                admin = {"Authorization": f"Bearer {ADMIN}"}
                org = client.post("/v1/organizations", json={"name": "Bench broker", "type": "broker", "country": "USA"}, headers=admin).json()
                token = client.post("/v1/tokens", json={"organization_id": org["id"]}, headers=admin).json()["token"]
                signin = client.get("/ui/")
                csrf = re.search(r'name="csrf" value="([^"]+)"', signin.text).group(1)  # type: ignore[union-attr]
                client.post("/ui/signin", data={"csrf": csrf, "token": token, "next": "/ui/queue"})
                filters = {"status": "proposed", "min_score": "0.2", "sector": "health", "region": "Africa", "sort": "score"}
                page = timed(client, "/ui/queue", filters)
                bearer = {"Authorization": f"Bearer {token}"}
                api = timed(client, "/v1/matches", {**filters, "limit": "25"}, bearer)
            print(f"queue_page_p95_ms={p95(page):.1f}")
            print(f"queue_api_p95_ms={p95(api):.1f}")
            print(f"queue_page_vs_api={statistics.mean(api) / statistics.mean(page):.2f}")
        finally:
            stop_processes([proc])
            stop_all([store], grace_s=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
