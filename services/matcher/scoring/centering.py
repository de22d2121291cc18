"""Language centring of multilingual embeddings.

multilingual-e5 vectors carry a language-identity component: two unrelated texts in the same
language are closer (cosine ~0.86) than a good match across languages (~0.82). Subtracting each
language's mean vector over the corpus being matched and renormalising removes that component, so
the cosine measures topic, not language. Means are shrunk toward a prior (the corpus-wide mean) with
a pseudo-count, so a language with one or two items is not centred onto itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

UNKNOWN = "und"
ALL = "_all"
PRIORS_FILE = Path(__file__).resolve().parent.parent / "rules" / "language_centroids.npz"


@lru_cache(maxsize=1)
def default_priors() -> dict[str, np.ndarray]:
    """Per-language means of the demo catalogue (built by `python -m services.matcher.scoring.build_priors`)."""
    if not PRIORS_FILE.exists():
        return {}
    with np.load(PRIORS_FILE) as z:
        return {k: z[k].astype(np.float64) for k in z.files}


class LanguageCentroids:
    def __init__(self, dimensions: int = 384, prior_weight: float = 5.0, priors: dict[str, np.ndarray] | None = None) -> None:
        self.dimensions = dimensions
        self.prior_weight = prior_weight
        self.priors = default_priors() if priors is None else priors
        self._sums: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, languages: Iterable[str | None], prior_weight: float = 5.0,
                     priors: dict[str, np.ndarray] | None = None) -> LanguageCentroids:
        out = cls(vectors.shape[1] if vectors.ndim == 2 and vectors.size else 384, prior_weight, priors)
        for vec, lang in zip(vectors, languages, strict=True):
            out.add(lang, vec)
        return out

    def add(self, language: str | None, vector: np.ndarray) -> None:
        lang = language or UNKNOWN
        if lang not in self._sums:
            self._sums[lang] = np.zeros(self.dimensions, dtype=np.float64)
            self._counts[lang] = 0
        self._sums[lang] += vector
        self._counts[lang] += 1

    def remove(self, language: str | None, vector: np.ndarray) -> None:
        lang = language or UNKNOWN
        if self._counts.get(lang, 0) > 0:
            self._sums[lang] -= vector
            self._counts[lang] -= 1

    @property
    def size(self) -> int:
        return sum(self._counts.values())

    def global_mean(self) -> np.ndarray:
        total = self.size
        if total == 0:
            return np.zeros(self.dimensions, dtype=np.float64)
        return sum(self._sums.values()) / total  # type: ignore[no-any-return]

    def centroid(self, language: str | None) -> np.ndarray:
        lang = language or UNKNOWN
        if lang in self.priors:
            prior = self.priors[lang]
        elif self.size:
            prior = self.global_mean()
        else:
            prior = self.priors.get(ALL, np.zeros(self.dimensions))
        n = self._counts.get(lang, 0)
        s = self._sums.get(lang, np.zeros(self.dimensions))
        return (s + self.prior_weight * prior) / (n + self.prior_weight)

    def center(self, vectors: np.ndarray, languages: list[str | None]) -> np.ndarray:
        """Centred, unit-length copies of `vectors` (rows), each by its own language's centroid."""
        if vectors.size == 0:
            return vectors.astype(np.float32)
        cache: dict[str | None, np.ndarray] = {}
        means = np.stack([cache.setdefault(lang, self.centroid(lang)) if lang not in cache else cache[lang] for lang in languages])
        out = vectors.astype(np.float64) - means
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)
