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
    texts = [*list(NEEDS.values()), RELATED, UNRELATED]
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


def _topic_corpus(rng: np.random.Generator) -> tuple[np.ndarray, list[str], np.ndarray, dict[str, np.ndarray]]:
    """Two languages (a shared offset each) over 30 varied topics, one dominant topic, and priors:
    each language's mean over 10 other topics (as the shipped priors come from another catalogue)."""
    lang_axis = {"xx": rng.normal(size=384), "yy": rng.normal(size=384)}
    topics = rng.normal(size=(30, 384))
    vecs, langs = [], []
    for lang in ("xx", "yy"):
        for t in topics:
            vecs.append(t + 2 * lang_axis[lang] + 0.3 * rng.normal(size=384))
            langs.append(lang)
    priors = {lang: (rng.normal(size=(10, 384)) + 2 * axis).mean(axis=0) for lang, axis in lang_axis.items()}
    return np.stack(vecs), langs, rng.normal(size=384) + 2 * lang_axis["xx"], priors


def _bulk(dominant: np.ndarray, rng: np.random.Generator, distinct: int, count: int) -> np.ndarray:
    texts = dominant + 0.3 * rng.normal(size=(distinct, 384))
    return texts[np.arange(count) % distinct] + 0.01 * rng.normal(size=(count, 384))


def test_density_centroid_does_not_drift_when_one_topic_floods_a_language() -> None:
    rng = np.random.default_rng(3)
    vecs, langs, dominant, priors = _topic_corpus(rng)
    bulk = _bulk(dominant, rng, distinct=40, count=1000)
    for method, bound in (("density", 0.1), ("mean", None)):
        before = LanguageCentroids.from_vectors(vecs, langs, priors=priors, method=method).centroid("xx")
        after = LanguageCentroids.from_vectors(np.vstack([vecs, bulk]), langs + ["xx"] * len(bulk), priors=priors, method=method).centroid("xx")
        drift = np.linalg.norm(after - before) / np.linalg.norm(dominant - before)
        if bound is None:
            assert drift > 0.9  # the plain mean moves nearly all the way to the dominant topic
        else:
            assert drift < bound


def test_density_weight_of_a_cluster_does_not_depend_on_repeats() -> None:
    """1,000 items repeating 40 texts weigh like the 40 texts alone: what the skew report relies on."""
    rng = np.random.default_rng(4)
    vecs, langs, dominant, priors = _topic_corpus(rng)
    distinct = _bulk(dominant, rng, distinct=40, count=40)
    repeated = distinct[np.arange(1000) % 40] + 0.01 * rng.normal(size=(1000, 384))
    weights = []
    for block in (distinct, repeated):
        c = LanguageCentroids.from_vectors(np.vstack([vecs, block]), langs + ["xx"] * len(block), priors=priors, method="density")
        xx = np.stack(c._rows["xx"])
        weights.append(c._density_weights(xx, priors["xx"])[-len(block):].sum())
    assert abs(weights[0] - weights[1]) < 0.25 * weights[0]


def test_sector_cap_stops_distinct_same_sector_items_dragging_a_centroid() -> None:
    """1,000 distinct texts on one topic (pairwise centred cosine ~0.1: density weights see no
    cluster) drag the density centroid; capping each sector's weight at 8 items stops it, and on the
    varied corpus alone (no sector near the cap) the cap changes nothing."""
    rng = np.random.default_rng(6)
    vecs, langs, dominant, priors = _topic_corpus(rng)
    sectors = [[f"s{k % 10}"] for k in range(30)] * 2
    bulk = dominant + 3 * rng.normal(size=(1000, 384))
    unit = (bulk - priors["xx"]) / np.linalg.norm(bulk - priors["xx"], axis=1, keepdims=True)
    assert (unit[:200] @ unit[:200].T).mean() < 0.2
    everything, all_langs, all_sectors = np.vstack([vecs, bulk]), langs + ["xx"] * 1000, sectors + [["health"]] * 1000
    drifts = {}
    for cap in (0.0, 8.0):
        before = LanguageCentroids.from_vectors(vecs, langs, priors=priors, topics=sectors, topic_cap=cap).centroid("xx")
        after = LanguageCentroids.from_vectors(everything, all_langs, priors=priors, topics=all_sectors, topic_cap=cap).centroid("xx")
        drifts[cap] = np.linalg.norm(after - before) / np.linalg.norm(dominant - before)
    # capped, the import pulls as 8 of the language's 38 items would (~0.2 of the way), uncapped nearly all the way
    assert drifts[0.0] > 0.9 and drifts[8.0] < 0.3
    plain = LanguageCentroids.from_vectors(vecs, langs, priors=priors).centroid("xx")
    assert np.allclose(LanguageCentroids.from_vectors(vecs, langs, priors=priors, topics=sectors, topic_cap=8.0).centroid("xx"), plain)


def test_a_capped_item_with_several_sectors_shares_its_weight_and_removal_keeps_topics_aligned() -> None:
    c = LanguageCentroids(dimensions=3, prior_weight=0.0, priors={}, topic_cap=2.0)
    factors = c._topic_factors(np.ones(5), [("a",), ("a",), ("a",), ("a", "b"), ()])
    # load a = 3.5 (cap 2: x 4/7), b = 0.5 (no cap); the two-sector item averages its sectors' factors
    assert np.allclose(factors, [4 / 7, 4 / 7, 4 / 7, (4 / 7 + 1) / 2, 1.0])
    for k, tops in enumerate((["a"], ["b"], ["a"])):
        c.add("xx", np.eye(3)[k], tops)
    c.remove("xx", np.eye(3)[1])
    assert c._topics["xx"] == [("a",), ("a",)]


def test_centroids_follow_changes_to_the_corpus() -> None:
    rng = np.random.default_rng(5)
    vecs, langs, _, priors = _topic_corpus(rng)
    c = LanguageCentroids.from_vectors(vecs, langs, priors=priors)
    before = c.centroid("xx")
    c.add("xx", vecs[0] + 5)
    assert not np.allclose(c.centroid("xx"), before)
    c.remove("xx", vecs[0] + 5)
    assert np.allclose(c.centroid("xx"), before)


def test_a_centring_snapshot_computes_the_capped_estimate() -> None:
    """What workers share (services.matcher.centring.build) is the sector-capped estimate when given
    the items' sectors and the cap, and the plain density estimate without them."""
    from services.matcher.centring import build

    rng = np.random.default_rng(7)
    vecs, langs, dominant, _ = _topic_corpus(rng)
    bulk = dominant + 3 * rng.normal(size=(300, 384))
    everything, all_langs = np.vstack([vecs, bulk]), langs + ["xx"] * 300
    sectors = [[f"s{k % 10}"] for k in range(30)] * 2 + [["health"]] * 300
    capped = LanguageCentroids.from_vectors(everything, all_langs, prior_weight=2.0, topics=sectors, topic_cap=4.0).centroid("xx")
    snap = build(everything, all_langs, 2.0, topics=sectors, topic_cap=4.0)
    assert np.allclose(snap.centroids.centroid("xx"), capped)
    assert not np.allclose(build(everything, all_langs, 2.0).centroids.centroid("xx"), capped)
