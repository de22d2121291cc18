"""The use cases the pages call, over the catalog store (the same functions the JSON API uses where they
exist). Anything here that the catalog's service layer also offers should be replaced by a call to it."""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pymongo import ASCENDING, DESCENDING

from services.catalog.models import DecisionIn, LifecycleIn, NeedCreate, OfferCreate
from services.catalog.store import CatalogStore, decode_offset_cursor, encode_offset_cursor, record_lifecycle
from ssmatch import reference
from ssmatch.auth import Principal
from ssmatch.http import ApiError

QUEUE_FILTERS = ("sdg", "sector", "modality", "region", "group", "min_score", "max_score", "max_age_days", "language", "sort")


def _hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


async def org_of(store: CatalogStore, caller: Principal) -> dict[str, Any]:
    org = await store.get_org(caller.organization_id or "")
    if org is None:
        raise ApiError(403, "the organization of this token no longer exists")
    return org


async def post_item(store: CatalogStore, caller: Principal, kind: str, fields: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    """Validate and create a need/offer (ValidationError for the form to show)."""
    wanted = "seeker" if kind == "need" else "provider"
    if caller.role != wanted:
        raise ApiError(403, f"only a {'country office' if kind == 'need' else 'solution provider'} may post {kind}s")
    body = (NeedCreate if kind == "need" else OfferCreate).model_validate(fields)
    org = await org_of(store, caller)
    _, view, _ = await store.create_item(kind, caller, org, body, idempotency_key, _hash(body.model_dump(mode="json")))
    return view


async def edit_item(store: CatalogStore, caller: Principal, kind: str, item_id: str, patch: dict[str, Any], revision: int) -> dict[str, Any]:
    return await store.update_item(kind, item_id, caller, patch, revision)


async def withdraw_item(store: CatalogStore, caller: Principal, kind: str, item_id: str) -> dict[str, Any]:
    return await store.withdraw_item(kind, item_id, caller)


async def get_item(store: CatalogStore, caller: Principal, kind: str, item_id: str) -> dict[str, Any]:
    doc = await store.get_item(kind, item_id)
    if doc is None:
        raise ApiError(404, f"{kind} {item_id} not found")
    return doc


async def my_items(store: CatalogStore, caller: Principal, kind: str, limit: int = 100) -> list[dict[str, Any]]:
    docs, _ = await store.list_items(kind, {"organization_id": caller.organization_id}, limit, None)
    return docs


async def item_matches(store: CatalogStore, caller: Principal, kind: str, item_id: str) -> list[dict[str, Any]]:
    doc = await get_item(store, caller, kind, item_id)
    if not (caller.role in ("admin", "broker") or caller.organization_id == doc["organization_id"]):
        raise ApiError(403, f"only the {kind}'s owner, a broker or an admin may see its matches")
    return await store.list_matches({f"{kind}_id": item_id, "status": {"$ne": "retracted"}}, 50)


async def get_match(store: CatalogStore, caller: Principal, match_id: str) -> dict[str, Any]:
    doc = await store.get_match(match_id)
    if doc is None:
        raise ApiError(404, f"match {match_id} not found")
    if not (caller.role in ("admin", "broker") or caller.organization_id in (doc["need_organization_id"], doc["offer_organization_id"])):
        raise ApiError(403, "only the parties, a broker or an admin may see this match")
    return doc


async def my_matches(store: CatalogStore, caller: Principal, limit: int = 100) -> list[dict[str, Any]]:
    """Matches where the caller's organization is a party (proposed ones included)."""
    org = caller.organization_id
    query = {"$or": [{"need_organization_id": org}, {"offer_organization_id": org}], "status": {"$ne": "retracted"}}
    return await store.matches.find(query).sort([("score", DESCENDING), ("_id", ASCENDING)]).limit(limit).to_list(limit)


def _require_staff(caller: Principal) -> None:
    if caller.role not in ("broker", "admin"):
        raise ApiError(403, "only a broker or an admin may review matches")


async def list_queue(store: CatalogStore, caller: Principal, filters: dict[str, Any], limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of proposed matches with the queue filters; best score first (or oldest first)."""
    _require_staff(caller)
    query: dict[str, Any] = {"status": filters.get("status") or "proposed"}
    score: dict[str, float] = {}
    if filters.get("min_score") is not None:
        score["$gte"] = float(filters["min_score"])
    if filters.get("max_score") is not None:
        score["$lte"] = float(filters["max_score"])
    if score:
        query["score"] = score
    if filters.get("max_age_days"):
        query["proposed_at"] = {"$gte": datetime.now(UTC) - timedelta(days=int(filters["max_age_days"]))}
    need_query: dict[str, Any] = {}
    for key, field in (("sdg", "sdgs"), ("sector", "sectors"), ("modality", "modalities"), ("language", "languages")):
        if filters.get(key):
            need_query[field] = filters[key]
    countries: set[str] | None = None
    for key in ("region", "group"):
        if filters.get(key):
            members = reference.region_members(filters[key])
            countries = members if countries is None else countries & members
    if countries is not None:
        need_query["country"] = {"$in": sorted(countries)}
    if need_query:
        ids = [d["_id"] for d in await store.items["need"].find(need_query, {"_id": 1}).to_list(None)]
        query["need_id"] = {"$in": ids}
    offset = decode_offset_cursor(cursor) if cursor else 0
    order = [("proposed_at", ASCENDING), ("_id", ASCENDING)] if filters.get("sort") == "age" else [("score", DESCENDING), ("_id", ASCENDING)]
    docs = await store.matches.find(query).sort(order).skip(offset).limit(limit + 1).to_list(limit + 1)
    next_cursor = encode_offset_cursor(offset + limit) if len(docs) > limit else None
    return docs[:limit], next_cursor


async def decide(store: CatalogStore, caller: Principal, match_id: str, decision: str, note: str | None) -> dict[str, Any]:
    _require_staff(caller)
    return await store.decide(match_id, caller, DecisionIn(decision=decision, note=note or None))  # type: ignore[arg-type]


async def bulk_decide(store: CatalogStore, caller: Principal, decisions: list[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
    """Each decision applied or refused alone (≤ 50)."""
    _require_staff(caller)
    results = []
    for match_id, decision, note in decisions[:50]:
        try:
            saved = await decide(store, caller, match_id, decision, note)
            results.append({"match_id": match_id, "status": saved["status"], "error": None})
        except ApiError as exc:
            results.append({"match_id": match_id, "status": None, "error": exc.message if hasattr(exc, "message") else str(exc)})
    return results


def lifecycle_events() -> list[str]:
    """The lifecycle events the catalog accepts (from its model, so the pages follow the API)."""
    annotation = LifecycleIn.model_fields["event"].annotation
    return list(getattr(annotation, "__args__", ()))


def allowed_steps(match: dict[str, Any]) -> list[str]:
    """The lifecycle events that may follow the match's current state (all of them if the catalog does
    not say; it still refuses a wrong one with 409)."""
    events = lifecycle_events()
    if match.get("status") != "approved":
        return []
    try:
        from services.catalog.store import LIFECYCLE_NEXT
    except ImportError:
        return events
    allowed = LIFECYCLE_NEXT.get(match.get("lifecycle"), set())
    return [e for e in events if e in allowed]


def accepts_outcome() -> bool:
    return "outcome" in LifecycleIn.model_fields


async def record_step(store: CatalogStore, caller: Principal, match_id: str, event: str, note: str | None, outcome: dict[str, Any] | None = None) -> dict[str, Any]:
    await get_match(store, caller, match_id)
    data: dict[str, Any] = {"event": event, "note": note or None}
    if outcome is not None and accepts_outcome():
        data["outcome"] = outcome
    body = LifecycleIn.model_validate(data)
    return await record_lifecycle(store, match_id, caller, body)


# ---- reports -----------------------------------------------------------------------------------
def _region(code: str | None) -> str:
    c = reference.country(code or "")
    return (c.region if c and c.region else "—")


def _median_days(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _aware(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


PARTNERSHIP_STATES = {"agreement_reached", "in_progress", "completed"}


async def reports_summary(store: CatalogStore, caller: Principal) -> dict[str, Any]:
    """The figures of `GET /v1/reports/summary`, computed from needs, offers and matches."""
    _require_staff(caller)
    fields = {"sdgs": 1, "sectors": 1, "country": 1, "created_at": 1, "status": 1, "gender_responsive": 1}
    needs = {d["_id"]: d for d in await store.items["need"].find({"status": {"$ne": "withdrawn"}}, fields).to_list(None)}
    offers = {d["_id"]: d for d in await store.items["offer"].find({"status": {"$ne": "withdrawn"}}, fields).to_list(None)}
    matches = await store.matches.find({"status": {"$ne": "retracted"}}).to_list(None)
    by: dict[str, dict[str, Counter[str]]] = {dim: defaultdict(Counter) for dim in ("sdg", "region", "sector")}

    def count(series: str, doc: dict[str, Any]) -> None:
        for s in doc.get("sdgs", []):
            by["sdg"][series][str(s)] += 1
        for s in doc.get("sectors", []):
            by["sector"][series][s] += 1
        by["region"][series][_region(doc.get("country"))] += 1

    for d in needs.values():
        count("needs", d)
    for d in offers.values():
        count("offers", d)
    approved = [m for m in matches if m["status"] == "approved"]
    partnerships = [m for m in approved if m.get("lifecycle") in PARTNERSHIP_STATES]
    for series, group in (("matches", matches), ("partnerships", partnerships)):
        for m in group:
            need = needs.get(m["need_id"])
            if need:
                count(series, need)
    funnel = {
        "posted": len(needs),
        "matched": len({m["need_id"] for m in matches}),
        "approved": len(approved),
        "agreement": len(partnerships),
        "completed": sum(1 for m in approved if m.get("lifecycle") == "completed"),
    }

    def involves_group(m: dict[str, Any]) -> bool:
        need = needs.get(m["need_id"])
        return bool(need and reference.country_groups(need.get("country", "")))

    def gender(m: dict[str, Any]) -> bool:
        outcome = m.get("outcome") or {}
        need, offer = needs.get(m["need_id"]) or {}, offers.get(m["offer_id"]) or {}
        return bool(outcome.get("gender_responsive") or need.get("gender_responsive") or offer.get("gender_responsive"))

    base = approved or []
    first_match: dict[str, datetime] = {}
    to_intro: list[float] = []
    for m in matches:
        at = _aware(m.get("proposed_at"))
        if at and (m["need_id"] not in first_match or at < first_match[m["need_id"]]):
            first_match[m["need_id"]] = at
        need = needs.get(m["need_id"])
        decided = _aware(m.get("decided_at"))
        if m["status"] == "approved" and need and decided and _aware(need.get("created_at")):
            to_intro.append((decided - _aware(need["created_at"])).total_seconds() / 86400)  # type: ignore[operator]
    to_first = [
        (at - _aware(needs[n]["created_at"])).total_seconds() / 86400  # type: ignore[operator]
        for n, at in first_match.items() if n in needs and _aware(needs[n].get("created_at"))
    ]
    outcomes: dict[str, Any] = {"reported": 0, "people_trained": 0, "beneficiaries": 0, "countries_reached": 0, "resources_mobilised": {}}
    reached: set[str] = set()
    for m in approved:
        o = m.get("outcome")
        if not o:
            continue
        outcomes["reported"] += 1
        outcomes["people_trained"] += int(o.get("people_trained") or 0)
        outcomes["beneficiaries"] += int(o.get("beneficiaries") or 0)
        reached.update(o.get("countries") or [])
        money = o.get("resources_mobilised") or {}
        if money.get("amount"):
            cur = money.get("currency") or "USD"
            outcomes["resources_mobilised"][cur] = outcomes["resources_mobilised"].get(cur, 0) + float(money["amount"])
    outcomes["countries_reached"] = len(reached)
    months: dict[str, Counter[str]] = defaultdict(Counter)
    for d in needs.values():
        at = _aware(d.get("created_at"))
        if at:
            months["needs"][at.strftime("%Y-%m")] += 1
    for m in approved:
        at = _aware(m.get("decided_at"))
        if at:
            months["approved"][at.strftime("%Y-%m")] += 1
    return {
        "totals": {"needs": len(needs), "offers": len(offers), "matches": len(matches), "partnerships": len(partnerships)},
        "by_sdg": {k: dict(v) for k, v in by["sdg"].items()},
        "by_region": {k: dict(v) for k, v in by["region"].items()},
        "by_sector": {k: dict(v) for k, v in by["sector"].items()},
        "funnel": funnel,
        "shares": {
            "ldc_lldc_sids": round(sum(map(involves_group, base)) / len(base), 4) if base else 0.0,
            "gender_responsive": round(sum(map(gender, base)) / len(base), 4) if base else 0.0,
        },
        "median_days": {"to_first_match": _median_days(to_first), "to_introduction": _median_days(to_intro)},
        "outcomes": outcomes,
        "over_time": {k: dict(sorted(v.items())) for k, v in months.items()},
    }


def validation_messages(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, message) pairs for a form."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if not isinstance(p, int)) or "form"
        out.append((loc, str(err.get("msg", "invalid"))))
    return out
