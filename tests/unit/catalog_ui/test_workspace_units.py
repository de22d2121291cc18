"""Pure parts of the web workspace: language choice, message catalogs, reason rendering, chart rows."""

from __future__ import annotations

import importlib.util

from babel.messages.pofile import read_po

from services.catalog.ui import charts, i18n, labels


def test_language_is_the_choice_else_accept_language_else_english() -> None:
    assert i18n.negotiate("es", "fr-FR,fr;q=0.9") == "es"
    assert i18n.negotiate(None, "de-DE,de;q=0.9,fr;q=0.8,en;q=0.5") == "fr"
    assert i18n.negotiate("xx", "en;q=0.2, es;q=0.8") == "es"
    assert i18n.negotiate(None, "de, it") == "en"
    assert i18n.negotiate(None, None) == "en"


def test_every_message_is_translated_in_french_and_spanish() -> None:
    for lang in ("fr", "es"):
        path = i18n.LOCALES_DIR / lang / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=lang)
        empty = [m.id for m in catalog if m.id and not (all(m.string) if isinstance(m.string, tuple) else m.string)]
        assert not empty, (lang, empty[:5])
        for m in catalog:  # the same placeholders in both languages
            if isinstance(m.id, str) and m.id and m.string:
                assert sorted(_fields(m.id)) == sorted(_fields(m.string)), (lang, m.id)
    assert i18n.translations("fr").gettext("Sign in") == "Connexion"
    assert i18n.translations("es").ngettext("%(num)d unread", "%(num)d unread", 3) == "%(num)d sin leer"


def _fields(text: str) -> list[str]:
    import re

    return re.findall(r"%\(\w+\)[sd]|\{\w+(?::[^}]*)?\}", text)


def test_reason_codes_render_in_the_page_language_and_unknown_codes_fall_back() -> None:
    explanation = {
        "reasons": ["same sector: health", "something new", "meaning of the texts: 82% similar (cosine 0.378)"],
        "reason_codes": [
            {"code": "same_sector", "params": {"sectors": ["health"]}},
            {"code": "a_code_from_the_future", "params": {"x": 1}},
            {"code": "semantic_similarity", "params": {"similarity": 0.82, "cosine": 0.378}},
        ],
    }
    fr = labels.reason_lines(explanation, i18n.gettext_for("fr"), "fr")
    assert fr[0] == "même secteur : Santé" and fr[1] == "something new" and fr[2].startswith("sens des textes : similaires à 82%")
    broken = {"reasons": ["kept"], "reason_codes": [{"code": "same_sector", "params": {}}]}  # params missing: English text
    assert labels.reason_lines(broken, i18n.gettext_for("es"), "es") == ["kept"]
    assert labels.reason_lines({"reasons": ["only text"]}, i18n.gettext_for("fr"), "fr") == ["only text"]


def test_the_pages_know_every_reason_code_the_scorer_emits() -> None:
    """When the scorer's code table is present, each of its codes has a template here with the same
    English text (so the catalogs translate exactly what the scorer says)."""
    if importlib.util.find_spec("services.matcher.scoring.reasons") is None:
        assert "same_sector" in labels.REASONS
        return
    from services.matcher.scoring.reasons import TEMPLATES

    assert {code: labels.REASONS.get(code) for code in TEMPLATES} == TEMPLATES


def test_component_bars_are_clipped_and_sorted() -> None:
    assert labels.component_bars({"components": {"a": 0.2, "b": 1.7, "c": "x", "d": -1}}) == [("b", 1.0), ("a", 0.2), ("d", 0.0)]


def test_chart_rows_follow_the_summary() -> None:
    summary = {
        "by_sdg": [{"sdg": 1, "needs": 0, "offers": 0, "matches": 0, "partnerships": 0}, {"sdg": 2, "needs": 3, "offers": 1, "matches": 2, "partnerships": 1}],
        "funnel": {"posted": 5, "matched": 3, "approved": 2, "agreement": 1, "completed": 0},
        "shares": {"base": "matches", "count": 0, "LDC": None, "LLDC": None, "SIDS": None, "gender_responsive": None},
        "outcomes": {"completed": 1, "people_trained": 40, "resources_mobilised": [{"currency": "USD", "amount": 1000.0}]},
        "time_series": [{"month": "2026-10", "needs": 2, "offers": 0, "matches": 1, "approved": 0, "partnerships": 0, "completed": 0}],
    }
    sdg = charts.by_dimension(summary, "sdg")
    assert sdg["rows"] == [("2", [3, 1, 2, 1])] and sdg["max"] == 3  # SDGs without any count are left out
    assert charts.funnel(summary)["rows"] == [("posted", [5]), ("matched", [3]), ("approved", [2]), ("agreement", [1]), ("completed", [0])]
    assert charts.shares(summary)["rows"][0] == ("LDC", [None])  # no matches: no share, not 0 %
    assert ("resources_mobilised_USD", [1000.0]) in charts.outcomes(summary)["rows"]
    assert charts.over_time(summary)["rows"] == [("2026-10", [2, 0, 1, 0, 0, 0])]
