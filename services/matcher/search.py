"""Search by meaning, pure: the open items nearest to a query vector, by cosine.

The matcher already holds every open item's unit-length multilingual vector (`ItemIndex.vectors`),
so one matrix product ranks them all (~10 ms at 100,000 × 384 here). The query's similarity to the
whole corpus (mean, standard deviation) comes back too: e5's cosines are compressed (~0.78–0.91), so
whether a neighbour stands out can only be judged against them, never by a fixed threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.matcher.http_models import SEARCH_FILTER_FIELDS as FILTER_FIELDS  # noqa: F401 - the list filters a search may carry


@dataclass(frozen=True)
class Nearest:
    hits: list[tuple[str, float]]
    corpus_mean: float
    corpus_std: float
    corpus_size: int

    def view(self) -> dict[str, Any]:
        return {"items": [{"id": i, "similarity": round(s, 6)} for i, s in self.hits],
                "corpus": {"mean": round(self.corpus_mean, 6), "std": round(self.corpus_std, 6), "size": self.corpus_size}}


def passes(doc: Mapping[str, Any] | None, filters: Mapping[str, list[Any]]) -> bool:
    """Every filter holds: the item's value (or one of its values) is among the allowed ones."""
    if doc is None:
        return False
    for field, allowed in filters.items():
        value = doc.get(field)
        values = value if isinstance(value, list) else [value]
        if not any(v in allowed for v in values):
            return False
    return True


def nearest(ids: list[str], matrix: np.ndarray, query: np.ndarray, k: int, allowed: Callable[[str], bool] | None = None) -> Nearest:
    """The `k` rows most similar to `query` (cosine: rows and query are unit length) that `allowed`
    accepts, best first, ties by id order."""
    if not ids:
        return Nearest([], 0.0, 0.0, 0)
    sims = matrix @ np.asarray(query, dtype=np.float32)
    order = np.argsort(-sims, kind="stable")
    hits: list[tuple[str, float]] = []
    for j in order:
        if allowed is None or allowed(ids[j]):
            hits.append((ids[j], float(sims[j])))
            if len(hits) == k:
                break
    return Nearest(hits, float(sims.mean()), float(sims.std()), len(ids))
