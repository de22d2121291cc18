"""Notification templates: coverage of kinds and languages, fallback, escaping, plain-word explanations."""

from __future__ import annotations

import re
import tomllib
from datetime import date
from typing import Any

import pytest

from services.notify.templates import (
    KINDS,
    LIFECYCLE_EVENTS,
    TEMPLATE_DIR,
    TemplateContextError,
    available_languages,
    explain,
    render,
    resolve_language,
)

REQUIRED_LANGUAGES = ("en", "fr", "es")
LEFTOVER = re.compile(r"\$\{?[A-Za-z_]")
EXPLANATION = {
    "rules_version": "r1",
    "components": {"sectors": 0.3, "sdgs": 0.2, "text": 0.1},
    "reasons": ["shared sectors: agriculture"],
    "excluded": False,
}
MATCH: dict[str, Any] = {"need_title": "Drought-tolerant seeds", "offer_title": "Seed multiplication training", "score": 0.82,
         "explanation": EXPLANATION, "url": "https://ssmatch.example.org/matches/n1.o1"}
SAMPLES: dict[str, dict[str, Any]] = {
    "match_proposed": {**MATCH, "recipient_name": "UNOSSC brokers"},
    "match_approved": {**MATCH, "role": "need", "counterpart_organization": "EMBRAPA",
                       "counterpart_contact_name": "Ana Souza", "counterpart_contact_email": "ana.souza@embrapa.example",
                       "note": "Both sides agreed to a call."},
    "match_rejected": {**MATCH, "note": "Timelines do not fit."},
    "match_lifecycle": {**MATCH, "event": "agreement_reached", "counterpart_organization": "EMBRAPA"},
    "expiry_reminder": {"item_kind": "need", "item_title": "Drought-tolerant seeds", "days": 7,
                        "expires_on": date(2026, 6, 30), "url": "https://ssmatch.example.org/needs/n1"},
    "digest": {"matches": [MATCH, {**MATCH, "need_title": "Solar pumps", "score": 0.55, "url": None}],
               "url": "https://ssmatch.example.org/matches?status=proposed"},
}


def test_every_kind_has_a_sample() -> None:
    assert set(SAMPLES) == set(KINDS)


@pytest.mark.parametrize("lang", REQUIRED_LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_in_every_language_without_leftovers(kind: str, lang: str) -> None:
    assert lang in available_languages()
    out = render(kind, lang, SAMPLES[kind])
    assert out.language == lang
    for part in (out.subject, out.text, out.html):
        assert part.strip()
        assert not LEFTOVER.search(part), part
    assert "\n" not in out.subject
    assert out.html.startswith("<!DOCTYPE html>") and f'<html lang="{lang}">' in out.html
    assert "<p></p>" not in out.html
    assert "\n\n\n" not in out.text


@pytest.mark.parametrize("lang", REQUIRED_LANGUAGES)
def test_catalogues_define_their_own_text_for_every_kind(lang: str) -> None:
    """Each language carries every kind itself (no silent English fallback for a whole message)."""
    with (TEMPLATE_DIR / f"{lang}.toml").open("rb") as fh:
        catalogue = tomllib.load(fh)
    with (TEMPLATE_DIR / "en.toml").open("rb") as fh:
        english = tomllib.load(fh)
    for section, phrases in english.items():
        missing = set(phrases) - set(catalogue.get(section, {}))
        assert not missing, f"{lang}: {section} lacks {sorted(missing)}"


def test_languages_differ() -> None:
    texts = {lang: render("match_proposed", lang, SAMPLES["match_proposed"]).text for lang in REQUIRED_LANGUAGES}
    assert len(set(texts.values())) == 3
    assert "Besoin" in texts["fr"] and "Necesidad" in texts["es"] and "Need" in texts["en"]


@pytest.mark.parametrize(
    ("pref", "expected"),
    [("fr", "fr"), ("fr-CA", "fr"), ("ES_ar", "es"), ("EN", "en"), ("de", "en"), ("pt-BR", "en"), (None, "en"), ("", "en")],
)
def test_language_resolution_falls_back_to_english(pref: str | None, expected: str) -> None:
    assert resolve_language(pref) == expected
    assert render("match_rejected", pref, SAMPLES["match_rejected"]).language == expected


def test_values_are_escaped_in_html_and_verbatim_in_text() -> None:
    hostile = '<script>alert("x")</script> & Co'
    out = render("match_approved", "en", {**SAMPLES["match_approved"], "counterpart_organization": hostile,
                                          "need_title": "A <b>bold</b> need"})
    assert "<script>" not in out.html and "&lt;script&gt;" in out.html
    assert "&amp; Co" in out.html and "&lt;b&gt;bold&lt;/b&gt;" in out.html
    assert hostile in out.text and "A <b>bold</b> need" in out.text
    assert "A <b>bold</b> need" in out.subject  # subjects are plain text


def test_values_are_not_template_code() -> None:
    sneaky = "$need_title ${offer_title} {{7*7}} $$"
    out = render("match_proposed", "en", {**SAMPLES["match_proposed"], "need_title": sneaky})
    assert sneaky in out.text and sneaky in out.subject


def test_newlines_in_values_cannot_break_the_subject() -> None:
    out = render("match_rejected", "en", {**SAMPLES["match_rejected"], "need_title": "Seeds\r\nBcc: x@evil.example"})
    assert "\n" not in out.subject and "\r" not in out.subject


def test_only_http_links_are_kept() -> None:
    ok = render("match_proposed", "en", SAMPLES["match_proposed"])
    assert 'href="https://ssmatch.example.org/matches/n1.o1"' in ok.html
    assert "https://ssmatch.example.org/matches/n1.o1" in ok.text
    bad = render("match_proposed", "en", {**SAMPLES["match_proposed"], "url": "javascript:alert(1)"})
    assert "javascript" not in bad.html and "javascript" not in bad.text and "href" not in bad.html


@pytest.mark.parametrize("lang", REQUIRED_LANGUAGES)
def test_introductions_give_each_side_the_other_one(lang: str) -> None:
    base = {**MATCH, "explanation": EXPLANATION}
    to_office = render("match_approved", lang, {**base, "role": "need", "counterpart_organization": "EMBRAPA",
                                                "counterpart_contact_name": "Ana Souza"})
    to_provider = render("match_approved", lang, {**base, "role": "offer",
                                                  "counterpart_organization": "Ministry of Agriculture of Malawi",
                                                  "counterpart_contact_name": "Chikondi Banda",
                                                  "counterpart_contact_email": "c.banda@agric.example"})
    assert "EMBRAPA" in to_office.text and "Ana Souza" in to_office.text
    assert "Ministry of Agriculture of Malawi" in to_provider.text and "Chikondi Banda" in to_provider.text
    assert "c.banda@agric.example" in to_provider.text
    assert "@" not in to_office.text  # no e-mail given: no dangling "E-mail:" line
    for out in (to_office, to_provider):
        assert MATCH["need_title"] in out.text and MATCH["offer_title"] in out.text
        assert explain(EXPLANATION, lang) in out.text
    assert to_office.text != to_provider.text


def test_optional_lines_disappear_with_their_label() -> None:
    with_note = render("match_rejected", "en", SAMPLES["match_rejected"])
    without = render("match_rejected", "en", {**SAMPLES["match_rejected"], "note": None})
    assert "Note: Timelines do not fit." in with_note.text
    assert "Note:" not in without.text and "Note:" not in without.html


@pytest.mark.parametrize("lang", REQUIRED_LANGUAGES)
def test_lifecycle_events_read_differently(lang: str) -> None:
    outs = [render("match_lifecycle", lang, {**MATCH, "event": e}) for e in LIFECYCLE_EVENTS]
    assert len({o.subject for o in outs}) == len(LIFECYCLE_EVENTS)
    assert len({o.text for o in outs}) == len(LIFECYCLE_EVENTS)


@pytest.mark.parametrize(
    ("lang", "days", "phrase"),
    [
        ("en", 1, "in 1 day"), ("en", 3, "in 3 days"), ("en", 0, "today"),
        ("fr", 1, "dans 1 jour"), ("fr", 2, "dans 2 jours"), ("fr", 0, "aujourd’hui"),
        ("es", 1, "en 1 día"), ("es", 14, "en 14 días"), ("es", 0, "hoy"),
    ],
)
def test_expiry_reminder_counts_days_with_plurals(lang: str, days: int, phrase: str) -> None:
    out = render("expiry_reminder", lang, {**SAMPLES["expiry_reminder"], "days": days})
    assert phrase in out.subject and phrase in out.text
    assert "2026-06-30" in out.text


@pytest.mark.parametrize(("lang", "one", "many"), [("en", "1 proposed match", "2 proposed matches"),
                                                   ("fr", "1 mise en relation proposée", "2 mises en relation proposées"),
                                                   ("es", "1 coincidencia propuesta", "2 coincidencias propuestas")])
def test_digest_lists_every_match(lang: str, one: str, many: str) -> None:
    two = render("digest", lang, SAMPLES["digest"])
    assert many in two.subject
    assert "Drought-tolerant seeds" in two.text and "Solar pumps" in two.text
    assert two.html.count("<li") == 2
    assert "82" in two.text and "55" in two.text
    single = render("digest", lang, {"matches": [MATCH]})
    assert one in single.subject


def test_scores_are_percentages_in_the_languages_style() -> None:
    assert "82%" in render("match_proposed", "en", SAMPLES["match_proposed"]).subject
    assert "82 %" in render("match_proposed", "fr", SAMPLES["match_proposed"]).subject


def test_explanations_in_plain_words() -> None:
    en = explain(EXPLANATION, "en")
    assert en.startswith("This match rests on shared sectors (50%), common Sustainable Development Goals (33%)")
    assert "shared wording (17%)" in en and "Details: shared sectors: agriculture." in en
    fr = explain(EXPLANATION, "fr")
    assert fr.startswith("Cette mise en relation repose sur des secteurs communs (50 %)")
    assert "agriculture" not in fr  # the matcher's English reasons stay out of French text
    assert explain({"components": {"new_signal": 1.0}}, "en") == "This match rests on new signal (100%)."
    assert explain("Already worded.", "es") == "Already worded."
    assert explain(None, "es") == "No hay una explicación detallada disponible."
    assert explain({"components": {"x": "bad", "y": True, "z": 0}}, "en") == "No detailed explanation is available."


def test_missing_titles_render_as_untitled() -> None:
    out = render("match_proposed", "fr", {"score": 0.5, "need_title": None})
    assert "(sans titre)" in out.subject


@pytest.mark.parametrize(
    ("kind", "context"),
    [
        ("match_proposed", {}),
        ("match_proposed", {"score": 1.5}),
        ("match_proposed", {"score": "high"}),
        ("match_approved", {**MATCH, "counterpart_organization": "X", "counterpart_contact_name": "Y"}),  # no role
        ("match_approved", {**MATCH, "role": "broker", "counterpart_organization": "X", "counterpart_contact_name": "Y"}),
        ("match_approved", {**MATCH, "role": "need", "counterpart_contact_name": "Y"}),
        ("match_lifecycle", {**MATCH, "event": "exploded"}),
        ("match_lifecycle", MATCH),
        ("expiry_reminder", {"item_kind": "need"}),
        ("expiry_reminder", {"item_kind": "need", "days": -1}),
        ("expiry_reminder", {"item_kind": "thing", "days": 1}),
        ("digest", {"matches": []}),
        ("digest", {"matches": ["not a dict"]}),
    ],
)
def test_incomplete_contexts_are_reported(kind: str, context: dict[str, Any]) -> None:
    with pytest.raises(TemplateContextError):
        render(kind, "en", context)


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown notification kind"):
        render("match_exploded", "en", {})


@pytest.mark.parametrize("lang", REQUIRED_LANGUAGES)
def test_every_matcher_component_has_its_own_label(lang: str) -> None:
    """The matcher's components (services/matcher/scoring/rules.py Weights) are all worded, distinctly."""
    components = ["semantic", "text", "sectors", "modalities", "sdgs", "geography"]
    with (TEMPLATE_DIR / f"{lang}.toml").open("rb") as fh:
        labels = tomllib.load(fh)["components"]
    assert set(components) <= set(labels)
    assert len({labels[c] for c in components}) == len(components)
    worded = explain({"components": dict.fromkeys(components[:4], 0.25)}, lang)
    assert all(labels[c] in worded for c in components[:4])


def test_delivery_message_ids_are_valid_stable_and_distinct() -> None:
    import email
    from email import policy

    from services.notify.channels.email import build_message, delivery_message_id

    ids = ["match_decided:k1n0.k1f0:k1-o1:email", "match_decided:k1n0.k1f0:k1-o2:email", "match_decided:k1n0:k1f0.k1-o1:email"]
    made = [delivery_message_id(i) for i in ids]
    assert len(set(made)) == 3 and made[0] == delivery_message_id(ids[0])
    for i, mid in zip(ids, made, strict=True):
        msg = build_message("a@b.example", "s", "t", "<p>t</p>", "S <s@x.example>", message_id=mid)
        parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
        assert str(parsed["Message-ID"]) == f"<{mid}>" and ":" not in mid, i  # the whole id survives a round trip


@pytest.mark.parametrize(("lang", "words"), [("en", "June 30, 2026"), ("fr", "30 juin 2026"), ("es", "30 de junio de 2026")])
def test_expiry_dates_are_written_in_the_readers_language_with_the_iso_date(lang: str, words: str) -> None:
    out = render("expiry_reminder", lang, SAMPLES["expiry_reminder"])
    assert f"{words} (2026-06-30)" in out.text


def test_a_plural_category_the_catalogue_lacks_falls_back_to_other() -> None:
    # CLDR puts French millions in "many"; the catalogue has only one/other
    out = render("expiry_reminder", "fr", {**SAMPLES["expiry_reminder"], "days": 1_000_000})
    assert "dans 1000000 jours" in out.subject
