"""Chart data for the dashboard: rows of (label, values) that the template draws as SVG bars and the
CSV export writes out. Pure functions over the reports summary."""

from __future__ import annotations

from typing import Any

SERIES = ("needs", "offers", "matches", "partnerships")


def by_dimension(summary: dict[str, Any], dimension: str, top: int = 17) -> dict[str, Any]:
    """`by_sdg` / `by_region` / `by_sector` as rows: one per key, one value per series, largest first."""
    table: dict[str, dict[str, int]] = summary.get(f"by_{dimension}", {}) or {}
    keys: set[str] = set()
    for series in table.values():
        keys.update(series)
    rows = [(k, [int((table.get(s) or {}).get(k, 0)) for s in SERIES]) for k in keys]
    if dimension == "sdg":
        rows.sort(key=lambda r: int(r[0]) if str(r[0]).isdigit() else 99)
    else:
        rows.sort(key=lambda r: (-sum(r[1]), r[0]))
    return {"series": list(SERIES), "rows": rows[:top], "max": max([max(v) for _, v in rows] or [0]) or 1}


def funnel(summary: dict[str, Any]) -> dict[str, Any]:
    f = summary.get("funnel", {}) or {}
    steps = ["posted", "matched", "approved", "agreement", "completed"]
    rows = [(s, [int(f.get(s, 0) or 0)]) for s in steps]
    return {"series": ["count"], "rows": rows, "max": max([v[0] for _, v in rows] or [0]) or 1}


def shares(summary: dict[str, Any]) -> dict[str, Any]:
    s = summary.get("shares", {}) or {}
    rows = [(k, [float(s.get(k, 0) or 0)]) for k in ("ldc_lldc_sids", "gender_responsive")]
    return {"series": ["share"], "rows": rows, "max": 1}


def medians(summary: dict[str, Any]) -> dict[str, Any]:
    m = summary.get("median_days", {}) or {}
    rows = [(k, [m.get(k)]) for k in ("to_first_match", "to_introduction")]
    return {"series": ["days"], "rows": rows, "max": max([v[0] or 0 for _, v in rows] or [0]) or 1}


def outcomes(summary: dict[str, Any]) -> dict[str, Any]:
    o = summary.get("outcomes", {}) or {}
    rows = [(k, [o.get(k, 0) or 0]) for k in ("reported", "people_trained", "beneficiaries", "countries_reached")]
    for currency, amount in sorted((o.get("resources_mobilised") or {}).items()):
        rows.append((f"resources_mobilised_{currency}", [amount]))
    return {"series": ["value"], "rows": rows, "max": max([float(v[0] or 0) for _, v in rows] or [0]) or 1}


def over_time(summary: dict[str, Any]) -> dict[str, Any]:
    t = summary.get("over_time", {}) or {}
    series = sorted(t)
    months = sorted({m for s in series for m in t[s]})[-24:]
    rows = [(m, [int(t[s].get(m, 0)) for s in series]) for m in months]
    return {"series": series, "rows": rows, "max": max([max(v) for _, v in rows] or [0]) or 1}


CHARTS = {
    "sdg": lambda s: by_dimension(s, "sdg"),
    "region": lambda s: by_dimension(s, "region"),
    "sector": lambda s: by_dimension(s, "sector", top=26),
    "funnel": funnel,
    "shares": shares,
    "medians": medians,
    "outcomes": outcomes,
    "over_time": over_time,
}
