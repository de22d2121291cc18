"""score_pair: hard filters with their reasons, each component, explanations, batch = pair."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from services.matcher.scoring import (
    LanguageCentroids,
    MatchItem,
    load_rules,
    score_need_against_offers,
    score_offer_against_needs,
    score_pair,
)

RULES = load_rules()
NO_CENTRING = LanguageCentroids(priors={})  # empty corpus, no priors: vectors are used as they are


def vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=384)
    return (v / np.linalg.norm(v)).tolist()


SAME = vec(1)


def item(kind: str, **kw: Any) -> MatchItem:
    base: dict[str, Any] = dict(
        id=f"{kind}1", kind=kind, organization_id=f"{kind}-org", title="Solar irrigation for smallholders",
        description="Pumps, training and financing", keywords=["solar"], text_language="en", languages=["en"],
        country="UGA" if kind == "need" else "BRA", sdgs=[2, 7], sectors=["agriculture"], modalities=["capacity_development"],
        embedding=SAME,
    )
    base.update(kw)
    return MatchItem.model_validate(base)


def score(need: MatchItem, offer: MatchItem) -> Any:
    return score_pair(need, offer, RULES, centroids=NO_CENTRING)


def test_a_good_pair_scores_high_and_its_explanation_adds_up() -> None:
    s = score(item("need"), item("offer"))
    assert not s.excluded and s.total > 0.9
    assert set(s.components) == {"semantic", "text", "sectors", "modalities", "sdgs", "geography"}
    assert sum(s.components.values()) == pytest.approx(s.total, abs=0.002)
    assert s.rules_version == RULES.version
    assert any("same sector: agriculture" in r for r in s.reasons)
    assert any("South-South" in r for r in s.reasons) and any("priority country: UGA" in r for r in s.reasons)


@pytest.mark.parametrize(
    "need_kw,offer_kw,reason",
    [
        ({}, {"organization_id": "need-org"}, "same organization"),
        ({"status": "closed"}, {}, "need is not open"),
        ({}, {"status": "withdrawn"}, "offer is not open"),
        ({"expires_at": datetime.now(UTC) - timedelta(days=1)}, {}, "need expired on"),
        ({}, {"expires_at": datetime(2020, 1, 1)}, "offer expired on 2020-01-01"),  # naive: taken as UTC
        ({}, {"delivery_countries": ["PER", "BOL"]}, "does not deliver to UGA (only BOL, PER)"),
        ({"languages": ["fr"]}, {"languages": ["pt"]}, "no common working language (fr vs pt)"),
    ],
)
def test_each_hard_filter_excludes_with_its_reason(need_kw: dict[str, Any], offer_kw: dict[str, Any], reason: str) -> None:
    s = score(item("need", **need_kw), item("offer", **offer_kw))
    assert s.excluded and s.total == 0.0
    assert any(reason in r for r in s.reasons), s.reasons


def test_interpretation_lifts_the_language_filter_and_delivery_anywhere_passes() -> None:
    assert not score(item("need", languages=["fr"], accepts_interpretation=True), item("offer", languages=["pt"])).excluded
    assert not score(item("need"), item("offer", delivery_countries=[])).excluded
    assert not score(item("need"), item("offer", delivery_countries=["UGA"])).excluded


@pytest.mark.parametrize(
    "need_sectors,offer_sectors,expected",
    [(["agriculture"], ["agriculture"], 1.0), (["agriculture"], ["nutrition"], 0.5), (["agriculture"], ["energy"], 0.0),
     (["agriculture", "energy"], ["agriculture"], 0.5), (["governance"], ["statistics_data"], 0.5)],
)
def test_sector_coverage_with_adjacency(need_sectors: list[str], offer_sectors: list[str], expected: float) -> None:
    s = score(item("need", sectors=need_sectors), item("offer", sectors=offer_sectors))
    assert s.components["sectors"] == pytest.approx(expected * RULES.weights.normalised()["sectors"], abs=1e-3)


@pytest.mark.parametrize(
    "need_mod,offer_mod,expected",
    [(["capacity_development"], ["capacity_development"], 1.0), (["capacity_development"], ["expert_deployment"], 0.7),
     (["co_financing"], ["capacity_development"], 0.0)],
)
def test_modality_compatibility(need_mod: list[str], offer_mod: list[str], expected: float) -> None:
    s = score(item("need", modalities=need_mod), item("offer", modalities=offer_mod))
    assert s.components["modalities"] == pytest.approx(expected * RULES.weights.normalised()["modalities"], abs=1e-3)


def test_sdg_overlap_is_the_share_of_the_needs_goals() -> None:
    s = score(item("need", sdgs=[2, 6, 7, 13]), item("offer", sdgs=[7, 13, 1]))
    assert s.components["sdgs"] == pytest.approx(0.5 * RULES.weights.normalised()["sdgs"], abs=1e-3)


def test_geography_prefers_south_south_and_marks_triangular() -> None:
    w = RULES.weights.normalised()["geography"]
    need = item("need", country="KEN")  # not an LDC/LLDC/SIDS: no bonus
    assert score(need, item("offer", country="BRA")).components["geography"] == pytest.approx(w * 1.0, abs=1e-3)
    north = score(need, item("offer", country="DEU"))
    assert north.components["geography"] == pytest.approx(w * RULES.geography.other, abs=1e-3)
    tri = score(need, item("offer", country="DEU", triangular_partners=["BRA"]))
    assert tri.components["geography"] == pytest.approx(w * RULES.geography.triangular, abs=1e-3)
    assert any("triangular: partners BRA" in r for r in tri.reasons)
    assert not any("priority country" in r for r in score(need, item("offer")).reasons)


def test_semantic_component_follows_the_vectors() -> None:
    near, far = score(item("need"), item("offer")), score(item("need"), item("offer", embedding=vec(2)))
    assert near.components["semantic"] > far.components["semantic"] == 0.0


def test_missing_embedding_is_an_error_not_a_silent_zero() -> None:
    with pytest.raises(ValueError, match="without an embedding"):
        score(item("need", embedding=None), item("offer"))


def test_batch_scores_equal_pair_scores_both_directions() -> None:
    need = item("need")
    offers = [item("offer", id=f"o{i}", embedding=vec(i), sectors=[s], languages=langs)
              for i, (s, langs) in enumerate([("agriculture", ["en"]), ("energy", ["en", "fr"]), ("nutrition", ["pt"]), ("health", ["en"])])]
    batch = score_need_against_offers(need, offers, RULES, centroids=NO_CENTRING)
    assert [b.total for b in batch] == [score(need, o).total for o in offers]
    assert [b.excluded for b in batch] == [False, False, True, False]
    reverse = score_offer_against_needs(offers[0], [need, item("need", id="n2", organization_id="offer-org")], RULES, centroids=NO_CENTRING)
    assert reverse[0].total == batch[0].total and reverse[1].excluded


def test_delivery_regions_cover_their_member_countries() -> None:
    in_region = score(item("need", country="SEN"), item("offer", delivery_regions=["Western Africa"]))
    assert not in_region.excluded
    outside = score(item("need", country="KEN"), item("offer", delivery_regions=["Western Africa"], delivery_countries=["PER"]))
    assert outside.excluded and any("does not deliver to KEN (only PER, Western Africa)" in r for r in outside.reasons)
    assert not score(item("need", country="KIR"), item("offer", delivery_regions=["SIDS"])).excluded


def test_expiry_is_judged_when_scoring_not_when_prepared() -> None:
    from services.matcher.scoring import CandidateSet, prepare, score_against

    soon = datetime.now(UTC) + timedelta(hours=1)
    need = prepare(item("need"), RULES)
    offers = CandidateSet.build([prepare(item("offer", expires_at=soon), RULES)])
    assert not score_against(need, offers, RULES, NO_CENTRING).excluded[0]
    later = score_against(need, offers, RULES, NO_CENTRING, now=soon + timedelta(minutes=1))
    assert later.excluded[0] and "offer expired on" in later.score(0).reasons[0]


def test_more_than_sixty_two_languages_never_fake_a_common_one() -> None:
    rare = [f"x{i}" for i in range(70)]  # exhausts the language bits
    need = item("need", languages=rare[:35])
    offer = item("offer", languages=rare[35:])
    s = score(need, offer)
    assert s.excluded and any("no common working language" in r for r in s.reasons)
    assert not score(need, item("offer", languages=[rare[-1], rare[0]])).excluded


ALL_SECTORS = sorted(__import__("ssmatch.reference", fromlist=["x"]).SECTOR_CODES)
ALL_MODALITIES = sorted(__import__("ssmatch.reference", fromlist=["x"]).MODALITY_CODES)


def test_codes_without_semantic_agreement_earn_nothing() -> None:
    """An offer declaring exactly the need's codes over an unrelated text gets no code credit."""
    unrelated = score(item("need"), item("offer", embedding=vec(2)))
    assert unrelated.components["semantic"] == 0.0
    assert unrelated.components["sectors"] == unrelated.components["modalities"] == unrelated.components["sdgs"] == 0.0
    assert "codes_unconfirmed" in [r["code"] for r in unrelated.reason_codes]
    assert score(item("need"), item("offer")).components["sectors"] > 0  # the same codes count over a related text


def test_claiming_every_code_is_discounted_and_a_few_extra_are_not() -> None:
    need = item("need")
    honest = score(need, item("offer", sectors=["agriculture", "health"], sdgs=[2, 7, 1]))
    ticker = score(need, item("offer", sectors=ALL_SECTORS, modalities=ALL_MODALITIES, sdgs=list(range(1, 18))))
    assert honest.components["sectors"] == pytest.approx(score(need, item("offer")).components["sectors"])
    assert ticker.total < 0.2 < 0.9 < honest.total
    broad = next(r for r in ticker.reason_codes if r["code"] == "broad_offer")
    assert broad["params"]["claimed"] == len(ALL_SECTORS) + len(ALL_MODALITIES) + 17
    assert "broad_offer" not in [r["code"] for r in honest.reason_codes]


def test_switching_the_code_rules_off_gives_back_plain_code_credit() -> None:
    plain = RULES.model_copy(update={"codes": RULES.codes.model_copy(update={"semantic_gate": 0.0, "breadth_allowance": -1})})
    unrelated = score_pair(item("need"), item("offer", embedding=vec(2)), plain, centroids=NO_CENTRING)
    assert unrelated.components["sectors"] == pytest.approx(plain.weights.normalised()["sectors"], abs=1e-3)


def test_shared_wording_pays_no_bonus_for_writing_in_the_needs_script() -> None:
    """Same meaning in the need's script or another: the text component is the same (max of both)."""
    need = item("need", title="Solar irrigation pumps for smallholder farmers", description="")
    same_script = score(need, item("offer", title="Solar irrigation pumps for smallholder farmers", description="", keywords=[]))
    other_script = score(need, item("offer", title="为小农户提供太阳能灌溉水泵", description="", keywords=[], text_language="zh", languages=["en", "zh"]))
    assert same_script.components["semantic"] == other_script.components["semantic"]
    assert other_script.components["text"] == pytest.approx(same_script.components["text"])
    plain = RULES.model_copy(update={"text_follows_semantic": False})
    raw = score_pair(need, item("offer", title="为小农户提供太阳能灌溉水泵", description="", keywords=[], text_language="zh", languages=["en", "zh"]),
                     plain, centroids=NO_CENTRING)
    assert raw.components["text"] < other_script.components["text"]


def test_an_offer_serving_none_of_the_needs_modalities_is_discounted_as_a_whole() -> None:
    need = item("need", modalities=["co_financing"])
    served = score(need, item("offer", modalities=["co_financing"]))
    unserved = score(need, item("offer", modalities=["capacity_development"]))
    w = RULES.weights.normalised()
    assert unserved.total == pytest.approx(RULES.modalities.mismatch_factor * (served.total - w["modalities"]), abs=2e-3)
    assert "modalities_differ" in [r["code"] for r in unserved.reason_codes]
    assert sum(unserved.components.values()) == pytest.approx(unserved.total, abs=2e-3)  # shares still add up
    compatible = score(item("need"), item("offer", modalities=["expert_deployment"]))  # compatible: no discount
    assert compatible.total == pytest.approx(score(item("need"), item("offer")).total - 0.3 * w["modalities"], abs=2e-3)
