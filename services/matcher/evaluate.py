"""`make eval`: rank every offer for every need with the product's own scoring and rules, beside
three baselines computed in the same run on the same texts (BM25, rapidfuzz, e5 alone).

Prints `<system>.<metric>=<value>` lines, then per-language slices `<system>.<lang>.<metric>=`
(by the need's text language). Needs no running server. Set SSMATCH_EMBED_CACHE=<file.npz> to
reuse embeddings between runs (keyed by text hash); without it every text is embedded afresh.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from rank_bm25 import BM25Okapi
from rapidfuzz import fuzz, utils

from services.matcher.scoring import Embedder, LanguageCentroids, MatchItem, Rules, item_text, load_rules, prepare, score_prepared

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SET = REPO.parent / "shared" / "eval" / "dev-set.json"
METRICS = ("precision@1", "recall@5", "mrr", "ndcg@10")


def load_set(path: Path) -> tuple[list[MatchItem], list[MatchItem], dict[tuple[str, str], int]]:
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    needs = [MatchItem.from_eval(n, "need") for n in data["needs"]]
    offers = [MatchItem.from_eval(o, "offer") for o in data["offers"]]
    grades = {(j["need_id"], j["offer_id"]): int(j["grade"]) for j in data["judgements"]}
    return needs, offers, grades


def embed_all(texts: list[str], embedder: Embedder) -> np.ndarray:
    cache_path = os.environ.get("SSMATCH_EMBED_CACHE")
    keys = [hashlib.sha256(("passage:" + t).encode()).hexdigest()[:24] for t in texts]
    cache: dict[str, np.ndarray] = {}
    if cache_path and Path(cache_path).exists():
        with np.load(cache_path) as z:
            cache = {k: z[k] for k in z.files}
    todo = [i for i, k in enumerate(keys) if k not in cache]
    if todo:
        vectors = embedder.embed([texts[i] for i in todo])
        for i, v in zip(todo, vectors, strict=True):
            cache[keys[i]] = v
        if cache_path:
            np.savez(cache_path, **cache)
    return np.stack([cache[k] for k in keys])


def metrics_for(ranking: list[str], need_id: str, grades: dict[tuple[str, str], int]) -> dict[str, float]:
    good = {o for (n, o), g in grades.items() if n == need_id and g == 2}
    gains = [grades.get((need_id, o), 0) for o in ranking]
    first = next((r for r, o in enumerate(ranking, 1) if o in good), None)
    dcg = sum(g / math.log2(r + 1) for r, g in enumerate(gains[:10], 1))
    ideal = sorted((g for (n, _), g in grades.items() if n == need_id), reverse=True)[:10]
    idcg = sum(g / math.log2(r + 1) for r, g in enumerate(ideal, 1))
    return {
        "precision@1": 1.0 if ranking and ranking[0] in good else 0.0,
        "recall@5": len(good & set(ranking[:5])) / len(good),
        "mrr": 1.0 / first if first else 0.0,
        "ndcg@10": dcg / idcg if idcg else 0.0,
    }


def rank(scores: np.ndarray, offers: list[MatchItem]) -> list[str]:
    order = sorted(range(len(offers)), key=lambda j: (-float(scores[j]), offers[j].id))
    return [offers[j].id for j in order]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def system_scores(needs: list[MatchItem], offers: list[MatchItem], vectors: dict[str, np.ndarray], rules: Rules, ablate: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    texts_n = [item_text(n) for n in needs]
    texts_o = [item_text(o) for o in offers]
    bm25 = BM25Okapi([_words(t) for t in texts_o])
    on = np.stack([vectors[o.id] for o in offers])
    if ablate:
        weights = rules.weights.model_dump()
        weights[ablate] = 0.0
        rules = rules.model_copy(update={"weights": type(rules.weights)(**weights)})
    corpus = needs + offers  # the stored corpus the matcher would hold: centroids come from it
    centroids = LanguageCentroids.from_vectors(np.stack([vectors[i.id] for i in corpus]), [i.text_language for i in corpus],
                                               prior_weight=rules.semantic.language_prior_weight)
    prepared_offers = [prepare(o.model_copy(update={"embedding": vectors[o.id].tolist()}), rules) for o in offers]
    out: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for n, tn in zip(needs, texts_n, strict=True):
        pn = prepare(n.model_copy(update={"embedding": vectors[n.id].tolist()}), rules)
        batch = score_prepared([pn] * len(offers), prepared_offers, rules, centroids)
        out["ssmatch"][n.id] = np.where(batch.excluded, -1.0, batch.total)
        out["bm25"][n.id] = bm25.get_scores(_words(tn))
        out["rapidfuzz"][n.id] = np.array([fuzz.token_set_ratio(tn, to, processor=utils.default_process) for to in texts_o])
        out["e5"][n.id] = on @ vectors[n.id]
    return out


def evaluate(needs: list[MatchItem], offers: list[MatchItem], grades: dict[tuple[str, str], int], scores: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, dict[str, float]]]:
    """{system: {slice: {metric: value}}} over needs with at least one grade-2 offer."""
    judged = [n for n in needs if any(g == 2 for (nid, _), g in grades.items() if nid == n.id)]
    result: dict[str, dict[str, dict[str, float]]] = {}
    for system, per_need in scores.items():
        slices: dict[str, list[dict[str, float]]] = defaultdict(list)
        for n in judged:
            m = metrics_for(rank(per_need[n.id], offers), n.id, grades)
            slices["all"].append(m)
            slices[n.text_language or "unknown"].append(m)
        result[system] = {s: {k: sum(m[k] for m in ms) / len(ms) for k in METRICS} for s, ms in slices.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", default=str(DEFAULT_SET), help="evaluation set (JSON, ../shared/eval/README.md format)")
    parser.add_argument("--rules", default=None, help="rules file (default: the matcher's own)")
    parser.add_argument("--ablation", action="store_true", help="also print figures without each component")
    args = parser.parse_args(argv)
    path = Path(args.set)
    if not path.exists():
        print(f"eval: no evaluation set at {path}", file=sys.stderr)
        return 2
    rules = load_rules(args.rules)
    needs, offers, grades = load_set(path)
    started = time.perf_counter()
    items = needs + offers
    vecs = embed_all([item_text(i) for i in items], Embedder())
    vectors = {i.id: v for i, v in zip(items, vecs, strict=True)}
    result = evaluate(needs, offers, grades, system_scores(needs, offers, vectors, rules))
    for system in ("ssmatch", "bm25", "rapidfuzz", "e5"):
        for metric in METRICS:
            print(f"{system}.{metric}={result[system]['all'][metric]:.4f}")
    languages = sorted(k for k in result["ssmatch"] if k != "all")
    for system in ("ssmatch", "bm25", "rapidfuzz", "e5"):
        for lang in languages:
            for metric in METRICS:
                print(f"{system}.{lang}.{metric}={result[system][lang][metric]:.4f}")
    if args.ablation:
        for component in rules.weights.model_dump():
            ablated = evaluate(needs, offers, grades, {"ssmatch": system_scores(needs, offers, vectors, rules, ablate=component)["ssmatch"]})
            for metric in METRICS:
                print(f"ablation.without_{component}.{metric}={ablated['ssmatch']['all'][metric]:.4f}")
    print(f"eval.rules_version={rules.version}")
    print(f"eval.needs={len(needs)} eval.offers={len(offers)} eval.seconds={time.perf_counter() - started:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
