"""Rebuild rules/language_centroids.npz: per-language mean embeddings of the demo catalogue.

They are the prior toward which each language's corpus mean is shrunk (see centering.py), and what
`score_pair` uses when it scores a pair with no corpus around it. Run after changing the demo data
or the embedding model: `python -m services.matcher.scoring.build_priors`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from services.matcher.scoring.centering import ALL, PRIORS_FILE
from services.matcher.scoring.embedding import Embedder
from services.matcher.scoring.model import MatchItem
from services.matcher.scoring.score import item_text
from ssmatch.stack.demo import demo_data


def main() -> None:
    data = demo_data()
    items = [MatchItem.model_validate({**d, "kind": kind[:-1], "organization_id": d["organization"], "id": d["key"]})
             for kind in ("needs", "offers") for d in data[kind]]
    vectors = Embedder().embed([item_text(i) for i in items])
    groups: dict[str, list[np.ndarray]] = defaultdict(list)
    for item, vec in zip(items, vectors, strict=True):
        groups[item.text_language or "und"].append(vec)
    means = {lang: np.mean(vs, axis=0).astype(np.float32) for lang, vs in groups.items()}
    means[ALL] = vectors.mean(axis=0).astype(np.float32)
    np.savez(PRIORS_FILE, **means)
    print(f"wrote {PRIORS_FILE} for languages {sorted(means)} from {len(items)} demo items")


if __name__ == "__main__":
    main()
