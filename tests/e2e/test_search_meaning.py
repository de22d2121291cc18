"""Search by meaning across languages (issue 13), on the running stack: the catalog asks the matcher,
which embeds the query once with its multilingual model and ranks every open item's vector; the
catalog fuses that with its word index and says why each item was found."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e.test_flow import auth, make_org

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BASE = {"sdgs": [4], "modalities": ["capacity_development"]}
OFFERS = {
    "es_teachers": ("Formación de docentes de primaria", "Programa de formación continua para maestros de escuelas primarias en pedagogía activa y lectura.", "es", "education"),
    "ar_teachers": ("تدريب معلمي المدارس الابتدائية", "برنامج لتدريب المعلمين على أساليب التدريس الحديثة ومهارات القراءة.", "ar", "education"),
    "es_waste": ("Gestión de residuos sólidos urbanos", "Asistencia técnica para rellenos sanitarios y reciclaje municipal.", "es", "climate_environment"),
    "ar_desalination": ("تحلية مياه البحر", "خبرة في تصميم وتشغيل محطات تحلية المياه بالطاقة الشمسية.", "ar", "water_sanitation"),
    "en_solar": ("Solar mini-grids for rural electrification", "Design and operation of village mini-grids.", "en", "energy"),
}
NEEDS = {
    "zh_migration": ("建立移民统计数据库", "需要技术援助以建立国家移民统计系统。", "zh", "migration"),
    "en_migration": ("National migration statistics database", "Technical assistance to build a system of migration data.", "en", "migration"),
    "es_fisheries": ("Pesca artesanal sostenible", "Apoyo a cooperativas de pescadores.", "es", "fisheries_oceans"),
    "en_roads": ("Rural road maintenance", "Training of local contractors in labour-based road works.", "en", "infrastructure_transport"),
}


def post_all(catalog: httpx.Client, kind: str, token: str, specs: dict[str, tuple[str, str, str, str]]) -> dict[str, str]:
    out = {}
    for key, (title, description, lang, sector) in specs.items():
        r = catalog.post(f"/v1/{kind}s", json={**BASE, "title": title, "description": description, "languages": [lang], "sectors": [sector]}, headers=auth(token))
        assert r.status_code == 201, r.text
        out[r.json()["id"]] = key
    return out


def search_until(catalog: httpx.Client, kind: str, token: str, params: dict[str, Any], done: Any, bound_s: float = 90.0) -> dict[str, Any]:
    """Search until `done(page)` holds (the matcher embeds new items at ~8 texts/s), at most `bound_s`."""
    deadline = time.monotonic() + bound_s
    page: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = catalog.get(f"/v1/{kind}s", params={**params, "sort": "relevance"}, headers=auth(token))
        assert r.status_code == 200, r.text
        page = r.json()
        if done(page):
            return page
        time.sleep(0.3)
    raise AssertionError(f"search not settled within {bound_s}s: {page}")


def test_a_french_query_finds_a_spanish_and_an_arabic_offer_on_the_same_topic(catalog: httpx.Client) -> None:
    provider, token = make_org(catalog, "Teachers' colleges network", "solution_provider", "BRA")
    keys = post_all(catalog, "offer", token, OFFERS)

    def settled(page: dict[str, Any]) -> bool:
        return page["search"]["meaning"] == "used" and len(page["items"]) == len(OFFERS)

    page = search_until(catalog, "offer", token, {"q": "formation des enseignants du primaire", "organization_id": provider}, settled)
    ranked = [keys[i["id"]] for i in page["items"]]
    assert set(ranked[:2]) == {"es_teachers", "ar_teachers"}, ranked
    for item in page["items"][:2]:
        assert item["search"]["reasons"] == ["similar meaning"] and item["search"]["matched_words"] == []
        assert 0 < item["search"]["similarity"] <= 1
    # the matcher's filters hold: another sector leaves only the offers of that sector
    only = search_until(catalog, "offer", token, {"q": "formation des enseignants du primaire", "organization_id": provider, "sector": "energy"},
                        lambda p: p["search"]["meaning"] == "used")
    assert [keys[i["id"]] for i in only["items"]] == ["en_solar"]


def test_a_chinese_query_finds_chinese_items_by_substring_and_foreign_ones_by_meaning(catalog: httpx.Client) -> None:
    office, token = make_org(catalog, "Statistics office", "country_office", "NPL")
    keys = post_all(catalog, "need", token, NEEDS)

    def settled(page: dict[str, Any]) -> bool:
        return page["search"]["meaning"] == "used" and len(page["items"]) == len(NEEDS)

    page = search_until(catalog, "need", token, {"q": "移民统计数据", "organization_id": office}, settled)
    ranked = [keys[i["id"]] for i in page["items"]]
    why = {keys[i["id"]]: i["search"] for i in page["items"]}
    assert ranked[:2] == ["zh_migration", "en_migration"], ranked
    assert why["zh_migration"]["reasons"] == ["matched words", "similar meaning"]
    assert why["zh_migration"]["matched_words"] == ["移民统计数据"]  # a run inside 移民统计数据库, found as a substring
    assert why["en_migration"]["reasons"] == ["similar meaning"]
    # newest first, only the words count: the Chinese item alone
    words = catalog.get("/v1/needs", params={"q": "移民统计数据", "organization_id": office}, headers=auth(token)).json()
    assert [keys[i["id"]] for i in words["items"]] == ["zh_migration"]
