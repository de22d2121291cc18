"""Chart data for the dashboard: rows of (label, values) that the template draws as SVG bars and the
CSV export writes out. Pure functions over the reports summary (shape: services/catalog/domain/reports.py)."""

from __future__ import annotations

from typing import Any

SERIES = ("needs", "offers", "matches", "partnerships")


def _max(rows: list[tuple[str, list[Any]]]) -> float:
    return max([float(v or 0) for _, values in rows for v in values] or [0]) or 1


def by_dimension(summary: dict[str, Any], dimension: str, top: int = 30) -> dict[str, Any]:
    """`by_sdg` / `by_region` / `by_sector` rows: one per key that has any count, one value per series."""
    rows = []
    for entry in summary.get(f"by_{dimension}") or []:
        values = [int(entry.get(s) or 0) for s in SERIES]
        if any(values):
            rows.append((str(entry.get(dimension)), values))
    if dimension == "sector":
        rows.sort(key=lambda r: -sum(r[1]))
    rows = rows[:top]
    return {"series": list(SERIES), "rows": rows, "max": _max(rows)}


def funnel(summary: dict[str, Any]) -> dict[str, Any]:
    f = summary.get("funnel") or {}
    rows = [(s, [int(f.get(s) or 0)]) for s in ("posted", "matched", "approved", "agreement", "completed")]
    return {"series": ["needs"], "rows": rows, "max": _max(rows)}


def shares(summary: dict[str, Any]) -> dict[str, Any]:
    s = summary.get("shares") or {}
    rows = [(k, [s.get(k)]) for k in ("LDC", "LLDC", "SIDS", "gender_responsive")]
    return {"series": ["share"], "rows": rows, "max": 1}


def medians(summary: dict[str, Any]) -> dict[str, Any]:
    m = summary.get("median_days") or {}
    rows = [(k, [m.get(k)]) for k in ("posting_to_first_match", "posting_to_introduction")]
    return {"series": ["days"], "rows": rows, "max": _max(rows)}


def outcomes(summary: dict[str, Any]) -> dict[str, Any]:
    o = summary.get("outcomes") or {}
    rows: list[tuple[str, list[Any]]] = [(k, [o.get(k) or 0]) for k in ("completed", "people_trained", "beneficiaries", "countries_reached", "gender_responsive")]
    for money in o.get("resources_mobilised") or []:
        rows.append((f"resources_mobilised_{money.get('currency')}", [money.get("amount") or 0]))
    return {"series": ["value"], "rows": rows, "max": _max(rows)}


def over_time(summary: dict[str, Any]) -> dict[str, Any]:
    series = ["needs", "offers", "matches", "approved", "partnerships", "completed"]
    rows = [(str(e.get("month")), [int(e.get(s) or 0) for s in series]) for e in (summary.get("time_series") or [])][-24:]
    return {"series": series, "rows": rows, "max": _max(rows)}


CHARTS = {
    "funnel": funnel,
    "shares": shares,
    "medians": medians,
    "outcomes": outcomes,
    "sdg": lambda s: by_dimension(s, "sdg"),
    "region": lambda s: by_dimension(s, "region"),
    "sector": lambda s: by_dimension(s, "sector"),
    "over_time": over_time,
}
