"""Structured reasons: a stable code, its parameters, and the English sentence made from them.

The explanation of a score carries both forms side by side (`reasons`: English sentences,
`reason_codes`: `{"code", "params"}`), one for one and in the same order, so clients can render
reasons in their own language from REASONS.md without parsing English. The English text is
rendered from the same template table, so the two forms cannot drift apart.

Rendering rules (also in REASONS.md): `{name}` is the parameter as is; `{name:.0%}` a share in
[0, 1] as a percentage; `{name:.3f}` a number with three decimals; a list is joined with ", "
(a list of pairs as "a~b").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# code -> English template. Codes are stable: add new ones, never rename or reuse one.
TEMPLATES: dict[str, str] = {
    # what the texts say
    "semantic_similarity": "meaning of the texts: {similarity:.0%} similar (cosine {cosine:.3f})",
    "cross_language": "across languages ({need_language}→{offer_language})",
    "shared_wording": "shared wording: {similarity:.0%}",
    # codes the two sides declare
    "same_sector": "same sector: {sectors}",
    "adjacent_sector": "adjacent sector: {pairs}",
    "no_common_sector": "no common or adjacent sector",
    "same_modality": "modality fits: {modalities}",
    "compatible_modality": "modality partly fits ({share:.0%})",
    "modalities_differ": "modalities differ",
    "common_sdgs": "SDGs in common: {sdgs}",
    "codes_unconfirmed": "declared codes count for {credit:.0%} only: the texts do not confirm them",
    "broad_offer": "the offer claims many codes beyond this need ({unmatched} of {claimed}): breadth is discounted",
    # who and where
    "south_south": "South-South: provider in the Global South ({country})",
    "triangular": "triangular: partners {partners}",
    "priority_country": "priority country: {country} is an LDC, LLDC or SIDS",
    # hard filters (the pair is excluded)
    "excluded_not_open": "{side} is not open (status {status})",
    "excluded_expired": "{side} expired on {date}",
    "excluded_same_org": "need and offer belong to the same organization",
    "excluded_no_delivery": "the offer does not deliver to {country} (only {delivery})",
    "excluded_no_common_language": "no common working language ({need_languages} vs {offer_languages}) and no interpretation accepted",
}


def _shown(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ", ".join("~".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v) for v in value)
    return value


@dataclass(frozen=True)
class Reason:
    """One reason of a score: `code` names it, `params` fill its template (JSON values only)."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in TEMPLATES:
            raise KeyError(f"unknown reason code {self.code!r}: add it to TEMPLATES and REASONS.md")

    def text(self) -> str:
        return TEMPLATES[self.code].format(**{k: _shown(v) for k, v in self.params.items()})

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "params": dict(self.params)}
