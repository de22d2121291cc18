"""Cross-lingual matching with the real bundled model: a need in each of seven languages finds
the related English offer ahead of an unrelated one, and language centring removes the bias
toward same-language texts."""

from __future__ import annotations

import numpy as np
import pytest

from services.matcher.scoring import Embedder, LanguageCentroids, MatchItem, item_text, load_rules, score_need_against_offers

RULES = load_rules()
NEEDS = {
    "en": "Solar-powered irrigation pumps for smallholder farmers",
    "fr": "Pompes d'irrigation solaires pour les petits exploitants agricoles",
    "es": "Bombas de riego solares para pequeños agricultores",
    "pt": "Bombas de irrigação solares para pequenos agricultores",
    "ar": "مضخات ري تعمل بالطاقة الشمسية لصغار المزارعين",
    "zh": "为小农户提供太阳能灌溉水泵",
    "ru": "Солнечные насосы для орошения для мелких фермеров",
}
RELATED = "Training on solar water pumps and drip irrigation for small farms"
UNRELATED = "Strengthening HIV testing and antiretroviral treatment in clinics"


@pytest.fixture(scope="module")
def vectors() -> dict[str, list[float]]:
    texts = list(NEEDS.values()) + [RELATED, UNRELATED]
    out = Embedder().embed(texts)
    assert out.shape == (len(texts), 384) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-3)
    return dict(zip([*NEEDS, "related", "unrelated"], out.tolist(), strict=True))


def offer(oid: str, title: str, vec: list[float]) -> MatchItem:
    return MatchItem(id=oid, kind="offer", organization_id="p", title=title, country="IND", languages=["en", "fr", "es", "pt", "ar", "zh", "ru"],
                     sdgs=[2], sectors=["agriculture"], modalities=["capacity_development"], text_language="en", embedding=vec)


@pytest.mark.parametrize("lang", sorted(NEEDS))
def test_need_in_each_language_ranks_the_related_english_offer_first(lang: str, vectors: dict[str, list[float]]) -> None:
    need = MatchItem(id="n", kind="need", organization_id="o", title=NEEDS[lang], country="UGA", languages=[lang, "en"],
                     sdgs=[2], sectors=["agriculture"], modalities=["capacity_development"], text_language=lang, embedding=vectors[lang])
    related, unrelated = score_need_against_offers(need, [offer("a", RELATED, vectors["related"]), offer("b", UNRELATED, vectors["unrelated"])], RULES)
    assert related.components["semantic"] > unrelated.components["semantic"]
    assert related.total > unrelated.total
    if lang != "en":
        assert any(f"across languages ({lang}→en)" in r for r in related.reasons)


def test_centring_removes_the_same_language_bonus() -> None:
    rng = np.random.default_rng(0)
    lang_axis = rng.normal(size=384)
    topics = rng.normal(size=(4, 384))
    raw = np.stack([topics[0] + 3 * lang_axis, topics[1] + 3 * lang_axis, topics[0] - 3 * lang_axis, topics[1] - 3 * lang_axis])
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    langs = ["xx", "xx", "yy", "yy"]
    before = raw @ raw.T
    assert before[0, 1] > before[0, 2]  # same language beats same topic
    centred = LanguageCentroids.from_vectors(raw, langs, prior_weight=0, priors={}).center(raw, langs)
    after = centred @ centred.T
    assert after[0, 2] > after[0, 1]  # same topic beats same language


def test_item_text_joins_title_description_keywords() -> None:
    it = MatchItem(id="x", kind="need", organization_id="o", title="T", description="D", keywords=["k1", "k2"], country="UGA")
    assert item_text(it) == "T. D. k1, k2"
