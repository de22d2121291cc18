"""Structured reasons: one code per English reason, same order, the sentence rendered from the
code's template, and REASONS.md (what clients translate from) identical to the template table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.matcher.scoring import REASON_TEMPLATES, LanguageCentroids, MatchItem, Reason, load_rules, score_pair

RULES = load_rules()
DOC = Path(__file__).resolve().parents[3] / "services" / "matcher" / "scoring" / "REASONS.md"
SNAKE = re.compile(r"^[a-z]+(_[a-z]+)*$")


def _vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=384)
    return (v / np.linalg.norm(v)).tolist()


def _item(kind: str, **kw: Any) -> MatchItem:
    base: dict[str, Any] = dict(id=f"{kind}1", kind=kind, organization_id=f"{kind}-org", title="Solar irrigation for smallholders",
                                description="Pumps and training", text_language="en", languages=["en"], country="UGA" if kind == "need" else "DEU",
                                sdgs=[2, 7], sectors=["agriculture", "energy"], modalities=["capacity_development"], embedding=_vec(1))
    base.update(kw)
    return MatchItem.model_validate(base)


def _check(explanation: dict[str, Any]) -> list[str]:
    codes = explanation["reason_codes"]
    assert len(codes) == len(explanation["reasons"]) > 0
    for structured, text in zip(codes, explanation["reasons"], strict=True):
        assert set(structured) == {"code", "params"} and SNAKE.match(structured["code"])
        assert Reason(structured["code"], structured["params"]).text() == text
    json.dumps(explanation)  # the explanation travels in events: plain JSON only
    return [c["code"] for c in codes]


def test_a_scored_pair_has_one_code_per_reason_in_order() -> None:
    need = _item("need")
    offer = _item("offer", text_language="fr", sectors=["agriculture", "nutrition"], modalities=["expert_deployment"],
                  triangular_partners=["BRA"], languages=["en", "fr"])
    s = score_pair(need, offer, RULES, centroids=LanguageCentroids(priors={}))
    codes = _check(s.explanation())
    assert codes[:3] == ["semantic_similarity", "cross_language", "shared_wording"]
    assert {"same_sector", "compatible_modality", "common_sdgs", "triangular", "priority_country"} <= set(codes)
    cross = s.reason_codes[1]["params"]
    assert cross == {"need_language": "en", "offer_language": "fr"}


def test_an_excluded_pair_has_its_exclusion_codes() -> None:
    need = _item("need", languages=["fr"])
    offer = _item("offer", organization_id="need-org", delivery_countries=["PER"], status="withdrawn", languages=["pt"])
    s = score_pair(need, offer, RULES, centroids=LanguageCentroids(priors={}))
    assert s.excluded
    codes = _check(s.explanation())
    assert codes == ["excluded_not_open", "excluded_same_org", "excluded_no_delivery", "excluded_no_common_language"]
    assert s.reason_codes[2]["params"] == {"country": "UGA", "delivery": ["PER"]}


def test_unknown_codes_are_refused() -> None:
    with pytest.raises(KeyError):
        Reason("made_up")


def test_reasons_md_lists_every_code_with_its_template() -> None:
    rows = dict(re.findall(r"^\| `([a-z_]+)` \|[^|]*\| `(.*)` \|$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE))
    assert rows == REASON_TEMPLATES
