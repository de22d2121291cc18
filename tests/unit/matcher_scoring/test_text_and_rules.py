"""Text normalisation and the rules file's validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.matcher.scoring import RulesError, load_rules
from services.matcher.scoring.rules import DEFAULT_RULES
from services.matcher.scoring.text import normalize, tokens


def test_chinese_is_segmented_not_one_opaque_token() -> None:
    toks = tokens("建立移民统计数据库")
    assert "统计" in toks and "数据库" in toks and "建立移民统计数据库" not in toks


def test_case_accents_and_stop_words_are_folded_away() -> None:
    assert normalize("La Sécurité ALIMENTAIRE et les cantines") == "securite alimentaire cantines"
    assert normalize("The training of the extension workers") == "training extension workers"
    assert normalize("Formação de técnicos para as cooperativas") == "formacao tecnicos cooperativas"
    assert normalize("Capacitación de los técnicos y las cooperativas") == "capacitacion tecnicos cooperativas"
    assert "и" not in tokens("Обучение и подготовка кадров")
    assert normalize("Обучение учителей") == "обучение учителей"  # й is a letter, not an accented и


def test_arabic_article_and_letter_variants_are_normalised() -> None:
    assert tokens("التدريب") == tokens("والتدريب") == tokens("تدريب")
    assert tokens("إدارة") == tokens("ادارة")
    assert tokens("المدرسة")[0] == tokens("مدرسه")[0]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rules.toml"
    p.write_text(text, encoding="utf-8")
    return p


def base_text() -> str:
    return DEFAULT_RULES.read_text(encoding="utf-8")


def test_the_shipped_rules_load_and_carry_a_version() -> None:
    rules = load_rules()
    assert rules.version and rules.top_k >= 1 and 0 <= rules.min_score <= 1
    assert abs(sum(rules.weights.normalised().values()) - 1) < 1e-9
    assert "nutrition" in rules.adjacent_sectors()["agriculture"]


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda t: t.replace('["governance", "statistics_data"]', '["governance", "statistic"]'), "unknown sector codes: statistic"),
        (lambda t: t.replace("capacity_development = [", "capacity_building = ["), "unknown modality codes: capacity_building"),
        (lambda t: t.replace("ceiling = 0.45", "ceiling = 0.01"), "must be above semantic.floor"),
        (lambda t: t.replace("semantic = 0.50", "semantic = -1"), "weights.semantic"),
        (lambda t: t.replace("top_k = 5", "top_k = 0"), "proposals.top_k"),
        (lambda t: t.replace("sector_cap = 4", "sector_cap = 0.5"), "or at least 1 item"),
        (lambda t: t.replace("sector_cap = 4", "sector_cap = -1"), "semantic.sector_cap"),
        (lambda t: t + "\n[surprise]\nx = 1\n", "surprise"),
        (lambda t: re.sub(r'^version = "[^"]*"', "", t, flags=re.MULTILINE), "version"),
        (lambda t: t + "\nthis is = = not toml\n", "not valid TOML"),
    ],
)
def test_bad_rules_files_are_refused_with_a_message_naming_the_problem(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RulesError, match=message.replace(".", r"\.")):
        load_rules(write(tmp_path, edit(base_text())))


def test_missing_rules_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="does not exist"):
        load_rules(tmp_path / "nope.toml")


def test_language_tags_are_normalised_to_their_primary_subtag() -> None:
    from services.matcher.scoring import LanguageCentroids, MatchItem

    it = MatchItem(id="x", kind="need", organization_id="o", title="T", country="CHN", text_language="zh-CN", languages=["zh_Hans", "EN", "en-GB", ""])
    assert it.text_language == "zh" and it.languages == ["zh", "en"]
    cents = LanguageCentroids(priors={"zh": __import__("numpy").ones(384)})
    assert (cents.centroid("zh-CN") == cents.centroid("zh")).all()


def test_tags_that_skipped_validation_are_normalised_wherever_the_scorer_reads_a_language() -> None:
    """`model_copy(update=...)` skips MatchItem's validators: the scorer normalises again (centroid,
    common-language filter, cross-language reason), and so does a frozen centring snapshot."""
    import numpy as np

    from services.matcher.centring import build
    from services.matcher.scoring import LanguageCentroids, MatchItem, score_pair

    rng = np.random.default_rng(3)
    v = [(x / np.linalg.norm(x)).tolist() for x in rng.normal(size=(2, 384))]
    need = MatchItem(id="n", kind="need", organization_id="a", title="Solar pumps", country="UGA", text_language="zh",
                     languages=["zh"], sectors=["energy"], embedding=v[0])
    offer = MatchItem(id="o", kind="offer", organization_id="b", title="Solar pumps", country="BRA", text_language="pt",
                      languages=["pt", "zh"], sectors=["energy"], embedding=v[1])
    cents = LanguageCentroids(priors={"zh": np.full(384, 0.05), "pt": np.full(384, -0.05)})
    rules = load_rules()
    plain = score_pair(need, offer, rules, centroids=cents)
    raw_need = need.model_copy(update={"text_language": "zh-CN", "languages": ["ZH_Hans"]})
    raw_offer = offer.model_copy(update={"text_language": "PT-br", "languages": ["pt-BR", "zh-TW"]})
    raw = score_pair(raw_need, raw_offer, rules, centroids=cents)
    assert not raw.excluded and raw.total == plain.total and raw.reason_codes == plain.reason_codes
    snapshot = build(np.asarray(v), ["zh-CN", "pt-BR"], prior_weight=2.0)
    assert set(snapshot.centroids.table) >= {"zh", "pt"} and not {"zh-CN", "pt-BR"} & set(snapshot.centroids.table)
    assert (snapshot.centroids.centroid("zh-CN") == snapshot.centroids.centroid("zh")).all()
