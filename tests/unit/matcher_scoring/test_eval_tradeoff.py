"""make eval's parity trade-off: the translations' centred cosines are measured as the scorer sees them."""

from __future__ import annotations

import numpy as np

from services.matcher.evaluate import translation_cosines
from services.matcher.scoring import MatchItem, load_rules


def _item(item_id: str, kind: str, lang: str) -> MatchItem:
    return MatchItem.from_eval({"id": item_id, "title": item_id, "description": "", "keywords": [], "text_language": lang,
                                "languages": ["en", "fr"], "country": "MWI", "sectors": ["energy"], "modalities": [], "sdgs": []},
                               kind)  # type: ignore[arg-type]


def test_a_faithful_translation_scores_its_centred_cosine_and_a_drifting_one_less() -> None:
    rng = np.random.default_rng(3)
    topic = rng.normal(size=384)
    need, same, drift = _item("n", "need", "en"), _item("o-en", "offer", "en"), _item("o-fr", "offer", "fr")
    corpus = [_item(f"c{i}", "offer" if i % 2 else "need", "en" if i < 10 else "fr") for i in range(20)]
    vectors = {c.id: v / np.linalg.norm(v) for c, v in zip(corpus, rng.normal(size=(20, 384)), strict=True)}
    vectors["n"] = vectors["o-en"] = topic / np.linalg.norm(topic)
    mixed = topic + 3.0 * rng.normal(size=384)
    vectors["o-fr"] = mixed / np.linalg.norm(mixed)
    cosines = translation_cosines([(need, [same, drift])], [*corpus, need, same, drift], vectors, load_rules(None))
    assert cosines[0] > 0.99  # the same vector in the same language: centred, still the same direction
    assert cosines[1] < cosines[0] - 0.3
