"""The workspace in a real browser: sign-in, the broker's queue and decisions, the parties' side,
keyboard-only and no-JavaScript use, languages, escaping, accessibility and page weight."""

from __future__ import annotations

import csv
import io
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.helpers import (
    PAGE_BUDGET,
    Workspace,
    axe_violations,
    page_weight,
    poll,
    screenshot,
    sign_in,
)

pytestmark = pytest.mark.browser


def need_body(title: str, country: str, **kw: Any) -> dict[str, Any]:
    return {"title": title, "description": "Le ministère cherche un appui pour les cantines scolaires.", "sdgs": [2, 4],
            "sectors": ["food_security"], "modalities": ["capacity_development"], "languages": ["fr"], "country": country, **kw}


def offer_body(title: str, **kw: Any) -> dict[str, Any]:
    return {"title": title, "description": "Ten years of school feeding experience.", "sdgs": [2], "sectors": ["food_security"],
            "modalities": ["capacity_development"], "languages": ["en", "fr"], **kw}


def parties(ws: Workspace, country: str) -> dict[str, Any]:
    office_id, office = ws.org("country_office", country)
    provider_id, provider = ws.org("solution_provider", "BRA")
    _, broker = ws.org("broker", "USA")
    return {"office": office, "provider": provider, "broker": broker, "office_id": office_id, "provider_id": provider_id}


def proposals(ws: Workspace, p: dict[str, Any], country: str, scores: list[float]) -> list[str]:
    offer = ws.post(p["provider"], "offer", offer_body(f"Offer {uuid.uuid4().hex[:6]}"))
    return [ws.propose(ws.post(p["office"], "need", need_body(f"Need {i} {uuid.uuid4().hex[:6]}", country)), offer, s) for i, s in enumerate(scores)]


def match_status(ws: Workspace, match_id: str) -> dict[str, Any]:
    r = ws.http.get(f"/v1/matches/{match_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_entry_names_its_language_and_sign_in_sets_a_safe_session(workspace: Workspace, new_page: Any) -> None:
    page = new_page("fr-FR")
    page.goto("/ui/")
    assert page.get_attribute("html", "lang") == "fr"
    assert page.locator("h1").inner_text() == "Connexion"
    assert not axe_violations(page)
    page.click("a[hreflang=es]")
    assert page.get_attribute("html", "lang") == "es"
    page.fill("#token", "ssm_not-a-token")
    page.click("form[action='/ui/signin'] button[type=submit]")
    assert page.locator(".error").is_visible()
    _, token = workspace.org("broker", "USA")
    sign_in(page, token)
    assert page.get_attribute("html", "lang") == "es"  # the choice outlives the Accept-Language
    session = next(c for c in page.context.cookies() if c["name"] == "ssm_session")
    assert session["httpOnly"] and session["sameSite"] == "Lax" and token not in session["value"]
    nav = page.locator("header nav").first.inner_text()
    assert "Cola" in nav and "Panel" in nav and "Publicar" not in nav  # broker navigation, in Spanish
    # a form posted without the session's CSRF token is refused
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = httpx.post(workspace.url + "/ui/signout", data={"csrf": "forged"}, cookies=cookies)
    assert forged.status_code == 403
    page.click("form.signout button")
    assert page.locator("#token").is_visible()


def test_broker_filters_opens_approves_and_both_parties_respond(workspace: Workspace, new_page: Any) -> None:
    p = parties(workspace, "SEN")  # Western Africa
    ids = proposals(workspace, p, "SEN", [0.91, 0.62, 0.35])
    broker = new_page("en")
    sign_in(broker, p["broker"], "/ui/queue")
    broker.click("details.card summary")
    broker.select_option("select[name=region]", "Western Africa")
    broker.fill("input[name=min_score]", "0.5")
    broker.click("#filters button[type=submit]")
    rows = broker.locator("#queue tbody tr")
    shown = [rows.nth(i).get_attribute("data-id") for i in range(rows.count())]
    assert ids[0] in shown and ids[1] in shown and ids[2] not in shown
    assert not axe_violations(broker)
    assert page_weight(broker, broker.url.split(workspace.url)[1]) <= PAGE_BUDGET
    screenshot(broker, "queue-en")
    # CSV export downloads the rows shown
    with broker.expect_download() as download:
        broker.click("a[href^='/ui/queue.csv']")
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert [r["match_id"] for r in exported] == shown

    broker.click(f"#queue tr[data-id='{ids[0]}'] a.open")
    assert broker.locator("#need-title").is_visible() and broker.locator("#offer-title").is_visible()
    assert broker.locator(".bars li").count() == 3
    assert "same sector: Food security" in broker.locator(".reasons").inner_text()  # codes by their taxonomy names
    assert not axe_violations(broker)
    screenshot(broker, "match-en")
    broker.fill("#note", "Good fit for the school feeding plan")
    broker.click("#approve")
    assert match_status(workspace, ids[0])["status"] == "approved"

    for token in (p["office"], p["provider"]):
        party = new_page("fr")
        sign_in(party, token, "/ui/inbox")

        def arrived(party: Any = party) -> bool:
            party.reload()
            return party.locator(f"#inbox a[href='/ui/matches/{ids[0]}']").count() > 0

        poll(arrived, timeout_s=30, interval_s=0.5)
        assert party.locator("#unread").count() == 1
        assert not axe_violations(party)
        party.click(f"#inbox a[href='/ui/matches/{ids[0]}']")
        assert "Good fit" in party.locator("#after").inner_text()
        party.check("#lifecycle input[value=interested]")  # each party responds
        party.fill("#lc-note", "Yes, let us talk")
        party.click("#lifecycle button[type=submit]")
        assert party.locator(".ok").is_visible()
    history = match_status(workspace, ids[0])["lifecycle_history"]
    assert [(h["event"], h.get("party")) for h in history] == [("interested", "need"), ("interested", "offer")]
    # the provider records the next step
    party.check("#lifecycle input[value=agreement_reached]")
    party.fill("#lc-note", "MoU signed")
    party.click("#lifecycle button[type=submit]")
    assert match_status(workspace, ids[0]).get("lifecycle") == "agreement_reached"


def test_provider_reports_an_outcome_and_the_dashboard_changes(workspace: Workspace, new_page: Any) -> None:
    p = parties(workspace, "MWI")
    [match_id] = proposals(workspace, p, "MWI", [0.8])
    assert workspace.http.post(f"/v1/matches/{match_id}/decision", json={"decision": "approve"}).status_code == 200
    assert workspace.http.post(f"/v1/matches/{match_id}/lifecycle", json={"event": "agreement_reached"}).status_code == 200
    broker = new_page("fr")
    sign_in(broker, p["broker"], "/ui/dashboard")
    assert broker.get_attribute("html", "lang") == "fr"

    def completed(page: Any) -> int:
        text = page.locator("#chart-funnel").inner_html()
        values = re.findall(r'class="num">([0-9]+)<', text)
        return int(values[-1])

    def people_trained(page: Any) -> int:
        with page.expect_download() as download:
            page.click("#chart-outcomes a[download]")
        rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
        return int(dict((r[0], r[1]) for r in rows[1:])["people_trained"])

    before = completed(broker)
    trained = people_trained(broker)
    screenshot(broker, "dashboard-fr")
    assert not axe_violations(broker)
    assert page_weight(broker, "/ui/dashboard") <= PAGE_BUDGET
    provider = new_page("en")
    sign_in(provider, p["provider"], f"/ui/matches/{match_id}")
    provider.check("#lifecycle input[value=completed]")
    provider.fill("#lc-note", "Delivered")
    provider.click("#lifecycle summary")
    provider.fill("#results", "40 canteen managers trained")
    provider.fill("#people_trained", "40")
    provider.click("#lifecycle button[type=submit]")
    assert match_status(workspace, match_id).get("lifecycle") == "completed"
    broker.reload()
    assert completed(broker) == before + 1
    assert people_trained(broker) == trained + 40
    assert match_status(workspace, match_id)["outcome"]["people_trained"] == 40
    with broker.expect_download() as download:
        broker.click("#chart-funnel a[download]")
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert rows[0][0] == "funnel" and dict((r[0], r[1]) for r in rows[1:])["completed"] == str(before + 1)
    broker.goto("/ui/dashboard?lang=en")
    screenshot(broker, "dashboard-en")


def test_keyboard_only_clears_three_matches(workspace: Workspace, new_page: Any) -> None:
    p = parties(workspace, "FJI")  # Melanesia
    ids = proposals(workspace, p, "FJI", [0.7, 0.6, 0.5])
    page = new_page("en")
    sign_in(page, p["broker"], "/ui/queue?region=Melanesia")
    assert "j" in page.locator("#shortcuts").inner_text()
    for decision in ("a", "r", "a"):
        page.keyboard.press("j")
        with page.expect_navigation():
            page.keyboard.press(decision)
    statuses = [match_status(workspace, i)["status"] for i in ids]
    assert statuses == ["approved", "rejected", "approved"]
    assert page.locator("#queue").count() == 0


def test_select_all_on_the_page_then_approve_them_in_one_go(workspace: Workspace, new_page: Any) -> None:
    p = parties(workspace, "MNG")  # Eastern Asia
    ids = proposals(workspace, p, "MNG", [0.71, 0.62, 0.53])
    page = new_page("es")
    sign_in(page, p["broker"], "/ui/queue?region=Eastern+Asia")
    assert page.get_attribute("#select-all", "aria-label") == "Seleccionar todo en esta página"
    page.check("#select-all")
    assert page.locator("#queue input[name=ids]:checked").count() == 3
    page.uncheck("#select-all")
    assert page.locator("#queue input[name=ids]:checked").count() == 0
    page.check("#select-all")
    with page.expect_navigation():
        page.click("#bulk button[value=approve]")
    assert [match_status(workspace, i)["status"] for i in ids] == ["approved"] * 3


def test_the_same_flow_without_javascript(workspace: Workspace, new_page: Any) -> None:
    p = parties(workspace, "BOL")  # South America
    ids = proposals(workspace, p, "BOL", [0.66, 0.55])
    broker = new_page("en", js=False)
    sign_in(broker, p["broker"], "/ui/queue")
    broker.click("details.card summary")
    broker.select_option("select[name=region]", "South America")
    broker.click("#filters button[type=submit]")
    broker.click(f"#queue tr[data-id='{ids[0]}'] a.open")
    broker.fill("#note", "no-js approve")
    broker.click("#approve")
    assert match_status(workspace, ids[0])["status"] == "approved"
    # bulk reject the other one from the queue
    broker.goto("/ui/queue?region=South+America")
    assert not broker.locator("#select-all").is_visible()  # needs JavaScript; rows are ticked one by one
    broker.check(f"#queue tr[data-id='{ids[1]}'] input[type=checkbox]")
    broker.click("#bulk button[value=reject]")
    assert match_status(workspace, ids[1])["status"] == "rejected"
    office = new_page("fr", js=False)
    sign_in(office, p["office"], f"/ui/matches/{ids[0]}")
    office.check("#lifecycle input[value=not_interested]")  # respond
    office.fill("#lc-note", "Pas pour cette année")
    office.click("#lifecycle button[type=submit]")
    assert match_status(workspace, ids[0]).get("lifecycle") == "not_interested"
    office.goto("/ui/needs/new")  # post a need
    office.fill("#title", "Registre foncier numérique")
    office.fill("#description", "Numériser le cadastre des communes rurales.")
    office.check("input[name=sdgs][value='1']")
    office.check("input[name=sectors][value=agriculture]")
    office.check("input[name=modalities][value=capacity_development]")
    office.click("#item-form button[type=submit]")
    assert office.locator("#item-title").inner_text() == "Registre foncier numérique"
    # a form with an error comes back with the message and what was typed
    office.goto("/ui/needs/new")
    office.fill("#title", "Sans objectif")
    office.fill("#description", "Aucun ODD coché.")
    office.click("#item-form button[type=submit]")
    assert office.locator(".error").is_visible() and office.input_value("#title") == "Sans objectif"


def test_country_office_posts_a_need_in_french_and_sees_its_matches(workspace: Workspace, new_page: Any) -> None:
    p = parties(workspace, "NER")
    page = new_page("fr", width=360)
    sign_in(page, p["office"], "/ui/needs/new")
    assert page.get_attribute("html", "lang") == "fr"
    assert "Sécurité alimentaire" in page.locator("#item-form").inner_text()  # taxonomy names in French
    page.fill("#title", "<script>alert(1)</script> Cantines scolaires")
    page.fill("#description", "Appui à la conception d'un programme national d'alimentation scolaire.")
    page.check("input[name=sdgs][value='2']")
    page.fill("#sdg_targets", "2.1")
    page.check("input[name=sectors][value=food_security]")
    page.check("input[name=modalities][value=capacity_development]")
    assert not axe_violations(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(page, "need-form-fr")
    page.click("#item-form button[type=submit]")
    assert page.locator("#item-title").inner_text().startswith("<script>")  # shown as text, never run
    assert page.locator("#no-matches").is_visible()
    need_id = page.url.split("/ui/needs/")[1].split("?")[0]
    need = workspace.http.get(f"/v1/needs/{need_id}").json()
    assert need["sdg_targets"] == ["2.1"] and need["languages"] == ["fr"]
    offer = workspace.post(p["provider"], "offer", offer_body("Programme d'alimentation scolaire"))
    workspace.propose(need, offer, 0.77)
    page.reload()
    assert "Programme d'alimentation scolaire" in page.locator("#item-matches").inner_text()
    assert page_weight(page, f"/ui/needs/{need_id}") <= PAGE_BUDGET


def test_import_shows_progress_and_row_errors(workspace: Workspace, new_page: Any, tmp_path: Any) -> None:
    p = parties(workspace, "KEN")
    data = ("title,description,sdgs,sectors,modalities,languages\n"
            "Water points,Rural water supply,6,water_sanitation,capacity_development,en\n"
            "Bad row,No goals,,water_sanitation,capacity_development,en\n")
    path = tmp_path / "needs.csv"
    path.write_text(data, encoding="utf-8")
    page = new_page("en")
    sign_in(page, p["office"], "/ui/import")
    page.set_input_files("#file", str(path))
    page.click("#import-form button[type=submit]")
    page.locator("#row-errors").wait_for()
    assert page.locator("#progress").get_attribute("value") == "100"
    assert "3" in page.locator("#row-errors").inner_text()
    assert not axe_violations(page)


def test_an_office_searches_the_offers_before_posting(workspace: Workspace, new_page: Any) -> None:
    p = parties(workspace, "TCD")
    title = f"Formation des enseignants ruraux {uuid.uuid4().hex[:6]}"
    offer_id = workspace.post(p["provider"], "offer", offer_body(title))["id"]
    page = new_page("fr")
    sign_in(page, p["office"], "/ui/search")
    assert page.locator("nav a[href='/ui/search']").inner_text() == "Rechercher"
    page.fill("#q", "enseignants")
    with page.expect_navigation():
        page.click("#search-form button[type=submit]")
    results = page.locator("#results")
    assert title in results.inner_text() and "Mots trouvés : enseignants" in results.inner_text().replace("\u00a0", " ")
    assert page.locator(f"#results a[href='/ui/offers/{offer_id}']").count() == 1
    assert not axe_violations(page)
    page.goto("/ui/search?kind=offers&q=" + "zzzqqq")
    assert page.locator("#no-results").is_visible()
    refused = page.goto("/ui/search?q=a%00b")  # a control character: the error page, never a 500
    assert refused is not None and refused.status == 422 and page.get_attribute("html", "lang") == "fr"


def test_every_page_is_accessible_light_and_fits_a_small_screen(workspace: Workspace, new_page: Any) -> None:
    """axe-core finds no serious or critical violation, the first load stays under 100 KB compressed,
    and nothing is wider than a 360 px screen, on each page of each role (in Spanish here)."""
    p = parties(workspace, "HTI")
    [match_id] = proposals(workspace, p, "HTI", [0.58])
    need_id = match_id.split(".")[0]
    offer_id = match_id.split(".")[1]
    pages = {
        "office": ["/ui/", "/ui/needs", f"/ui/needs/{need_id}", f"/ui/needs/{need_id}/edit", "/ui/matches", f"/ui/matches/{match_id}", "/ui/import", "/ui/inbox"],
        "provider": ["/ui/", "/ui/offers", "/ui/offers/new", f"/ui/offers/{offer_id}", "/ui/search?kind=needs&q=cantines"],
        "broker": ["/ui/", "/ui/queue?status=proposed&group=LDC", f"/ui/matches/{match_id}", "/ui/dashboard", "/ui/needs/nope"],
    }
    weights = {}
    for role, paths in pages.items():
        page = new_page("es", width=360)
        sign_in(page, p[role])
        for path in paths:
            page.goto(path)
            assert page.get_attribute("html", "lang") == "es", path
            assert not axe_violations(page), path
            assert page.evaluate("document.documentElement.scrollWidth") <= 360, path
            weights[path] = page_weight(page, path)
    assert max(weights.values()) <= PAGE_BUDGET, weights


def test_a_claimed_match_shows_as_taken_to_another_broker(workspace: Workspace, new_page: Any) -> None:
    p = parties(workspace, "NPL")  # Southern Asia
    [match_id] = proposals(workspace, p, "NPL", [0.74])
    _, other_broker = workspace.org("broker", "CAN")
    first = new_page("en")
    sign_in(first, p["broker"], f"/ui/matches/{match_id}")
    assert first.locator("#decision").is_visible()  # opening the match holds it for this broker
    second = new_page("en")
    sign_in(second, other_broker, "/ui/queue?region=Southern+Asia")
    assert "taken by" in second.locator(f"#queue tr[data-id='{match_id}']").inner_text()
    second.click(f"#queue tr[data-id='{match_id}'] a.open")
    assert second.locator(".claimed").is_visible() and second.locator("#decision").count() == 0
    first.click("#release")  # the first broker lets go: the second may now take and decide it
    second.reload()
    assert second.locator("#decision").is_visible()
    first.goto(f"/ui/matches/{match_id}")
    assert first.locator(".claimed").is_visible()  # now held by the second broker
    second.click("#approve")
    assert match_status(workspace, match_id)["status"] == "approved"
