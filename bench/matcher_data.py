"""Synthetic catalogues for the matcher benchmarks: realistic texts, codes and e5 vectors at any size.

Each item copies a demo-catalogue need or offer (its title, description, sectors, modalities, SDGs,
languages, country: codes agree with the text as in real data) and gets the demo item's real e5
vector, mixed with another demo vector and noise, so the corpus is a continuum of topics in seven
languages rather than copies of 142 points. Vectors of demo texts missing from the committed cache
are embedded once (and timed: the embedder's own rate is what `burst_vs_embedding` compares with).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.matcher.scoring import Embedder, MatchItem, item_text
from ssmatch.stack.demo import demo_data

CACHE = Path(__file__).resolve().parents[1] / "services" / "matcher" / "eval_data" / "vectors.npz"
EXTRA = Path(tempfile.gettempdir()) / "ssmatch-bench-demo-vectors.npz"  # the demo texts the committed cache lacks


def demo_items() -> tuple[list[dict[str, Any]], np.ndarray, float]:
    """Demo needs and offers with their e5 vectors, and the seconds spent embedding the missing ones
    (0 once they are cached beside the temporary files)."""
    data = demo_data()
    raws = [{**r, "kind": k} for k in ("need", "offer") for r in data[f"{k}s"]]
    texts = [item_text(MatchItem.model_validate({**r, "id": r["key"], "organization_id": "x"})) for r in raws]
    cache: dict[str, np.ndarray] = {}
    for path in (CACHE, EXTRA):
        if path.exists():
            with np.load(path) as z:
                cache.update({k: z[k] for k in z.files})
    keys = [hashlib.sha256(("passage:" + t).encode()).hexdigest()[:24] for t in texts]
    todo = [i for i, k in enumerate(keys) if k not in cache]
    spent = 0.0
    if todo:
        t0 = time.perf_counter()
        for i, v in zip(todo, Embedder().embed([texts[i] for i in todo]), strict=True):
            cache[keys[i]] = np.asarray(v, dtype=np.float32)
        spent = time.perf_counter() - t0
        np.savez(EXTRA, **{keys[i]: cache[keys[i]] for i in todo})
    return raws, np.stack([cache[k] for k in keys]).astype(np.float32), spent


def synthesise(n: int, raws: list[dict[str, Any]], vectors: np.ndarray, seed: int = 7, start: int = 0) -> list[dict[str, Any]]:
    """`n` open items (alternately needs and offers) as the matcher's index holds them."""
    rng = np.random.default_rng(seed + start)
    by_kind = {k: [i for i, r in enumerate(raws) if r["kind"] == k] for k in ("need", "offer")}
    now = datetime.now(UTC)
    out = []
    for j in range(start, start + n):
        kind = "need" if j % 2 == 0 else "offer"
        base = by_kind[kind][int(rng.integers(len(by_kind[kind])))]
        mate = int(rng.integers(len(raws)))
        a = float(rng.uniform(0.7, 1.0))
        v = a * vectors[base] + (1 - a) * vectors[mate] + rng.normal(size=vectors.shape[1]).astype(np.float32) * (0.03 / np.sqrt(vectors.shape[1]) * 10)
        raw = raws[base]
        out.append({
            "_id": f"{kind[0]}{j}", "kind": kind, "organization_id": f"org{j % 5000}", "revision": 1, "status": "open",
            "title": f"{raw['title']} ({j})", "description": raw.get("description", ""), "keywords": raw.get("keywords", []),
            "text_language": raw.get("text_language"), "languages": raw.get("languages", ["en"]), "country": raw["country"],
            "sectors": raw.get("sectors", []), "modalities": raw.get("modalities", []), "sdgs": raw.get("sdgs", []),
            "delivery_countries": raw.get("delivery_countries", []), "delivery_regions": raw.get("delivery_regions", []),
            "accepts_interpretation": raw.get("accepts_interpretation", False), "triangular_partners": raw.get("triangular_partners", []),
            "created_at": now, "updated_at": now,
            "embedding": (v / np.linalg.norm(v)).astype(np.float32),
        })
    return out
