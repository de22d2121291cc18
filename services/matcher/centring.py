"""Language centring as a versioned snapshot shared by every worker.

Scores must be a pure function of (need revision, offer revision, rules version, centring version),
so the per-language means are not running sums kept by each worker: they are a snapshot, built with
`LanguageCentroids.from_vectors` over the open items when someone asks for it, stored in the
matcher's MongoDB under a content-derived version, and read by every worker. Until a snapshot is
built, the shipped priors alone are in force (version `priors-…`).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from services.matcher.scoring import LanguageCentroids
from services.matcher.scoring.model import language_tag

UNSEEN = "\x00unseen"  # the centroid a language with no items and no prior gets
META_ID = "centring"


class FrozenCentroids(LanguageCentroids):
    """Fixed per-language centroids: what a snapshot scores with, whatever arrives meanwhile."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        fallback = table[UNSEEN]
        super().__init__(dimensions=int(fallback.shape[0]), priors={})
        self.table = table

    def centroid(self, language: str | None) -> np.ndarray:
        return self.table.get((language_tag(language) if language else None) or "und", self.table[UNSEEN])

    def add(self, language: str | None, vector: np.ndarray, topics: Sequence[str] = ()) -> None:
        raise TypeError("a centring snapshot is frozen; build a new one")

    def remove(self, language: str | None, vector: np.ndarray) -> None:
        raise TypeError("a centring snapshot is frozen; build a new one")


@dataclass(frozen=True)
class CentringSnapshot:
    version: str
    centroids: FrozenCentroids
    items: int


def serialise(table: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k.replace("\x00", "__"): np.asarray(v, dtype=np.float64) for k, v in sorted(table.items())})
    return buf.getvalue()


def deserialise(raw: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(raw)) as z:
        return {k.replace("__", "\x00") if k.startswith("__") else k: z[k] for k in z.files}


def build(vectors: np.ndarray, languages: Iterable[str | None], prior_weight: float,
          topics: Iterable[Sequence[str]] | None = None, topic_cap: float = 0.0) -> CentringSnapshot:
    """A snapshot of the corpus (rows of `vectors`), with the scoring package's estimator; `topics`
    (each item's sectors) and `topic_cap` (rules `semantic.sector_cap`) bound any one sector's pull."""
    langs = list(languages)
    estimator = LanguageCentroids.from_vectors(vectors, langs, prior_weight=prior_weight, topics=topics, topic_cap=topic_cap)
    seen = {(language_tag(lang) if lang else None) or "und" for lang in langs} | set(estimator.priors)
    table = {lang: estimator.centroid(lang) for lang in seen}
    table[UNSEEN] = estimator.centroid(UNSEEN)
    return snapshot_of(table, len(langs))


def snapshot_of(table: dict[str, np.ndarray], items: int) -> CentringSnapshot:
    version = ("priors-" if items == 0 else "c-") + hashlib.sha256(serialise(table)).hexdigest()[:12]
    return CentringSnapshot(version, FrozenCentroids(table), items)


def priors_only(prior_weight: float, dims: int = 384) -> CentringSnapshot:
    return build(np.zeros((0, dims), dtype=np.float32), [], prior_weight)


async def load(meta: Any) -> CentringSnapshot | None:
    doc = await meta.find_one({"_id": META_ID})
    if doc is None:
        return None
    return CentringSnapshot(doc["version"], FrozenCentroids(deserialise(doc["table"])), int(doc.get("items", 0)))


async def save(meta: Any, snap: CentringSnapshot) -> None:
    await meta.update_one(
        {"_id": META_ID},
        {"$set": {"version": snap.version, "table": serialise(snap.centroids.table), "items": snap.items, "built_at": datetime.now(UTC)}},
        upsert=True,
    )
