"""The matcher on the running stack (issue 9): a burst against the embedder alone, post-to-proposal
latency, and scale-out — each figure on its own `name=value` line.

    python bench/bench_matcher_stack.py

Starts `python -m ssmatch.stack` (what `make run` runs: embedded broker and store, catalog, matcher,
notify; no demo data) and drives it through the catalog's HTTP API only:
- **burst**: BURST new needs and offers (the demo catalogue's texts, twice with a varied last
  sentence) posted by CLIENTS concurrent clients; the time until every one that gets a proposal has it
  (`burst_s`), over the time the embedder alone takes for the same texts in this process
  (`embed_alone_s`): `burst_vs_embedding` (target ≤ 2). Items without any proposal once the matcher
  has settled everything are counted (`burst_items_without_proposals`).
- **post_to_proposal**: after the burst, RATE posts a second for STEADY_S seconds; each timed from the
  POST until its first proposal is visible to its author (`post_to_proposal_p50_ms`, `_p99_ms`).
- **scale-out**: the burst again on a fresh stack with SSMATCH_MATCHER_WORKERS=2; `scaleout_2_vs_1` is
  items/s with two workers over one.
The store holds only what the bench posts (a few hundred items), not 100,000: every posted text is
embedded once by the matcher (~8 texts/s here), which is what these figures are about; the per-event
cost at 100,000 items is `bench_matcher_scale.py`'s.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from services.matcher.scoring import Embedder, MatchItem, item_text  # noqa: E402
from ssmatch.stack.demo import demo_data  # noqa: E402
from tests.integration.ops.stackrun import ADMIN, Launcher, launcher_env, make_org  # noqa: E402  (the launcher as a user runs it)

BURST = int(os.environ.get("BENCH_MATCHER_BURST", "300"))
CLIENTS = 20
RATE = 2.0
POLL_S = 0.2  # an author's page polls this often for the first POLL_FAST_S seconds, then every POLL_SLOW_S
POLL_FAST_S = 2.0
POLL_SLOW_S = 0.5
STEADY_S = float(os.environ.get("BENCH_MATCHER_STEADY_S", "60"))
ORGS_PER_SIDE = 8
VARIANTS = ["", " A second phase is planned with the same partners.", " Results will be shared with neighbouring countries."]


def items(n: int) -> list[tuple[str, dict[str, Any]]]:
    """(kind, body) for n posts from the demo catalogue, alternating needs and offers."""
    data = demo_data()
    fields = ("title", "description", "keywords", "sdgs", "sectors", "modalities", "languages", "text_language", "country")
    out: list[tuple[str, dict[str, Any]]] = []
    for variant in VARIANTS * (1 + n // (len(data["needs"]) + len(data["offers"]))):
        for need, offer in zip(data["needs"], data["offers"], strict=False):
            for kind, raw in (("need", need), ("offer", offer)):
                body = {k: raw[k] for k in fields if raw.get(k) is not None}
                body["description"] = body.get("description", "") + variant
                out.append((kind, body))
                if len(out) == n:
                    return out
    return out


def make_orgs(catalog_url: str) -> dict[str, list[str]]:
    """ORGS_PER_SIDE country offices (needs) and solution providers (offers): their tokens."""
    tokens: dict[str, list[str]] = {"need": [], "offer": []}
    for kind, type_, country in (("need", "country_office", "KEN"), ("offer", "solution_provider", "BRA")):
        tokens[kind] = [make_org(catalog_url, f"Bench {type_} {i}", type_, country)[1] for i in range(ORGS_PER_SIDE)]
    return tokens


async def proposed_items(client: httpx.AsyncClient) -> set[str]:
    """Ids of every need and offer with at least one proposal, from the broker queue."""
    seen: set[str] = set()
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"status": "proposed", "limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/matches", params=params, headers={"Authorization": f"Bearer {ADMIN}"})).json()
        for m in page["items"]:
            seen.update((m["need_id"], m["offer_id"]))
        cursor = page.get("next_cursor")
        if not cursor:
            return seen


async def post(client: httpx.AsyncClient, kind: str, body: dict[str, Any], token: str) -> str:
    for _ in range(20):
        res = await client.post(f"/v1/{kind}s", json=body, headers={"Authorization": f"Bearer {token}"})
        if res.status_code == 201:
            return str(res.json()["id"])
        await asyncio.sleep(0.5)
    raise RuntimeError(f"post failed: {res.status_code} {res.text[:300]}")


async def burst(url: str, posts: list[tuple[str, dict[str, Any]]]) -> tuple[float, int, dict[str, list[str]], httpx.AsyncClient]:
    client = httpx.AsyncClient(base_url=url, timeout=60)
    tokens = make_orgs(url)
    queue = list(enumerate(posts))
    ids: list[str] = []

    async def worker() -> None:
        while queue:
            i, (kind, body) = queue.pop()
            ids.append(await post(client, kind, body, tokens[kind][i % ORGS_PER_SIDE]))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    posted_s = time.perf_counter() - t0
    print(f"burst_posted_s={posted_s:.1f}  # {len(ids)} posts by {CLIENTS} clients", flush=True)
    wanted = set(ids)
    last_growth = time.perf_counter()
    have: set[str] = set()
    done_at = t0
    while time.perf_counter() - last_growth < 60:  # a bound, not a result: the last first-proposal time is kept
        now_have = await proposed_items(client) & wanted
        if len(now_have) > len(have):
            have, done_at, last_growth = now_have, time.perf_counter(), time.perf_counter()
        if have == wanted:
            break
        await asyncio.sleep(2.0)  # reading the whole queue (a dozen pages) is itself work for the stack
    return done_at - t0, len(wanted - have), tokens, client


async def steady(client: httpx.AsyncClient, tokens: dict[str, list[str]], posts: list[tuple[str, dict[str, Any]]]) -> tuple[list[float], int]:
    """RATE posts a second; each author then polls their own item's matches
    (`GET /v1/{kind}s/{id}/matches`) every POLL_S for POLL_FAST_S seconds, then every POLL_SLOW_S (as
    a page would, and so that a backlog is not made worse by the bench's own polling), until the first
    proposal is visible, up to a bound: the latency is from the POST to the first answer that lists one."""
    latencies: list[float] = []

    async def one(i: int, kind: str, body: dict[str, Any]) -> None:
        token = tokens[kind][i % ORGS_PER_SIDE]
        t0 = time.perf_counter()
        item_id = await post(client, kind, body, token)
        while time.perf_counter() - t0 < 60:  # a bound: an item with no proposal stays unseen
            res = await client.get(f"/v1/{kind}s/{item_id}/matches", headers={"Authorization": f"Bearer {token}"})
            if res.status_code == 200 and any(m.get("status") == "proposed" for m in res.json()["items"]):
                latencies.append((time.perf_counter() - t0) * 1000)
                return
            await asyncio.sleep(POLL_S if time.perf_counter() - t0 < POLL_FAST_S else POLL_SLOW_S)

    tasks = []
    for i, (kind, body) in enumerate(posts):
        tasks.append(asyncio.create_task(one(i, kind, body)))
        await asyncio.sleep(1 / RATE)
    await asyncio.gather(*tasks)
    return latencies, len(posts)


def stages(matcher_url: str) -> None:
    """The matcher's per-stage time (from its /metrics), so a reader can see where the time went."""
    sums: dict[str, list[float]] = {}
    for line in httpx.get(f"{matcher_url}/metrics", timeout=10).text.splitlines():
        for suffix, slot in (("_sum", 0), ("_count", 1)):
            if line.startswith(f"ssmatch_matcher_stage_seconds{suffix}{{"):
                stage = line.split('stage="', 1)[1].split('"', 1)[0]
                sums.setdefault(stage, [0.0, 0.0])[slot] = float(line.rsplit(" ", 1)[1])
    print("# matcher stages: " + ", ".join(f"{k} {n:.0f}× {1000 * t / max(n, 1):.0f} ms" for k, (t, n) in sums.items()), flush=True)


def run(workers: int, posts: list[tuple[str, dict[str, Any]]], steady_posts: list[tuple[str, dict[str, Any]]] | None) -> float:
    stack = Launcher(launcher_env(Path(tempfile.mkdtemp(prefix="bench-matcher-stack-")), SSMATCH_MATCHER_WORKERS=str(workers)))
    try:
        stack.wait_for("Press Ctrl-C to stop.", timeout=300)

        async def go() -> float:
            seconds, missing, tokens, client = await burst(stack.url("catalog"), posts)
            print(f"burst_s_{workers}w={seconds:.1f}", flush=True)
            print(f"burst_items_without_proposals_{workers}w={missing}", flush=True)
            if steady_posts:
                lat, n = await steady(client, tokens, steady_posts)
                lat.sort()
                if lat:
                    print(f"post_to_proposal_p50_ms={statistics.median(lat):.0f}")
                    print("# latencies_ms " + " ".join(f"{x:.0f}" for x in lat), flush=True)
                    print(f"post_to_proposal_p99_ms={lat[min(len(lat) - 1, int(0.99 * len(lat)))]:.0f}  # {len(lat)} of {n} posts got a proposal")
            await client.aclose()
            stages(stack.url("matcher"))
            return seconds

        return asyncio.run(go())
    finally:
        stack.stop()


def main() -> None:
    posts = items(BURST + int(RATE * STEADY_S))
    burst_posts, steady_posts = posts[:BURST], posts[BURST:]
    embedder = Embedder()
    embedder.embed(["warm up"])
    texts = [item_text(MatchItem.model_validate({"id": f"x{i}", "kind": kind, "organization_id": "o", **body})) for i, (kind, body) in enumerate(burst_posts)]
    t0 = time.perf_counter()
    for start in range(0, len(texts), 32):
        embedder.embed(texts[start:start + 32])
    embed_s = time.perf_counter() - t0
    print(f"embed_alone_s={embed_s:.1f}  # {len(texts)} texts, {len(texts) / embed_s:.1f} texts/s", flush=True)
    one = run(1, burst_posts, steady_posts)
    print(f"burst_vs_embedding={one / embed_s:.2f}", flush=True)
    if os.environ.get("BENCH_MATCHER_SCALEOUT", "1") == "0":
        return
    two = run(2, burst_posts, None)
    print(f"scaleout_2_vs_1={one / two:.2f}  # items/s with two matcher workers over one", flush=True)


if __name__ == "__main__":
    main()
