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
their health signal). The `matched` estimate is robust to that: each item is compared with its
nearest items in *other* languages (found after centring with the priors), and what remains,
item minus the language-free topic of its cross-lingual neighbours, is averaged. A dominant topic
then contributes its language offset, like any other topic, instead of itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from services.matcher.scoring.model import language_tag

UNKNOWN = "und"
ALL = "_all"
PRIORS_FILE = Path(__file__).resolve().parent.parent / "rules" / "language_centroids.npz"
Method = Literal["mean", "matched"]


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
    """Per-language centroids of a corpus. `method="matched"` (default) is robust to a language's
    items being about one topic; `"mean"` is the plain shrunk mean (kept for ablation)."""

    def __init__(self, dimensions: int = 384, prior_weight: float = 5.0, priors: dict[str, np.ndarray] | None = None,
                 method: Method = "mean", neighbours: int = 3) -> None:
        self.dimensions = dimensions
        self.prior_weight = prior_weight
        self.priors = default_priors() if priors is None else priors
        self.method: Method = method
        self.neighbours = neighbours
        self._sums: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        self._rows: dict[str, list[np.ndarray]] = {}
        self._fitted: dict[str, np.ndarray] | None = None  # matched centroids, refitted after a change

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, languages: Iterable[str | None], prior_weight: float = 5.0,
                     priors: dict[str, np.ndarray] | None = None, method: Method = "mean", neighbours: int = 3) -> LanguageCentroids:
        out = cls(vectors.shape[1] if vectors.ndim == 2 and vectors.size else 384, prior_weight, priors, method, neighbours)
        for vec, lang in zip(vectors, languages, strict=True):
            out.add(lang, vec)
        return out

    def add(self, language: str | None, vector: np.ndarray) -> None:
        lang = _lang(language)
        if lang not in self._sums:
            self._sums[lang] = np.zeros(self.dimensions, dtype=np.float64)
            self._counts[lang] = 0
            self._rows[lang] = []
        vec = np.asarray(vector, dtype=np.float64)
        self._sums[lang] += vec
        self._counts[lang] += 1
        self._rows[lang].append(vec)
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
                    break
            self._fitted = None

    @property
    def size(self) -> int:
        return sum(self._counts.values())

    def global_mean(self) -> np.ndarray:
        total = self.size
        if total == 0:
            return np.zeros(self.dimensions, dtype=np.float64)
        return sum(self._sums.values()) / total  # type: ignore[no-any-return]

    def _prior(self, lang: str) -> np.ndarray:
        if lang in self.priors:
            return self.priors[lang]
        if self.size:
            return self.global_mean()
        return self.priors.get(ALL, np.zeros(self.dimensions))

    def _mean_centroid(self, lang: str) -> np.ndarray:
        n = self._counts.get(lang, 0)
        s = self._sums.get(lang, np.zeros(self.dimensions))
        return (s + self.prior_weight * self._prior(lang)) / (n + self.prior_weight)  # type: ignore[no-any-return]

    def centroid(self, language: str | None) -> np.ndarray:
        lang = _lang(language)
        if self.method == "matched":
            fitted = self._fit()
            if lang in fitted:
                return fitted[lang]
        return self._mean_centroid(lang)

    def _fit(self) -> dict[str, np.ndarray]:
        """Matched centroids of every language with items: shrunk mean of item - topic(item), where
        topic(item) is the mean of its `neighbours` most similar items in other languages, each
        centred by its own language's first-pass centroid (the prior alone: it holds no corpus topic)."""
        if self._fitted is not None:
            return self._fitted
        langs = [lang for lang, rows in self._rows.items() if rows]
        fitted: dict[str, np.ndarray] = {}
        if len(langs) < 2 or self.neighbours < 1:
            self._fitted = {lang: self._mean_centroid(lang) for lang in langs}
            return self._fitted
        first = {lang: (self._prior(lang) if lang in self.priors else self._mean_centroid(lang)) for lang in langs}
        X = np.vstack([np.stack(self._rows[lang]) for lang in langs])
        owner = np.concatenate([np.full(len(self._rows[lang]), k) for k, lang in enumerate(langs)])
        mu = np.stack([first[lang] for lang in langs])
        centred = X - mu[owner]
        unit = _unit(centred).astype(np.float32)
        for idx, lang in enumerate(langs):
            rows, others = np.flatnonzero(owner == idx), np.flatnonzero(owner != idx)
            k = min(self.neighbours, len(others))
            if k < 1:
                fitted[lang] = self._mean_centroid(lang)
                continue
            residual_sum = np.zeros(self.dimensions, dtype=np.float64)
            for start in range(0, len(rows), 1024):  # bounded memory on a large corpus
                chunk = rows[start : start + 1024]
                sims = unit[chunk] @ unit[others].T
                near = others[np.argpartition(-sims, k - 1, axis=1)[:, :k]]
                residual_sum += (X[chunk] - centred[near].mean(axis=1)).sum(axis=0)
            fitted[lang] = (residual_sum + self.prior_weight * self._prior(lang)) / (len(rows) + self.prior_weight)
        self._fitted = fitted
        return fitted

    def center(self, vectors: np.ndarray, languages: list[str | None]) -> np.ndarray:
        """Centred, unit-length copies of `vectors` (rows), each by its own language's centroid."""
        if vectors.size == 0:
            return vectors.astype(np.float32)
        cache: dict[str | None, np.ndarray] = {}
        means = np.stack([cache.setdefault(lang, self.centroid(lang)) if lang not in cache else cache[lang] for lang in languages])
        out = vectors.astype(np.float64) - means
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)
