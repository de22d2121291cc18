"""`score_bound` (ANN widening in candidates.py) must stay a true upper bound of the scorer's total
at a given centred cosine, under the shipped rules and with each versioned change switched off:
code credit gated by meaning, breadth discount, modality mismatch discount, text following meaning."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from services.matcher.candidates import score_bound
from services.matcher.scoring import CandidateSet, LanguageCentroids, MatchItem, Rules, load_rules, prepare, score_against
from ssmatch import reference

RULES = load_rules()
SECTORS = sorted(reference.SECTOR_CODES)
MODALITIES = sorted(reference.MODALITY_CODES)
WORDS = ("solar", "pumps", "training", "clinic", "midwives", "seed", "rice", "data", "census", "water", "loans", "schools")
COUNTRIES = ("UGA", "BRA", "HTI", "FRA", "IND", "NPL")


def _with(section: str, **changes: Any) -> Rules:
    return RULES.model_copy(update={section: getattr(RULES, section).model_copy(update=changes)})


VARIANTS = {
    "shipped": RULES,
    "without_code_gate": _with("codes", semantic_gate=0.0),
    "without_breadth_discount": _with("codes", breadth_allowance=-1),
    "without_modality_mismatch_discount": _with("modalities", mismatch_factor=1.0),
    "without_text_follows_semantic": RULES.model_copy(update={"text_follows_semantic": False}),
}


def _item(kind: str, i: int, rng: np.random.Generator, pick: random.Random, base: np.ndarray) -> MatchItem:
    # vectors near a shared direction, so centred cosines cover the whole semantic scale
    vec = base * pick.uniform(-0.8, 0.8) + rng.normal(size=base.shape) * pick.uniform(0.3, 1.5) / np.sqrt(base.shape[0])
    return MatchItem(
        id=f"{kind}{i}", kind=kind, organization_id=f"{kind}-org{i}", title=" ".join(pick.sample(WORDS, 4)),
        description=" ".join(pick.sample(WORDS, 6)), text_language=pick.choice(("en", "fr", "zh")), languages=["en", "fr", "zh"],
        country=pick.choice(COUNTRIES), **(_catch_all() if pick.random() < 0.15 else _focused(pick)),
        triangular_partners=["BRA"] if pick.random() < 0.3 else [], embedding=(vec / np.linalg.norm(vec)).tolist(),
    )


def _focused(pick: random.Random) -> dict[str, Any]:
    """A few codes from a small pool, so many pairs share all their codes (full code credit)."""
    return {"sectors": pick.sample(["agriculture", "energy", "health"], pick.randint(1, 2)),
            "modalities": pick.sample(["capacity_development", "technology_transfer", "co_financing"], pick.randint(1, 2)),
            "sdgs": pick.sample([2, 3, 7], pick.randint(0, 2))}


def _catch_all() -> dict[str, Any]:
    return {"sectors": SECTORS, "modalities": MODALITIES, "sdgs": list(range(1, 18))}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_pair_scores_above_the_bound_at_its_cosine(variant: str) -> None:
    rules = VARIANTS[variant]
    rng, pick = np.random.default_rng(7), random.Random(7)
    base = rng.normal(size=384)
    base /= np.linalg.norm(base)
    offers = [_item("offer", i, rng, pick, base) for i in range(120)]
    needs = [_item("need", i, rng, pick, base) for i in range(12)]
    cents = LanguageCentroids.from_vectors(np.asarray([i.embedding for i in offers + needs]), [i.text_language for i in offers + needs],
                                           **rules.semantic.centring_options())
    cset = CandidateSet.build([prepare(o, rules) for o in offers])
    seen = 0
    for need in needs:
        batch = score_against(prepare(need, rules), cset, rules, cents)
        for total, cosine in zip(batch.total, batch.cosine, strict=True):
            assert float(total) <= score_bound(rules, float(cosine)) + 1e-5
        seen += int((batch.total > 0).sum())
    assert seen > 500  # the pairs are scored, not excluded


def test_the_bound_is_reached_by_a_full_match_and_rises_with_the_cosine() -> None:
    cosines = np.linspace(-0.2, 0.8, 21)
    bounds = [score_bound(RULES, float(c)) for c in cosines]
    assert bounds == sorted(bounds)
    assert bounds[-1] == pytest.approx(1.0)
    # below the semantic floor codes earn nothing: only wording and geography remain
    w = RULES.weights.normalised()
    assert bounds[0] == pytest.approx(w["text"] + w["geography"])
