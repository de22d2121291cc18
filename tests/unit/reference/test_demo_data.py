"""The demo catalogue (ssmatch/demo/data.json) is valid against the canonical codes and the API limits.

`make run` posts every item through the catalog API at start-up, so an invalid code or an over-long
text here would break the demo for everyone; these checks catch it before the stack is started.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import ssmatch
from ssmatch import reference

DATA_FILE = Path(ssmatch.__file__).resolve().parent / "demo" / "data.json"
ISO639_1 = re.compile(r"^[a-z]{2}$")
SOURCE = re.compile(r"^seed 00[0-4] §\d+")


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


def _items(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("need", n) for n in data["needs"]] + [("offer", o) for o in data["offers"]]


def test_counts_and_languages(data: dict[str, Any]) -> None:
    assert data["version"] == 1
    assert len(data["needs"]) >= 60 and len(data["offers"]) >= 60
    langs = Counter(item["text_language"] for _, item in _items(data))
    assert len(langs) >= 5, langs
    # Needs and offers each come in several languages, so that cross-lingual matching is exercised.
    assert len({n["text_language"] for n in data["needs"]}) >= 5
    assert len({o["text_language"] for o in data["offers"]}) >= 5


def test_keys_are_unique(data: dict[str, Any]) -> None:
    keys = [o["key"] for o in data["organizations"]] + [item["key"] for _, item in _items(data)]
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicates
    names = [o["name"] for o in data["organizations"]]
    assert len(names) == len(set(names)), "the demo loader finds organizations by name"


def test_organizations_are_valid(data: dict[str, Any]) -> None:
    types = Counter(o["type"] for o in data["organizations"])
    assert set(types) == {"country_office", "solution_provider", "broker"} and types["broker"] == 2
    for org in data["organizations"]:
        assert reference.country(org["country"]) is not None, org["key"]
        assert ISO639_1.match(org["language"]), org["key"]
        assert 2 <= len(org["name"]) <= 200
        assert re.match(r"^[^@\s]+@example\.org$", org["contact"]["email"]), org["key"]
        assert org["contact"]["name"].strip()


def test_items_belong_to_an_organization_of_the_right_type(data: dict[str, Any]) -> None:
    orgs = {o["key"]: o for o in data["organizations"]}
    expected = {"need": "country_office", "offer": "solution_provider"}
    for kind, item in _items(data):
        org = orgs.get(item["organization"])
        assert org is not None, f"{item['key']}: unknown organization {item['organization']}"
        assert org["type"] == expected[kind], item["key"]
        assert item["country"] == org["country"], item["key"]


def test_every_code_is_canonical(data: dict[str, Any]) -> None:
    for kind, item in _items(data):
        key = item["key"]
        assert item["sdgs"] and set(item["sdgs"]) <= set(range(1, 18)), key
        assert all(isinstance(g, int) for g in item["sdgs"]), key
        assert item["sectors"] and set(item["sectors"]) <= reference.SECTOR_CODES, key
        assert item["modalities"] and set(item["modalities"]) <= reference.MODALITY_CODES, key
        assert len(item["sectors"]) <= 8 and len(set(item["sectors"])) == len(item["sectors"]), key
        assert reference.country(item["country"]) is not None, key
        assert item["languages"] and all(ISO639_1.match(lang) for lang in item["languages"]), key
        assert ISO639_1.match(item["text_language"]) and item["text_language"] in item["languages"], key
        if kind == "offer":
            for code in item["delivery_countries"] + item["triangular_partners"]:
                assert reference.country(code) is not None, f"{key}: {code}"


def test_texts_are_within_bounds(data: dict[str, Any]) -> None:
    for _, item in _items(data):
        key = item["key"]
        assert 3 <= len(item["title"]) <= 200, key
        assert 60 <= len(item["description"]) <= 5000, key
        assert 1 <= len(item["keywords"]) <= 30 and all(1 <= len(k) <= 60 for k in item["keywords"]), key
        assert item["title"] == item["title"].strip() and item["description"] == item["description"].strip(), key
        if item["text_language"] != "zh":
            assert 4 <= len(item["title"].split()) <= 15, key


def test_every_item_cites_a_seed(data: dict[str, Any]) -> None:
    for _, item in _items(data):
        assert SOURCE.match(item["source"]), item["key"]


def test_text_is_written_in_its_declared_script(data: dict[str, Any]) -> None:
    """A cheap guard against mislabelled text_language: the script of the description must fit it."""
    scripts = {"zh": r"[\u4e00-\u9fff]", "ar": r"[\u0600-\u06ff]", "ru": r"[\u0400-\u04ff]"}
    for _, item in _items(data):
        pattern = scripts.get(item["text_language"], r"^[\x00-\u024f«»’“”–—§%€]+$")
        assert re.search(pattern, item["description"]), item["key"]


def test_most_needs_have_plausible_offers(data: dict[str, Any]) -> None:
    """The demo must produce meaningful matches: most needs share a sector and a modality with 1+ offers,
    and some of those pairs are written in different languages."""
    with_offer = 0
    cross_lingual = 0
    for need in data["needs"]:
        hits = [o for o in data["offers"]
                if set(o["sectors"]) & set(need["sectors"]) and set(o["modalities"]) & set(need["modalities"])]
        with_offer += bool(hits)
        cross_lingual += any(o["text_language"] != need["text_language"] for o in hits)
    assert with_offer >= 0.9 * len(data["needs"])
    assert cross_lingual >= 0.5 * len(data["needs"])
