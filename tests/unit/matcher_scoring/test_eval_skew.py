"""make eval's skew stand-in: with `keep` < 1 the 1,000 items are less alike, keep their language
and pull the same way (less far, as distinct texts on one topic would)."""

from __future__ import annotations

import numpy as np

from services.matcher.evaluate import SKEW_DISTINCT_KEEP, skew_items


def _pairwise(x: np.ndarray, centre: np.ndarray) -> float:
    u = x - centre
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    s = u @ u.T
    return float((s.sum() - len(u)) / (len(u) * (len(u) - 1)))


def test_distinct_items_are_less_alike_keep_their_language_and_pull_the_same_way() -> None:
    rng = np.random.default_rng(0)
    language = rng.normal(size=384)
    language *= 0.9 / np.linalg.norm(language)
    topic = rng.normal(size=384) * 0.3 / np.sqrt(384)
    texts = language + topic + rng.normal(size=(40, 384)) * 0.25 / np.sqrt(384)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    alike = skew_items(texts, 1000, seed=1)
    distinct = skew_items(texts, 1000, seed=1, keep=SKEW_DISTINCT_KEEP, language_mean=language)
    assert len(distinct) == 1000 and np.allclose(np.linalg.norm(distinct, axis=1), 1.0, atol=1e-5)
    assert _pairwise(distinct, language) < 0.5 * _pairwise(alike, language)
    along = language / np.linalg.norm(language)
    assert abs(float((distinct @ along).mean() - (alike @ along).mean())) < 0.02  # the language part is kept
    pull_alike, pull_distinct = alike.mean(0) - language, distinct.mean(0) - language
    cos = pull_alike @ pull_distinct / (np.linalg.norm(pull_alike) * np.linalg.norm(pull_distinct))
    assert cos > 0.9
