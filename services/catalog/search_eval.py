"""`make eval`, search part: how well the catalog's search finds the offers a broker judged good.

Each dev-set need's title is a query over all the offers (and, separately, a one-line paraphrase in
another language for 14 of them: `eval_data/search_paraphrases.json`), graded by the dev set's
judgements. Printed: `search.recall@10=` (share of the need's grade-2 offers in the top 10) and
`search.mrr=` (1 / rank of the first grade-2 offer), then the same for BM25 (rank_bm25 over lower-cased
words) and rapidfuzz (token_set_ratio) on the same queries and offers, and the words alone and the
meaning alone (the two halves of the fusion).

The product's own path, offline: the catalog's word index (in memory) and fusion, the matcher's
`search.nearest` over the offers' vectors with the query embedded by the matcher's embedder. This
tool stands outside both services, so it may use both (the running services talk over HTTP).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rank_bm25 import BM25Okapi
from rapidfuzz import fuzz, utils

from services.catalog.adapters.word_index import WordIndex
from services.catalog.domain import search as search_rules
from services.matcher import search as meaning
from services.matcher.evaluate import DEFAULT_SET, _words, embed_all, load_set
from services.matcher.scoring import Embedder, MatchItem, item_text

PARAPHRASES = Path(__file__).resolve().parent / "eval_data" / "search_paraphrases.json"
Ranker = Callable[[str, np.ndarray], list[str]]


def grade_metrics(ranking: list[str], need_id: str, grades: dict[tuple[str, str], int]) -> dict[str, float]:
    good = {o for (n, o), g in grades.items() if n == need_id and g == 2}
    first = next((r for r, o in enumerate(ranking, 1) if o in good), None)
    return {"recall@10": len(good & set(ranking[:10])) / len(good), "mrr": 1.0 / first if first else 0.0}


def rankers(offers: list[MatchItem], vectors: np.ndarray) -> dict[str, Ranker]:
    """Each system: query text (and its vector) → every offer id, best first."""
    ids = [o.id for o in offers]
    index = WordIndex(None)
    index.apply([{"_id": o.id, "kind": "offer", "status": "open", "title": o.title, "description": o.description,
                  "keywords": o.keywords, "revision": 1} for o in offers], None)
    texts = [item_text(o) for o in offers]
    bm25 = BM25Okapi([_words(t) for t in texts])

    def complete(ranked: list[str]) -> list[str]:
        seen = set(ranked)
        return ranked + [i for i in ids if i not in seen]  # what a system does not find ranks last

    def words(q: str) -> list[str]:
        return [h.id for h in index.search("offer", search_rules.analyse_query(q), {}, mode="any", limit=len(ids))]

    def near(v: np.ndarray) -> list[search_rules.MeaningHit]:
        found = meaning.nearest(ids, vectors, v, 100)
        result = search_rules.MeaningResult(tuple(search_rules.MeaningHit(i, s) for i, s in found.hits),
                                            found.corpus_mean, found.corpus_std, found.corpus_size)
        return result.standing_out()

    def by_score(scores: Any) -> list[str]:
        return [ids[j] for j in sorted(range(len(ids)), key=lambda j: (-float(scores[j]), ids[j]))]

    return {
        "search": lambda q, v: complete([f.id for f in search_rules.fuse(words(q), near(v))]),
        "search_words": lambda q, v: complete(words(q)),
        "search_meaning": lambda q, v: complete([h.id for h in near(v)]),
        "search_bm25": lambda q, v: by_score(bm25.get_scores(_words(q))),
        "search_rapidfuzz": lambda q, v: by_score([fuzz.token_set_ratio(q, t, processor=utils.default_process) for t in texts]),
    }


def evaluate(queries: list[tuple[str, str]], systems: dict[str, Ranker], qvecs: np.ndarray, grades: dict[tuple[str, str], int]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, rank in systems.items():
        rows = [grade_metrics(rank(q, v), need_id, grades) for (need_id, q), v in zip(queries, qvecs, strict=True)]
        out[name] = {m: sum(r[m] for r in rows) / len(rows) for m in ("recall@10", "mrr")}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", default=str(DEFAULT_SET))
    args = parser.parse_args(argv)
    path = Path(args.set)
    if not path.exists():
        print(f"eval: no evaluation set at {path}", file=sys.stderr)
        return 2
    needs, offers, grades = load_set(path)
    judged = [n for n in needs if any(g == 2 for (nid, _), g in grades.items() if nid == n.id)]
    embedder = Embedder()
    systems = rankers(offers, embed_all([item_text(o) for o in offers], embedder))
    titles = [(n.id, n.title) for n in judged]
    known = {n.id for n in judged}
    paraphrases = [(p["need_id"], p["q"]) for p in json.loads(PARAPHRASES.read_text(encoding="utf-8"))["queries"] if p["need_id"] in known]
    for label, queries in (("", titles), ("paraphrase.", paraphrases)):
        if not queries:
            continue
        result = evaluate(queries, systems, embed_all([q for _, q in queries], embedder), grades)
        for system, figures in result.items():
            for metric, value in figures.items():
                print(f"{system}.{label}{metric}={value:.4f}")
        print(f"search.{label}queries={len(queries)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
