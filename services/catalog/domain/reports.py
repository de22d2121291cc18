"""The reports summary (`GET /v1/reports/summary`), computed purely from rows of needs, offers and matches.

The JSON shape is stable (the dashboard charts it); every key is always present:

    totals        {needs, offers, matches, partnerships}
    by_sdg        [{sdg, needs, offers, matches, partnerships}]           one row per SDG 1..17
    by_region     [{region, needs, offers, matches, partnerships}]        UN M49 regions (Africa, Americas, Asia, Europe, Oceania)
    by_sector     [{sector, needs, offers, matches, partnerships}]        one row per sector code
    funnel        {posted, matched, approved, agreement, completed}       needs: posted; with ≥1 match; ≥1 approved
                                                                          match; ≥1 partnership; ≥1 completed one
    shares        {base, count, LDC, LLDC, SIDS, gender_responsive}       of the matches (base="matches"), 0..1, null when none
    median_days   {posting_to_first_match, posting_to_introduction}       over needs that got there, null when none
    outcomes      {completed, people_trained, beneficiaries, countries_reached, countries,
                   resources_mobilised: [{currency, amount}], gender_responsive, gender_responsive_share}
    time_series   [{month: "YYYY-MM", needs, offers, matches, approved, partnerships, completed}]  oldest first

Needs and offers are the published ones (not drafts, not withdrawn); "matches" are every proposal not retracted; a "partnership" is an approved match whose parties
reached an agreement (agreement_reached, in_progress or completed). Regions: a need's and an offer's
own country; a match's need country.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from services.catalog.domain.matches import PARTNERSHIP
from ssmatch import reference

REGIONS = ("Africa", "Americas", "Asia", "Europe", "Oceania")
GROUPS = ("LDC", "LLDC", "SIDS")


def _region(country_code: str | None) -> str | None:
    country = reference.country(country_code or "")
    return country.region if country else None


def _month(ts: datetime | None) -> str | None:
    return ts.strftime("%Y-%m") if ts else None


def _aware(ts: Any) -> datetime | None:
    if not isinstance(ts, datetime):
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _median_days(deltas: list[float]) -> float | None:
    return round(statistics.median(deltas) / 86400, 2) if deltas else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _step_time(match: Mapping[str, Any], events: Iterable[str]) -> datetime | None:
    wanted = set(events)
    for step in match.get("lifecycle_history") or []:
        if step.get("event") in wanted:
            return _aware(step.get("at"))
    return None


def summarize(needs: list[Mapping[str, Any]], offers: list[Mapping[str, Any]], matches: list[Mapping[str, Any]],
              filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every figure of the summary from already-filtered rows (see the module docstring for the shape)."""
    live = [m for m in matches if m.get("status") != "retracted"]
    partnerships = [m for m in live if m.get("status") == "approved" and m.get("lifecycle") in PARTNERSHIP]
    completed = [m for m in live if m.get("status") == "approved" and m.get("lifecycle") == "completed"]

    by_sdg: dict[int, Counter[str]] = defaultdict(Counter)
    by_region: dict[str, Counter[str]] = defaultdict(Counter)
    by_sector: dict[str, Counter[str]] = defaultdict(Counter)
    for label, rows in (("needs", needs), ("offers", offers)):
        for row in rows:
            for sdg in set(row.get("sdgs") or []):
                by_sdg[sdg][label] += 1
            for sector in set(row.get("sectors") or []):
                by_sector[sector][label] += 1
            region = _region(row.get("country"))
            if region:
                by_region[region][label] += 1
    for label, rows in (("matches", live), ("partnerships", partnerships)):
        for row in rows:
            for sdg in set(row.get("sdgs") or []):
                by_sdg[sdg][label] += 1
            for sector in set(row.get("sectors") or []):
                by_sector[sector][label] += 1
            region = _region(row.get("need_country"))
            if region:
                by_region[region][label] += 1

    def row_of(key: str, value: Any, counts: Counter[str]) -> dict[str, Any]:
        return {key: value, "needs": counts["needs"], "offers": counts["offers"], "matches": counts["matches"], "partnerships": counts["partnerships"]}

    # funnel and medians, need by need
    posted = [n for n in needs if n.get("status") != "draft"]
    first_match: dict[str, datetime] = {}
    first_intro: dict[str, datetime] = {}
    approved_needs, agreement_needs, completed_needs, matched_needs = set(), set(), set(), set()
    for m in matches:
        need_id = str(m.get("need_id"))
        created = _aware(m.get("created_at")) or _aware(m.get("proposed_at"))
        if created and (need_id not in first_match or created < first_match[need_id]):
            first_match[need_id] = created
        if m.get("status") == "retracted":
            continue
        matched_needs.add(need_id)
        if m.get("status") == "approved":
            approved_needs.add(need_id)
            decided = _aware(m.get("decided_at"))
            if decided and (need_id not in first_intro or decided < first_intro[need_id]):
                first_intro[need_id] = decided
            if m.get("lifecycle") in PARTNERSHIP:
                agreement_needs.add(need_id)
            if m.get("lifecycle") == "completed":
                completed_needs.add(need_id)
    posted_ids = {n["_id"] for n in posted}
    to_match, to_intro = [], []
    for n in posted:
        created = _aware(n.get("created_at"))
        if created is None:
            continue
        if n["_id"] in first_match:
            to_match.append(max(0.0, (first_match[n["_id"]] - created).total_seconds()))
        if n["_id"] in first_intro:
            to_intro.append(max(0.0, (first_intro[n["_id"]] - created).total_seconds()))

    group_counts = Counter(g for m in live for g in set(m.get("groups") or []) if g in GROUPS)
    gender = sum(1 for m in live if m.get("gender_responsive"))

    people = beneficiaries = gender_outcomes = 0
    countries: set[str] = set()
    money: dict[str, float] = {}
    for m in completed:
        outcome = m.get("outcome") or {}
        people += int(outcome.get("people_trained") or 0)
        beneficiaries += int(outcome.get("beneficiaries") or 0)
        countries.update(outcome.get("countries") or [])
        resources = outcome.get("resources_mobilised") or None
        if resources:
            currency = resources.get("currency") or "USD"
            money[currency] = money.get(currency, 0.0) + float(resources.get("amount") or 0)
        gender_outcomes += bool(outcome.get("gender_responsive"))

    partnership_ids = {m.get("_id") for m in partnerships}
    completed_ids = {m.get("_id") for m in completed}
    series: dict[str, Counter[str]] = defaultdict(Counter)
    for label, rows in (("needs", needs), ("offers", offers)):
        for row in rows:
            month = _month(_aware(row.get("created_at")))
            if month:
                series[month][label] += 1
    for m in live:
        for label, ts in (
            ("matches", _aware(m.get("created_at")) or _aware(m.get("proposed_at"))),
            ("approved", _aware(m.get("decided_at")) if m.get("status") == "approved" else None),
            ("partnerships", _step_time(m, ["agreement_reached"]) or _step_time(m, PARTNERSHIP) if m.get("_id") in partnership_ids else None),
            ("completed", _step_time(m, ["completed"]) if m.get("_id") in completed_ids else None),
        ):
            month = _month(ts)
            if month:
                series[month][label] += 1
    series_keys = ("needs", "offers", "matches", "approved", "partnerships", "completed")

    return {
        "filters": {k: v for k, v in (filters or {}).items() if v is not None},
        "generated_at": datetime.now(UTC).isoformat(),
        "totals": {"needs": len(needs), "offers": len(offers), "matches": len(live), "partnerships": len(partnerships)},
        "by_sdg": [row_of("sdg", sdg, by_sdg[sdg]) for sdg in range(1, 18)],
        "by_region": [row_of("region", region, by_region[region]) for region in REGIONS],
        "by_sector": [row_of("sector", s.code, by_sector[s.code]) for s in reference.sectors()],
        "funnel": {
            "posted": len(posted),
            "matched": len(matched_needs & posted_ids),
            "approved": len(approved_needs & posted_ids),
            "agreement": len(agreement_needs & posted_ids),
            "completed": len(completed_needs & posted_ids),
        },
        "shares": {
            "base": "matches",
            "count": len(live),
            **{g: _share(group_counts[g], len(live)) for g in GROUPS},
            "gender_responsive": _share(gender, len(live)),
        },
        "median_days": {"posting_to_first_match": _median_days(to_match), "posting_to_introduction": _median_days(to_intro)},
        "outcomes": {
            "completed": len(completed),
            "people_trained": people,
            "beneficiaries": beneficiaries,
            "countries_reached": len(countries),
            "countries": sorted(countries),
            "resources_mobilised": [{"currency": c, "amount": round(a, 2)} for c, a in sorted(money.items())],
            "gender_responsive": gender_outcomes,
            "gender_responsive_share": _share(gender_outcomes, len(completed)),
        },
        "time_series": [{"month": month, **{k: series[month][k] for k in series_keys}} for month in sorted(series)],
    }
