"""Language centring of multilingual embeddings.

multilingual-e5 vectors carry a language-identity component: two unrelated texts in the same
language are closer (cosine ~0.86) than a good match across languages (~0.82). Subtracting each
language's centroid and renormalising removes that component, so the cosine measures topic, not
language. Centroids are shrunk toward a prior (the shipped per-language means of the demo
catalogue, else the corpus mean) with a pseudo-count, so a language with few items is not centred
onto itself.

What a centroid must hold is the language, not the topics a language's items happen to be about.
A plain per-language mean drifts toward whatever topic dominates a language (1,000 Arabic health
offers from one bulk import make "health" part of "Arabic", and Arabic health needs then lose
their health signal). The `density` estimate (default) is a weighted mean where each item weighs
1 / (number of items of its language that say nearly the same thing), measured after a first
centring by the shipped prior: a cluster of near-alike items counts about as much as one item,
whatever its size, while items on distinct topics keep a weight near 1 (so on a varied corpus it
is close to the plain mean). The defaults equal the rules file's; build it as
`LanguageCentroids.from_vectors(vectors, languages, topics=sectors, **rules.semantic.centring_options())`.

Density weights only see items that are alike. 1,000 distinct texts on one topic, by different
authors, are about as unlike one another as any two items of one sector (centred cosine ~0.1), so
they keep a weight near 1 each and still drag the centroid. `topic_cap` (1.4.0) bounds that by what
the items say they are about: within a language, no topic (sector code) weighs more than `topic_cap`
items in all (an item with several sectors counts a share in each), so however many items of one
sector arrive, they pull the centroid as `topic_cap` items would. On a small or varied corpus no
sector reaches the cap and nothing changes; on a large one the centroid becomes a sector-balanced
mean, which is what a language's centroid should be. Items without topics are not capped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from services.matcher.scoring.model import language_tag

UNKNOWN = "und"
ALL = "_all"
PRIORS_FILE = Path(__file__).resolve().parent.parent / "rules" / "language_centroids.npz"
Method = Literal["mean", "density"]
MAX_REFERENCE = 1024


@lru_cache(maxsize=1)
def default_priors() -> dict[str, np.ndarray]:
    """Per-language means of the demo catalogue (built by `python -m services.matcher.scoring.build_priors`)."""
    if not PRIORS_FILE.exists():
        return {}
    with np.load(PRIORS_FILE) as z:
        return {k: z[k].astype(np.float64) for k in z.files}


def _lang(language: str | None) -> str:
    return (language_tag(language) if language else None) or UNKNOWN


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


class LanguageCentroids:
    """Per-language centroids of a corpus. `method="density"` is robust to a language's items being
    about one topic; `"mean"` is the plain shrunk mean."""

    def __init__(self, dimensions: int = 384, prior_weight: float = 2.0, priors: dict[str, np.ndarray] | None = None,
                 method: Method = "density", similar_from: float = 0.25, similar_full: float = 0.5, topic_cap: float = 0.0) -> None:
        self.dimensions = dimensions
        self.prior_weight = prior_weight
        self.priors = default_priors() if priors is None else priors
        self.method: Method = method
        self.similar_from = similar_from
        self.similar_full = max(similar_full, similar_from + 1e-6)
        self.topic_cap = topic_cap  # 0: no cap
        self._sums: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        self._rows: dict[str, list[np.ndarray]] = {}
        self._topics: dict[str, list[tuple[str, ...]]] = {}  # one entry per row: the item's topics
        self._fitted: dict[str, np.ndarray] | None = None  # density centroids, refitted after a change

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, languages: Iterable[str | None], prior_weight: float = 2.0,
                     priors: dict[str, np.ndarray] | None = None, method: Method = "density", similar_from: float = 0.25,
                     similar_full: float = 0.5, topics: Iterable[Sequence[str]] | None = None, topic_cap: float = 0.0) -> LanguageCentroids:
        """Centroids of rows of `vectors` in `languages`; `topics` (e.g. each item's sectors) feed `topic_cap`."""
        out = cls(vectors.shape[1] if vectors.ndim == 2 and vectors.size else 384, prior_weight, priors, method, similar_from, similar_full,
                  topic_cap)
        langs = list(languages)
        for vec, lang, tops in zip(vectors, langs, [()] * len(langs) if topics is None else topics, strict=True):
            out.add(lang, vec, tops)
        return out

    def add(self, language: str | None, vector: np.ndarray, topics: Sequence[str] = ()) -> None:
        lang = _lang(language)
        if lang not in self._sums:
            self._sums[lang] = np.zeros(self.dimensions, dtype=np.float64)
            self._counts[lang] = 0
            self._rows[lang] = []
            self._topics[lang] = []
        vec = np.asarray(vector, dtype=np.float64)
        self._sums[lang] += vec
        self._counts[lang] += 1
        self._rows[lang].append(vec)
        self._topics[lang].append(tuple(dict.fromkeys(topics)))
        self._fitted = None

    def remove(self, language: str | None, vector: np.ndarray) -> None:
        lang = _lang(language)
        if self._counts.get(lang, 0) > 0:
            vec = np.asarray(vector, dtype=np.float64)
            self._sums[lang] -= vec
            self._counts[lang] -= 1
            rows = self._rows[lang]
            for k, row in enumerate(rows):
                if np.allclose(row, vec, atol=1e-6):
                    del rows[k]
                    del self._topics[lang][k]
                    break
            self._fitted = None

    @property
    def size(self) -> int:
        return sum(self._counts.values())

    def global_mean(self) -> np.ndarray:
        total = self.size
        if total == 0:
            return np.zeros(self.dimensions, dtype=np.float64)
        mean: np.ndarray = np.asarray(sum(self._sums.values()), dtype=np.float64) / total
        return mean

    def _prior(self, lang: str) -> np.ndarray:
        if lang in self.priors:
            return self.priors[lang]
        if self.size:
            return self.global_mean()
        return self.priors.get(ALL, np.zeros(self.dimensions))

    def _mean_centroid(self, lang: str) -> np.ndarray:
        n = self._counts.get(lang, 0)
        s = self._sums.get(lang, np.zeros(self.dimensions))
        return (s + self.prior_weight * self._prior(lang)) / (n + self.prior_weight)

    def centroid(self, language: str | None) -> np.ndarray:
        lang = _lang(language)
        if self.method == "density":
            fitted = self._fit()
            if lang in fitted:
                return fitted[lang]
        return self._mean_centroid(lang)

    def _fit(self) -> dict[str, np.ndarray]:
        """Density-weighted centroids of every language with items (see the module docstring)."""
        if self._fitted is not None:
            return self._fitted
        fitted: dict[str, np.ndarray] = {}
        for lang, rows in self._rows.items():
            if not rows:
                continue
            X = np.stack(rows)
            weights = self._density_weights(X, self._prior(lang) if lang in self.priors else self._mean_centroid(lang))
            if self.topic_cap > 0:
                weights = weights * self._topic_factors(weights, self._topics[lang])
            fitted[lang] = (weights @ X + self.prior_weight * self._prior(lang)) / (weights.sum() + self.prior_weight)
        self._fitted = fitted
        return fitted

    def _density_weights(self, X: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Each item weighs 1 / (how many items of its language say the same thing): the sum over
        them of a kernel on their cosine (after a first centring), 0 below `similar_from`, 1 from
        `similar_full` up, linear between; the item itself counts 1. A cluster of m items with
        mean kernel k then weighs about 1/k in all, whatever m is, while items on distinct
        topics keep a weight near 1."""
        unit = _unit(X - first).astype(np.float32)
        lo, hi = self.similar_from, self.similar_full
        # past MAX_REFERENCE items, density is counted against an even sample and scaled up: the
        # cost stays O(n * MAX_REFERENCE) per language however large the corpus grows
        step = -(-len(X) // MAX_REFERENCE)
        reference = unit[::step]
        density = np.zeros(len(X), dtype=np.float64)
        for start in range(0, len(X), 1024):  # bounded memory on a large corpus
            sims = unit[start : start + 1024] @ reference.T
            density[start : start + 1024] = np.clip((sims - lo) / (hi - lo), 0.0, 1.0).sum(axis=1) * step
        return 1.0 / np.maximum(density, 1.0)

    def _topic_factors(self, weights: np.ndarray, topics: list[tuple[str, ...]]) -> np.ndarray:
        """Per item, the factor that keeps every topic's total weight within `topic_cap`: a topic's
        load is the sum of its items' weights, each split evenly over the item's topics; a topic over
        the cap scales by cap / load, and an item by the mean factor of its topics (1 without any)."""
        load: dict[str, float] = {}
        for w, tops in zip(weights, topics, strict=True):
            for t in tops:
                load[t] = load.get(t, 0.0) + float(w) / len(tops)
        scale = {t: min(1.0, self.topic_cap / v) if v > 0 else 1.0 for t, v in load.items()}
        return np.array([sum(scale[t] for t in tops) / len(tops) if tops else 1.0 for tops in topics], dtype=np.float64)

    def center(self, vectors: np.ndarray, languages: list[str | None]) -> np.ndarray:
        """Centred, unit-length copies of `vectors` (rows), each by its own language's centroid."""
        if vectors.size == 0:
            return vectors.astype(np.float32)
        cache: dict[str | None, np.ndarray] = {}
        means = np.stack([cache.setdefault(lang, self.centroid(lang)) if lang not in cache else cache[lang] for lang in languages])
        out = vectors.astype(np.float64) - means
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        centred: np.ndarray = (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        return centred
