"""The broker queue, pure: what a match is filtered by (its facets) and the paging cursor.

The matcher's proposal names only the pair; the queue's filters (SDG, sector, modality, region, UN
group, language pair) are facets of the need and the offer. They are copied onto the match document
once (`facets_v`), so every filter is an indexed equality on the match itself, never a join or a scan.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.catalog.domain.errors import Invalid
from ssmatch import reference

FACETS_VERSION = 1


def regions_of(country_code: str | None) -> list[str]:
    """UN M49 region, sub-region and intermediate region of a country, lower-cased for equality filters."""
    country = reference.country(country_code or "")
    if country is None:
        return []
    return sorted({n.lower() for n in (country.region, country.subregion, country.intermediate_region) if n})


#: the item fields `match_facets` reads (a projection for the item lookups)
FACET_FIELDS = {"sdgs": 1, "sectors": 1, "modalities": 1, "languages": 1, "country": 1, "created_at": 1, "gender_responsive": 1}


def match_facets(need: Mapping[str, Any] | None, offer: Mapping[str, Any] | None) -> dict[str, Any]:
    """Facets of a match: SDGs, sectors and modalities of either side; the need's country, regions;
    the UN groups of either side's country; each side's languages; and when each side was posted."""
    need, offer = need or {}, offer or {}
    need_country, offer_country = need.get("country"), offer.get("country")
    groups = reference.country_groups(need_country or "") | reference.country_groups(offer_country or "")
    return {
        "sdgs": sorted(set(need.get("sdgs", [])) | set(offer.get("sdgs", []))),
        "sectors": sorted(set(need.get("sectors", [])) | set(offer.get("sectors", []))),
        "modalities": sorted(set(need.get("modalities", [])) | set(offer.get("modalities", []))),
        "need_country": need_country,
        "offer_country": offer_country,
        "regions": regions_of(need_country),
        "groups": sorted(groups),
        "need_languages": list(need.get("languages", [])),
        "offer_languages": list(offer.get("languages", [])),
        "need_created_at": need.get("created_at"),
        "offer_created_at": offer.get("created_at"),
        "gender_responsive": bool(need.get("gender_responsive") or offer.get("gender_responsive")),
        "facets_v": FACETS_VERSION,
    }


def encode_cursor(sort: str, key: Any, match_id: str) -> str:
    """An opaque cursor: the last row's sort key and id (keyset paging, no offsets)."""
    value = key.isoformat() if isinstance(key, datetime) else key
    raw = json.dumps([sort, value, match_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, str]:
    bad = Invalid("cursor is not valid", details=[{"path": "$.cursor", "in": "query", "message": "not a cursor of this list"}])
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, value, match_id = json.loads(raw)
    except Exception as exc:
        raise bad from exc
    if kind != sort or not isinstance(match_id, str) or len(match_id) > 130:
        raise bad
    if sort == "score":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise bad
        return float(value), match_id
    try:
        return datetime.fromisoformat(value), match_id
    except (TypeError, ValueError) as exc:
        raise bad from exc
