"""Search by meaning, pure: the open items nearest to a query vector, by cosine.

The matcher already holds every open item's unit-length multilingual vector (`ItemIndex.vectors`),
so one matrix product ranks them all (~10 ms at 100,000 × 384 here). The query's similarity to the
whole corpus (mean, standard deviation) comes back too: e5's cosines are compressed (~0.78–0.91), so
whether a neighbour stands out can only be judged against them, never by a fixed threshold.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.matcher.http_models import SEARCH_FILTER_FIELDS as FILTER_FIELDS  # noqa: F401 - the list filters a search may carry
from ssmatch.http import SEARCH_BUDGET_HEADER


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
    accepts, best first, ties by id order.

    Only the best rows are ordered (a partition, then a sort of that window, widened while the filter
    leaves fewer than `k`): sorting all 100,000 similarities cost ~15 ms a query, the window ~1 ms."""
    if not ids:
        return Nearest([], 0.0, 0.0, 0)
    sims = matrix @ np.asarray(query, dtype=np.float32)
    window = min(len(ids), max(WINDOW, 4 * k))
    checked = 0
    hits: list[tuple[str, float]] = []
    while True:
        order = _best(sims, window)
        for j in order[checked:]:
            if allowed is None or allowed(ids[j]):
                hits.append((ids[j], float(sims[j])))
                if len(hits) == k:
                    break
        if len(hits) == k or window == len(ids):
            break
        checked, window = window, min(len(ids), window * 4)
    return Nearest(hits, float(sims.mean()), float(sims.std()), len(ids))


#: the first window of best rows ordered by `nearest`
WINDOW = 1024


def _best(sims: np.ndarray, window: int) -> np.ndarray:
    """Indices of the `window` largest values, best first, ties by index (as a stable full sort)."""
    if window >= len(sims):
        return np.argsort(-sims, kind="stable")
    top = np.argpartition(-sims, window - 1)[:window]
    cut = sims[top].min()
    top = np.flatnonzero(sims >= cut)  # every row tied with the last one, so that ties break by index alike
    return top[np.lexsort((top, -sims[top]))][:window]


#: the caller's time budget for a search, in ms (optional): past it, the query is not embedded
BUDGET_HEADER = SEARCH_BUDGET_HEADER


class Expired(RuntimeError):
    """The caller's budget ran out while the query waited for the embedder: it no longer waits for the
    answer, and embedding it anyway would only delay the queries behind it (measured at 100k items
    under overload: the backlog of abandoned queries kept the CPU busy after their callers left)."""


def deadline_of(budget_ms: str | None) -> float | None:
    """The monotonic deadline of a request that arrives now with this budget header (None: no budget)."""
    try:
        return time.monotonic() + max(0.0, float(budget_ms)) / 1000 if budget_ms else None
    except ValueError:
        return None


class QueryVectors:
    """The vectors of recent queries: embedding a short query costs ~15 ms (more on a busy machine),
    and people search the same words again (paging, refining filters, a shared link)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], size: int = 2048) -> None:
        self._embed = embed
        self._size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits_total = 0
        self.misses_total = 0

    def __call__(self, q: str, deadline: float | None = None) -> np.ndarray:
        """The query's vector; `Expired` instead of embedding it once `deadline` (monotonic) has passed."""
        with self._lock:
            vector = self._cache.get(q)
            if vector is not None:
                self._cache.move_to_end(q)
                self.hits_total += 1
                return vector
        if deadline is not None and time.monotonic() > deadline:
            raise Expired(q)
        vector = np.asarray(self._embed([q])[0], dtype=np.float32)
        with self._lock:
            self.misses_total += 1
            self._cache[q] = vector
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return vector
