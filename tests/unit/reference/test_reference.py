"""Reference data: canonical codes, translations, SDGs, countries and UN country groups.

The code lists are pinned here (copied from shared/TAXONOMY.md) rather than parsed from shared/, so
that the repository tests itself; a change to either side must be made on purpose in both.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from ssmatch import reference
from ssmatch.reference import build_countries

REF_DIR = Path(reference.__file__).resolve().parent

SECTORS = [
    "agriculture", "food_security", "nutrition", "fisheries_oceans", "forestry_land", "water_sanitation",
    "health", "education", "social_protection", "gender_equality", "employment_youth", "energy",
    "climate_environment", "disaster_risk", "digital_ict", "science_technology", "industry_sme",
    "trade_investment", "finance", "infrastructure_transport", "urban_housing", "governance",
    "statistics_data", "migration", "peace_humanitarian", "culture_tourism",
]
MODALITIES = [
    "knowledge_exchange", "capacity_development", "expert_deployment", "technology_transfer", "policy_advice",
    "peer_learning", "volunteers", "co_financing", "joint_research",
]
UN_LANGUAGES = ("ar", "zh", "en", "fr", "ru", "es")


def test_sector_and_modality_codes_equal_taxonomy_md_in_order() -> None:
    assert [e.code for e in reference.sectors()] == SECTORS
    assert [e.code for e in reference.modalities()] == MODALITIES
    assert frozenset(SECTORS) == reference.SECTOR_CODES
    assert frozenset(MODALITIES) == reference.MODALITY_CODES
    assert isinstance(reference.SECTOR_CODES, frozenset) and isinstance(reference.MODALITY_CODES, frozenset)


def test_english_french_spanish_names_follow_domain_brief() -> None:
    agri = reference.sector("agriculture")
    assert agri is not None
    assert (agri.names["en"], agri.names["fr"], agri.names["es"]) == (
        "Agriculture and rural development", "Agriculture et développement rural", "Agricultura y desarrollo rural")
    cofi = reference.modality("co_financing")
    assert cofi is not None and cofi.names["es"] == "Cofinanciación y participación en los costos"
    assert reference.modality("capacity_development").name == "Training and capacity development"  # type: ignore[union-attr]


@pytest.mark.parametrize("entry", reference.sectors() + reference.modalities(), ids=lambda e: e.code)
def test_every_taxonomy_entry_has_names_in_all_languages_and_a_description(entry: reference.TaxonomyEntry) -> None:
    for lang in ("en", "fr", "es", "ar", "zh", "ru", "pt"):
        assert entry.names.get(lang, "").strip(), f"{entry.code} lacks a {lang} name"
    assert entry.name == entry.names["en"]
    assert 20 <= len(entry.description) <= 300


def test_related_sectors_are_canonical_and_symmetric() -> None:
    for e in reference.sectors():
        assert set(e.related) <= reference.SECTOR_CODES and e.code not in e.related
        for other in e.related:
            assert e.code in reference.sector(other).related  # type: ignore[union-attr]
    assert "food_security" in reference.sector("agriculture").related  # type: ignore[union-attr]


def test_sdgs_are_1_to_17_with_official_titles_in_six_un_languages_and_portuguese() -> None:
    goals = reference.sdgs()
    assert [g.code for g in goals] == list(range(1, 18))
    for g in goals:
        for lang in (*UN_LANGUAGES, "pt"):
            assert g.names.get(lang, "").strip(), f"SDG {g.code} lacks {lang}"
    assert goals[1].names["en"] == "Zero hunger" and goals[1].names["es"] == "Hambre cero"
    assert goals[1].names["zh"] == "零饥饿"
    assert goals[12].name == "Climate action" and goals[16].names["fr"].startswith("Partenariats")
    assert reference.sdg(17) is goals[16] and reference.sdg(0) is None and reference.sdg(18) is None


def test_name_in_falls_back_to_english() -> None:
    sdg2 = reference.sdg(2)
    assert sdg2 is not None
    assert reference.name_in(sdg2, "pt-BR") == "Fome zero e agricultura sustentável"
    assert reference.name_in(sdg2, "FR") == "Faim « zéro »"
    assert reference.name_in(sdg2, "de") == "Zero hunger"
    assert reference.name_in(reference.country("SEN"), "zh") == "塞内加尔"  # type: ignore[arg-type]
    assert reference.name_in(reference.country("SEN"), "pt") == "Senegal"  # type: ignore[arg-type]


def test_countries_cover_iso_3166_alpha3() -> None:
    all_countries = reference.countries()
    codes = [c.code for c in all_countries]
    assert len(codes) == len(set(codes)) >= 249
    assert all(len(c) == 3 and c.isupper() for c in codes)
    assert reference.country("SEN") is not None and reference.country("sen") is None
    assert reference.country("XXX") is None and reference.country("") is None
    for code in ("TWN", "HKG", "PSE", "ESH", "ATA"):
        assert reference.country(code) is not None


def test_known_country_facts() -> None:
    mwi, kir, bra, deu, btn, sen = (reference.country(c) for c in ("MWI", "KIR", "BRA", "DEU", "BTN", "SEN"))
    assert mwi and mwi.ldc and mwi.lldc and not mwi.sids
    assert kir and kir.ldc and kir.sids and not kir.lldc
    assert bra and bra.global_south and not bra.ldc
    assert deu and not deu.global_south and not deu.ldc
    assert btn and not btn.ldc and btn.lldc, "Bhutan graduated from the LDC category on 13 December 2023"
    assert sen and sen.region == "Africa" and sen.subregion == "Sub-Saharan Africa"
    assert sen.intermediate_region == "Western Africa"
    stp = reference.country("STP")
    assert stp and not stp.ldc and stp.sids, "Sao Tome and Principe graduated on 13 December 2024"
    assert reference.country("CHN").global_south and reference.country("IND").global_south  # type: ignore[union-attr]
    for north in ("USA", "JPN", "KOR", "ISR", "AUS", "NZL", "RUS", "FRA", "CYP"):
        assert not reference.country(north).global_south, north  # type: ignore[union-attr]
    for south in ("MDA", "COD", "PRI", "COK", "TUR", "MEX"):
        assert reference.country(south).global_south, south  # type: ignore[union-attr]


def test_group_sizes_match_un_lists() -> None:
    all_countries = reference.countries()
    assert sum(c.ldc for c in all_countries) == 44
    assert sum(c.lldc for c in all_countries) == 32
    assert sum(c.sids for c in all_countries) == 58
    # Every LDC and LLDC is a developing country, so the global_south rule must include them.
    assert all(c.global_south for c in all_countries if c.ldc or c.lldc)


def test_country_groups_and_region_members() -> None:
    assert reference.country_groups("KIR") == {"LDC", "SIDS"}
    assert reference.country_groups("MWI") == {"LDC", "LLDC"}
    assert reference.country_groups("BRA") == set()
    assert reference.country_groups("NOPE") == set()
    africa = reference.region_members("Africa")
    assert {"SEN", "MWI", "EGY", "ZAF"} <= africa and "FRA" not in africa
    assert "SEN" in reference.region_members("western africa")
    lac = reference.region_members("Latin America and the Caribbean")
    assert {"BRA", "JAM", "PER"} <= lac and "USA" not in lac
    assert reference.region_members("LDC") == {c.code for c in reference.countries() if c.ldc}
    assert "DEU" not in reference.region_members("Global South") and "BRA" in reference.region_members("GLOBAL_SOUTH")
    assert reference.region_members("Atlantis") == set()


def test_loaded_models_are_cached_and_frozen() -> None:
    assert reference.country("SEN") is reference.country("SEN")
    with pytest.raises(ValidationError):
        reference.country("SEN").ldc = False  # type: ignore[misc,union-attr]
    # Callers get fresh lists, so mutating one cannot corrupt the cache.
    reference.sectors().clear()
    assert len(reference.sectors()) == 26


def test_country_groups_csv_parses_and_names_only_known_iso3() -> None:
    text = (REF_DIR / "country_groups.csv").read_text(encoding="utf-8")
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert any("SOURCE" in ln for ln in header) and any("DATE" in ln for ln in header)
    groups = build_countries.read_groups(REF_DIR / "country_groups.csv")
    rows = list(csv.DictReader(ln for ln in text.splitlines() if ln and not ln.startswith("#")))
    assert rows and {r["group"] for r in rows} == {"LDC", "LLDC", "SIDS"}
    assert len(rows) == len({(r["iso3"], r["group"]) for r in rows}), "duplicate (country, group) rows"
    for code in groups:
        assert reference.country(code) is not None, f"{code} is not an ISO3 code in countries.json"
    # countries.json flags are exactly the CSV's memberships.
    for c in reference.countries():
        assert reference.country_groups(c.code) == groups.get(c.code, set()), c.code


def test_countries_json_records_its_sources_and_rule() -> None:
    doc = json.loads((REF_DIR / "countries.json").read_text(encoding="utf-8"))
    assert doc["global_south_rule"] == build_countries.GLOBAL_SOUTH_RULE
    assert {"iso3166", "m49_regions_and_names", "ldc_lldc_sids", "g77_and_unctad_developing"} <= set(doc["sources"])
