"""Words the pages show that come from data, not templates (regions, states, reasons), marked for
extraction so the message catalogs translate them. `N_` marks; the page's gettext translates."""

from __future__ import annotations

from typing import Any


def N_(message: str) -> str:
    return message


REGIONS = [N_("Africa"), N_("Americas"), N_("Asia"), N_("Europe"), N_("Oceania")]
SUBREGIONS = [
    N_("Australia and New Zealand"), N_("Central Asia"), N_("Eastern Asia"), N_("Eastern Europe"),
    N_("Latin America and the Caribbean"), N_("Melanesia"), N_("Micronesia"), N_("Northern Africa"),
    N_("Northern America"), N_("Northern Europe"), N_("Polynesia"), N_("South-eastern Asia"), N_("Southern Asia"),
    N_("Southern Europe"), N_("Sub-Saharan Africa"), N_("Western Asia"), N_("Western Europe"),
    N_("Caribbean"), N_("Central America"), N_("Eastern Africa"), N_("Middle Africa"), N_("South America"),
    N_("Southern Africa"), N_("Western Africa"),
]
GROUPS = {"LDC": N_("Least developed countries (LDC)"), "LLDC": N_("Landlocked developing countries (LLDC)"), "SIDS": N_("Small island developing States (SIDS)")}

STATUSES = {
    "proposed": N_("proposed"), "approved": N_("approved"), "rejected": N_("rejected"), "retracted": N_("retracted"),
    "draft": N_("draft"), "open": N_("open"), "matched": N_("matched"), "closed": N_("closed"), "withdrawn": N_("withdrawn"),
}
LIFECYCLE = {
    "interested": N_("interested"), "not_interested": N_("not interested"), "agreement_reached": N_("agreement reached"),
    "in_progress": N_("in progress"), "completed": N_("completed"), "declined": N_("declined"),
}
NOTIFICATIONS = {
    "match_proposed": N_("New match proposed"), "match_approved": N_("Introduction approved"), "match_rejected": N_("Match not retained"),
    "match_lifecycle": N_("Partnership update"), "expiry_reminder": N_("Your item expires soon"),
}
COMPONENTS = {
    "semantic": N_("meaning of the texts"), "text": N_("text"), "lexical": N_("shared wording"), "sectors": N_("sectors"),
    "sector": N_("sectors"), "modalities": N_("modalities"), "modality": N_("modalities"), "sdgs": N_("SDGs"),
    "sdg": N_("SDGs"), "language": N_("language"), "geography": N_("geography"), "south_south": N_("South-South"),
    "priority": N_("priority country"), "triangular": N_("triangular"),
}

#: Reason codes of match explanations (services/matcher/scoring/REASONS.md) → template in the page language.
REASONS = {
    "semantic_similarity": N_("meaning of the texts: {similarity:.0%} similar (cosine {cosine:.3f})"),
    "cross_language": N_("across languages ({need_language}→{offer_language})"),
    "shared_wording": N_("shared wording: {similarity:.0%}"),
    "same_sector": N_("same sector: {sectors}"),
    "adjacent_sector": N_("adjacent sector: {pairs}"),
    "no_common_sector": N_("no common or adjacent sector"),
    "same_modality": N_("modality fits: {modalities}"),
    "compatible_modality": N_("modality partly fits ({share:.0%})"),
    "modalities_differ": N_("modalities differ"),
    "common_sdgs": N_("SDGs in common: {sdgs}"),
    "codes_unconfirmed": N_("declared codes count for {credit:.0%} only: the texts do not confirm them"),
    "broad_offer": N_("the offer claims many codes beyond this need ({unmatched} of {claimed}): breadth is discounted"),
    "south_south": N_("South-South: provider in the Global South ({country})"),
    "triangular": N_("triangular: partners {partners}"),
    "priority_country": N_("priority country: {country} is an LDC, LLDC or SIDS"),
    "excluded_not_open": N_("{side} is not open (status {status})"),
    "excluded_expired": N_("{side} expired on {date}"),
    "excluded_same_org": N_("need and offer belong to the same organization"),
    "excluded_no_delivery": N_("the offer does not deliver to {country} (only {delivery})"),
    "excluded_no_common_language": N_("no common working language ({need_languages} vs {offer_languages}) and no interpretation accepted"),
}


def _shown(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ", ".join("~".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v) for v in value)
    return value


SIDES = {"need": N_("the need"), "offer": N_("the offer")}


def localized_params(params: dict[str, Any], lang: str, gettext: Any) -> dict[str, Any]:
    """Reason parameters as a reader of `lang` should see them: taxonomy codes by their names in that
    language (REASONS.md: translate codes with the taxonomy's labels), countries by name."""
    from ssmatch import reference

    def sector(code: Any) -> str:
        entry = reference.sector(str(code))
        return reference.name_in(entry, lang) if entry else str(code)

    def modality(code: Any) -> str:
        entry = reference.modality(str(code))
        return reference.name_in(entry, lang) if entry else str(code)

    def country(code: Any) -> str:
        entry = reference.country(str(code))
        return reference.name_in(entry, lang) if entry else gettext(str(code)) if str(code) else ""

    out: dict[str, Any] = {}
    for key, value in params.items():
        if key == "sectors" and isinstance(value, list):
            out[key] = ", ".join(sector(v) for v in value)
        elif key == "pairs" and isinstance(value, list):
            out[key] = ", ".join(" ~ ".join(sector(x) for x in pair) if isinstance(pair, (list, tuple)) else sector(pair) for pair in value)
        elif key == "modalities" and isinstance(value, list):
            out[key] = ", ".join(modality(v) for v in value)
        elif key in ("country",) and isinstance(value, str):
            out[key] = country(value)
        elif key in ("partners", "delivery") and isinstance(value, list):
            out[key] = ", ".join(country(v) for v in value)
        elif key == "side" and value in SIDES:
            out[key] = gettext(SIDES[value])
        else:
            out[key] = _shown(value)
    return out


def reason_lines(explanation: dict[str, Any], gettext: Any, lang: str = "en") -> list[str]:
    """The explanation's reasons in the page language: each structured code through the catalog, the
    English text where the code is unknown (or its parameters do not fit the template)."""
    texts = [str(t) for t in (explanation.get("reasons") or [])]
    codes = explanation.get("reason_codes") or []
    if not codes:
        return texts
    out = []
    for i, entry in enumerate(codes):
        fallback = texts[i] if i < len(texts) else ""
        code = entry.get("code") if isinstance(entry, dict) else None
        template = REASONS.get(code or "")
        if template is None:
            out.append(fallback or str(code))
            continue
        try:
            params = localized_params(dict(entry.get("params") or {}), lang, gettext)
            out.append(gettext(template).format(**params))
        except (KeyError, ValueError, IndexError, TypeError, AttributeError):
            out.append(fallback or str(code))
    return out


def component_bars(explanation: dict[str, Any]) -> list[tuple[str, float]]:
    """(component, share) pairs, largest first; shares are clipped to [0, 1]."""
    comps = explanation.get("components") or {}
    bars = []
    for name, value in comps.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        bars.append((str(name), max(0.0, min(1.0, v))))
    return sorted(bars, key=lambda b: -b[1])

