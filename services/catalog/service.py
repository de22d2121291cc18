"""The catalog's use cases: the one service layer under the JSON API (`api/`) and the web pages (`ui/`).

Every function takes the `Catalog` (the repositories), the calling `Principal` and typed inputs
(pydantic models from `services.catalog.models`, or plain ids), and returns plain dicts shaped like the
API's JSON (datetimes left as `datetime`; the edge serialises them). Refusals are `DomainError`s
(`services.catalog.domain.errors`): NotFound, Forbidden, Conflict, Invalid, PreconditionFailed,
PreconditionRequired; the API maps them to 404/403/409/422/412/428, the pages to messages.

Items
    post_item(c, p, "need"|"offer", NeedCreate|OfferCreate, idempotency_key=None) -> PostResult
    get_item(c, p, kind, item_id) -> dict                      drafts/withdrawn of others: NotFound
    edit_item(c, p, kind, item_id, patch: dict, if_match: str | None) -> dict
    withdraw_item(c, p, kind, item_id) -> dict
    list_items(c, p, kind, ItemListIn, credential=None) -> {"items": [...], "next_cursor": str | None[, "search": {...}]}
                                                               with q: served by the word index (and, sorted by
                                                               relevance, fused with the matcher's meaning search)
    item_matches(c, p, kind, item_id, status=None, limit=50) -> [match]
Organizations
    get_organization(c, p, org_id) -> dict                     `contact` null unless the caller may see it
Matches
    list_queue(c, p, QueuePageIn) -> {"items": [...], "next_cursor": str | None}   (broker/admin)
    get_match(c, p, match_id) -> dict
    claim(c, p, match_id) / release(c, p, match_id) -> {"match_id", "claimed_by", "claimed_until"}
    decide(c, p, match_id, DecisionIn) -> match
    decide_many(c, p, BulkDecisionsIn) -> [BulkResult]          each applied or refused alone
    record_step(c, p, match_id, LifecycleIn) -> match           any lifecycle step, checked
    respond(c, p, match_id, "interested"|"not_interested", note=None, party=None) -> match
    report_outcome(c, p, match_id, Outcome, note=None) -> match  (= the `completed` step with its outcome)
Reports
    reports_summary(c, p, QueueFilters) -> dict                 shape: services/catalog/domain/reports.py
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from services.catalog import org_events
from services.catalog.adapters.matches import MatchRepository
from services.catalog.adapters.meaning import MeaningClient, MeaningUnavailable
from services.catalog.adapters.word_index import DELETED, Entry, IndexUnavailable, WordIndex, passes
from services.catalog.domain import items as item_rules
from services.catalog.domain import matches as match_rules
from services.catalog.domain import search as search_rules
from services.catalog.domain.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from services.catalog.domain.reports import summarize
from services.catalog.models import (
    BulkDecisionsIn,
    DecisionIn,
    ItemListIn,
    LifecycleIn,
    NeedCreate,
    OfferCreate,
    OrganizationUpdate,
    Outcome,
    QueueFilters,
    QueuePageIn,
)
from services.catalog.store import CatalogStore, decode_cursor, decode_offset_cursor, encode_cursor, encode_offset_cursor, item_view, match_view, org_view
from ssmatch import reference
from ssmatch.auth import Principal

Kind = Literal["need", "offer"]
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MATCH_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$")
#: fields of a match document that are internal bookkeeping, never shown
_MATCH_HIDDEN = {"facets_v", "need_created_at", "offer_created_at"}


@dataclass
class Catalog:
    """What the use cases work on: the item/organization store and the match repository, and for
    search the word index (a read model of the store) and the matcher's search by meaning."""

    store: CatalogStore
    matches: MatchRepository
    claim_seconds: int = match_rules.CLAIM_SECONDS
    words: WordIndex | None = None
    meaning: MeaningClient | None = None

    @classmethod
    def of(cls, store: CatalogStore) -> Catalog:
        return cls(store, MatchRepository(store))


@dataclass
class PostResult:
    status: int
    item: dict[str, Any]
    replayed: bool


@dataclass
class BulkResult:
    match_id: str
    status: str | None
    error: DomainError | None


def now() -> datetime:
    return datetime.now(UTC)


def _require(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise Forbidden(f"this action needs one of the roles: {', '.join(roles)}", details={"role": principal.role})


def _check_id(value: str, what: str) -> str:
    if not ID_PATTERN.match(value):
        raise NotFound(f"{what} {value[:80]!r} not found")
    return value


def request_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def public_match(doc: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
    """A match as callers see it: the claim only while it runs, without internal bookkeeping."""
    view = {k: v for k, v in match_view(doc).items() if k not in _MATCH_HIDDEN}
    view.update(match_rules.claim_view(doc, at or now()))
    return view


# ---- organizations ------------------------------------------------------------------------------
async def get_organization(c: Catalog, principal: Principal, org_id: str) -> dict[str, Any]:
    doc = await c.store.get_org(_check_id(org_id, "organization"), fresh=True)
    if doc is None:
        raise NotFound(f"organization {org_id} not found")
    view = org_view(doc)
    if view.get("contact") is not None:
        counterpart = False
        if not item_rules.is_staff(principal) and principal.organization_id and principal.organization_id != org_id:
            counterpart = await c.matches.approved_between(principal.organization_id, org_id)
        if not item_rules.may_see_contact(principal, org_id, counterpart):
            view["contact"] = None
    return view


async def update_organization(c: Catalog, principal: Principal, org_id: str, body: OrganizationUpdate) -> dict[str, Any]:
    """An organization edits its own name, language or contact (an admin any's). Other services learn it
    from ``organization.contact_changed`` (only the contact changed) or ``organization.updated``."""
    _check_id(org_id, "organization")
    if not (principal.is_admin or principal.organization_id == org_id):
        raise Forbidden("only the organization itself or an admin may change it")
    doc = await c.store.get_org(org_id, fresh=True)
    if doc is None:
        raise NotFound(f"organization {org_id} not found")
    given = body.model_dump(mode="json", include=body.model_fields_set)
    changes = {k: v for k, v in given.items() if doc.get(k) != v}
    if changes:
        action = "contact_changed" if set(changes) == {"contact"} else "updated"
        doc = await org_events.update_org(c.store, org_id, changes, action)
        if doc is None:
            raise NotFound(f"organization {org_id} not found")
    return org_view(doc)  # the organization itself or an admin: its contact is theirs to see


async def _org_of(c: Catalog, principal: Principal) -> dict[str, Any]:
    org = await c.store.get_org(principal.organization_id or "")
    if org is None:
        raise Forbidden("the organization of this token no longer exists")
    return org


# ---- items --------------------------------------------------------------------------------------
async def post_item(c: Catalog, principal: Principal, kind: Kind, body: NeedCreate | OfferCreate, idempotency_key: str | None = None) -> PostResult:
    """Post a need (country office) or an offer (solution provider); an Idempotency-Key replays."""
    _require(principal, "seeker" if kind == "need" else "provider")
    org = await _org_of(c, principal)
    status, view, replayed = await c.store.create_item(kind, principal, org, body, idempotency_key, request_hash(body.model_dump(mode="json")))
    if not replayed:
        _stage(c, {**view, "_id": view["id"]})
    return PostResult(status, view, replayed)


def _stage(c: Catalog, doc: dict[str, Any]) -> None:
    """Read-your-writes: this process's lists show the write at once, before the index commits it."""
    if c.words is not None:
        c.words.stage(doc)


async def get_item(c: Catalog, principal: Principal, kind: Kind, item_id: str) -> dict[str, Any]:
    doc = await c.store.get_item(kind, _check_id(item_id, kind))
    return item_view(dict(item_rules.check_visible(kind, doc, principal, item_id)))


async def edit_item(c: Catalog, principal: Principal, kind: Kind, item_id: str, patch: Any, if_match: str | None) -> dict[str, Any]:
    """Partial update under optimistic concurrency. Ownership is checked first, so a caller who may not
    change the item learns nothing from If-Match or body checks."""
    _check_id(item_id, kind)
    current = await c.store.get_item(kind, item_id)
    item_rules.check_visible(kind, current, principal, item_id)
    assert current is not None
    item_rules.check_owner(kind, current, principal)
    if not isinstance(patch, dict):
        raise Invalid("the request is not valid", details=[{"path": "$", "in": "body", "message": "body must be a JSON object"}])
    expected = item_rules.parse_if_match(if_match)
    from pydantic import ValidationError

    from ssmatch.http import validation_details

    try:
        doc = await c.store.update_item(kind, item_id, principal, patch, expected)
    except ValidationError as exc:
        raise Invalid("the request is not valid", details=validation_details(list(exc.errors()))) from exc
    _stage(c, doc)
    await c.matches.forget_facets(kind, item_id)
    return item_view(doc)


async def withdraw_item(c: Catalog, principal: Principal, kind: Kind, item_id: str) -> dict[str, Any]:
    _check_id(item_id, kind)
    current = await c.store.get_item(kind, item_id)
    item_rules.check_visible(kind, current, principal, item_id)
    doc = await c.store.withdraw_item(kind, item_id, principal)
    _stage(c, doc)
    return item_view(doc)


def _country_filter(country: str | None, region: str | None, group: str | None) -> set[str] | None:
    """The set of ISO3 codes the country/region/group filters allow together (None: no restriction)."""
    allowed: set[str] | None = {country} if country else None
    if region:
        members = reference.region_members(region)
        if not members:
            raise Invalid("the request is not valid", details=[{
                "path": "$.region", "in": "query", "type": "value_error",
                "message": f"unknown region {region[:80]!r}: use a UN M49 region or sub-region name such as 'Africa' or 'Eastern Africa'",
            }])
        allowed = members if allowed is None else allowed & members
    if group:
        members = reference.region_members(group)
        allowed = members if allowed is None else allowed & members
    return allowed


def _list_filters(principal: Principal, params: ItemListIn) -> dict[str, Any]:
    filters: dict[str, Any] = {
        "sdgs": params.sdg, "sectors": params.sector, "modalities": params.modality, "status": params.status,
        "languages": params.language, "q": params.q, "organization_id": params.organization_id,
        "scope": item_rules.list_scope(principal, params.status),
    }
    allowed = _country_filter(params.country, params.region, params.group)
    if allowed is not None:
        filters["country_in"] = allowed
    return filters


async def list_items(c: Catalog, principal: Principal, kind: Kind, params: ItemListIn, credential: str | None = None) -> dict[str, Any]:
    """One page of needs or offers; others' drafts and withdrawn items are never listed.

    Served by the word index (the catalog's read model) once it agrees with the store, else by the
    store: newest first, with `q` the items holding every word; or, with `q` and `sort=relevance`, the
    words' ranking fused with the matcher's nearest items by meaning, each item saying why it was
    found. `credential` is the caller's bearer token, passed on to the matcher."""
    filters = _list_filters(principal, params)
    if c.words is not None and c.words.ready:
        try:
            if params.q and params.sort == "relevance":
                return await _search_by_relevance(c, kind, params, filters, credential)
            return await _newest_first(c, kind, params, filters)
        except IndexUnavailable:
            pass  # a filter the index cannot express, or a failing index: the store answers below
    docs, next_cursor = await c.store.list_items(kind, filters, params.limit, params.cursor, sort=params.sort)
    page: dict[str, Any] = {"items": [item_view(d) for d in docs], "next_cursor": next_cursor}
    if params.q:
        page["search"] = {"words": "store", "meaning": "unavailable", "message": "the search index is being built; words are matched by a scan"}
    return page


#: how many items each ranking contributes to a fused list (its pages are cut from these). The words'
#: best 100 like the meaning's: past its 100th an item adds under 1/160 to a fused score, and ranking
#: 300 cost 4.3 ms of a search's ~16 at 100,000 items, 100 2.6 ms (measured)
WORD_WINDOW = 100
MEANING_K = 100


def _staged(c: Catalog, kind: Kind, base: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Writes the index has not committed yet (this process's own at once, the stream's until their
    commit): those passing the filters, and the ids whose index entry is stale and must not be shown."""
    assert c.words is not None
    staged = c.words.staged(kind)
    passing = {i: d for i, d in staged.items() if d.get("status") != DELETED and passes(d, base)}
    return passing, set(staged) - set(passing)


def _entries(c: Catalog, kind: Kind, base: dict[str, Any], ids: list[str], staged: dict[str, dict[str, Any]]) -> dict[str, Entry]:
    """The page's items as the index holds them (filters applied again: a meaning hit may be private),
    a staged write's from its own copy; no store read."""
    assert c.words is not None
    out = c.words.entries(kind, [i for i in ids if i not in staged], base)
    out.update({i: Entry.of(staged[i]) for i in ids if i in staged})
    return out


async def _newest_first(c: Catalog, kind: Kind, params: ItemListIn, filters: dict[str, Any]) -> dict[str, Any]:
    """A newest-first page from the index: every item passing the filters (and holding every word of
    `q`), keyset-paged on the id like the store's list."""
    assert c.words is not None
    terms = search_rules.analyse_query(params.q) if params.q else None
    base = c.store.list_query(filters, words=False)
    before = decode_cursor(params.cursor) if params.cursor else None
    fetch = params.limit + 1
    staged, hidden = _staged(c, kind, base)
    staged = {i: d for i, d in staged.items() if (before is None or i < before) and (terms is None or search_rules.matches_all(terms, d))}
    hits = c.words.search(kind, terms, base, mode="all", limit=fetch + len(hidden), before_id=before, with_entries=True)
    entries = {h.id: h.entry for h in hits if h.entry is not None and h.id not in hidden}
    ids = sorted(set(entries) | set(staged), reverse=True)[:fetch]
    entries.update({i: Entry.of(staged[i]) for i in ids[: params.limit] if i in staged})
    items = []
    for item_id in ids[: params.limit]:
        if (entry := entries.get(item_id)) is None:
            continue
        view = dict(entry.view)
        if terms is not None:
            view["search"] = {"score": None, "reasons": [search_rules.MATCHED_WORDS], "matched_words": search_rules.matched_words(terms, entry.words), "similarity": None}
        items.append(view)
    next_cursor = encode_cursor(ids[params.limit - 1]) if len(ids) > params.limit else None
    page: dict[str, Any] = {"items": items, "next_cursor": next_cursor}
    if terms is not None:
        page["search"] = {"words": "index", "meaning": "not used", "message": None}
    return page


def _meaning_filters(filters: dict[str, Any]) -> dict[str, list[Any]]:
    """The list filters the matcher applies to its open items (field → allowed values)."""
    out: dict[str, list[Any]] = {}
    for key in ("sdgs", "sectors", "modalities", "languages", "organization_id"):
        if filters.get(key) is not None:
            out[key] = [filters[key]]
    if filters.get("country_in") is not None:
        out["country"] = sorted(filters["country_in"])
    return out


async def _search_by_relevance(c: Catalog, kind: Kind, params: ItemListIn, filters: dict[str, Any], credential: str | None) -> dict[str, Any]:
    assert c.words is not None and params.q
    offset = decode_offset_cursor(params.cursor) if params.cursor else 0
    terms = search_rules.analyse_query(params.q)
    base = c.store.list_query(filters, words=False)
    info: dict[str, Any] = {"words": "index", "meaning": "used", "message": None}
    asked: asyncio.Task[search_rules.MeaningResult] | None = None
    if params.status not in (None, "open"):
        info.update(meaning="not used", message="search by meaning covers open items only")
    elif c.meaning is None:
        info.update(meaning="unavailable", message="search by meaning is not configured")
    else:  # the matcher embeds and ranks while the word index answers here
        asked = asyncio.create_task(c.meaning.nearest(kind, params.q, MEANING_K, _meaning_filters(filters), credential))
    try:
        staged, hidden = _staged(c, kind, base)  # before the search: see WordIndex.staged
        word_ids = [h.id for h in c.words.search(kind, terms, base, mode="any", limit=WORD_WINDOW)]
    except BaseException:
        if asked is not None:
            asked.cancel()
        raise
    # a staged write's own copy decides whether its words match; one the index lacks comes last
    matching = [i for i, d in staged.items() if search_rules.matched_words(terms, d)]
    unmatched = hidden | (set(staged) - set(matching))
    word_ids = [i for i in word_ids if i not in unmatched]
    held = set(word_ids)
    word_ids += [i for i in matching if i not in held]
    meaning: list[search_rules.MeaningHit] = []
    if asked is not None:
        try:
            meaning = (await asked).standing_out()
        except MeaningUnavailable as exc:
            info.update(meaning="unavailable", message=f"{exc}; results found by words only")
    window, total = search_rules.fuse_page(word_ids, meaning, offset, params.limit)
    page = [f for f in window if f.id not in hidden]
    entries = _entries(c, kind, base, [f.id for f in page], staged)
    items = []
    for found in page:
        if (entry := entries.get(found.id)) is None:
            continue
        found.matched_words = search_rules.matched_words(terms, entry.words)
        items.append({**entry.view, "search": found.view()})
    next_cursor = encode_offset_cursor(offset + params.limit) if total > offset + params.limit else None
    return {"items": items, "next_cursor": next_cursor, "search": info}


async def item_matches(c: Catalog, principal: Principal, kind: Kind, item_id: str, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    doc = await c.store.get_item(kind, _check_id(item_id, kind))
    item_rules.check_visible(kind, doc, principal, item_id)
    assert doc is not None
    if not (item_rules.is_staff(principal) or principal.organization_id == doc["organization_id"]):
        raise Forbidden(f"only the {kind}'s owner, a broker or an admin may see its matches")
    at = now()
    return [public_match(m, at) for m in await c.matches.list_by_item(kind, item_id, status, limit)]


async def party_matches(c: Catalog, principal: Principal, limit: int = 100) -> list[dict[str, Any]]:
    """The matches the caller's organization is a party to, best first (none for the admin token)."""
    if not principal.organization_id:
        return []
    at = now()
    return [public_match(m, at) for m in await c.matches.list_by_party(principal.organization_id, limit)]


# ---- matches ------------------------------------------------------------------------------------
async def _visible_match(c: Catalog, principal: Principal, match_id: str) -> dict[str, Any]:
    if not MATCH_ID_PATTERN.match(match_id):
        raise NotFound(f"match {match_id[:140]!r} not found")
    doc = await c.matches.get(match_id)
    if doc is None:
        raise NotFound(f"match {match_id} not found")
    if not match_rules.may_see(principal, doc):
        raise Forbidden("only the parties, a broker or an admin may see this match")
    return doc


async def get_match(c: Catalog, principal: Principal, match_id: str) -> dict[str, Any]:
    return public_match(await _visible_match(c, principal, match_id))


async def list_queue(c: Catalog, principal: Principal, params: QueuePageIn) -> dict[str, Any]:
    """The broker queue: filtered, sorted by score (best first) or age (oldest first), cursor-paged;
    each row says who holds a claim on it (`claimed_by`, `claimed_until`)."""
    _require(principal, "admin", "broker")
    docs, next_cursor = await c.matches.page(params, params.sort, params.limit, params.cursor)
    at = now()
    return {"items": [public_match(d, at) for d in docs], "next_cursor": next_cursor}


def _claim_out(doc: dict[str, Any]) -> dict[str, Any]:
    view = match_rules.claim_view(doc, now())
    return {"match_id": doc["_id"], **view}


async def claim(c: Catalog, principal: Principal, match_id: str) -> dict[str, Any]:
    """Hold a proposed match for `claim_seconds` while reviewing it (renewable by the holder)."""
    _require(principal, "admin", "broker")
    doc = await _visible_match(c, principal, match_id)
    at = now()
    match_rules.check_claimable(doc, principal, at)
    saved = await c.matches.claim(match_id, match_rules.actor_of(principal), at, c.claim_seconds)
    if saved is None:  # someone else claimed it or it was decided between the read and the write
        fresh = await c.matches.get(match_id)
        match_rules.check_claimable(fresh or doc, principal, now())
        raise Conflict(f"match {match_id} changed just now; read it again", code="claimed")
    return _claim_out(saved)


async def release(c: Catalog, principal: Principal, match_id: str) -> dict[str, Any]:
    _require(principal, "admin", "broker")
    doc = await _visible_match(c, principal, match_id)
    at = now()
    match_rules.check_releasable(doc, principal, at)
    saved = await c.matches.release(match_id, None if principal.is_admin else match_rules.actor_of(principal), at)
    if saved is None:
        fresh = await c.matches.get(match_id)
        match_rules.check_releasable(fresh or doc, principal, now())
        raise Conflict(f"match {match_id} changed just now; read it again", code="claimed")
    return _claim_out(saved)


async def decide(c: Catalog, principal: Principal, match_id: str, body: DecisionIn) -> dict[str, Any]:
    """Approve or reject a proposed match. Conflict when it is decided already, claimed by another
    broker, or (to approve) its need or offer is no longer open."""
    _require(principal, "admin", "broker")
    doc = await _visible_match(c, principal, match_id)
    at = now()
    match_rules.check_decidable(doc, principal, at)
    if body.decision == "approve":
        need = await c.store.get_item("need", doc["need_id"])
        offer = await c.store.get_item("offer", doc["offer_id"])
        match_rules.check_items_open(doc, need, offer)
    saved = await c.matches.decide(doc, principal, match_rules.actor_of(principal), body.decision, body.note, at)
    return public_match(saved, at)


async def decide_many(c: Catalog, principal: Principal, body: BulkDecisionsIn) -> list[BulkResult]:
    """Up to 50 decisions, one result per match in the order given; each applied or refused alone."""
    _require(principal, "admin", "broker")
    results: list[BulkResult] = []
    for item in body.decisions:
        try:
            saved = await decide(c, principal, item.match_id, DecisionIn(decision=item.decision, note=item.note))
            results.append(BulkResult(item.match_id, saved["status"], None))
        except DomainError as exc:
            current = await c.matches.get(item.match_id) if MATCH_ID_PATTERN.match(item.match_id) and not isinstance(exc, NotFound) else None
            results.append(BulkResult(item.match_id, current["status"] if current else None, exc))
    return results


async def record_step(c: Catalog, principal: Principal, match_id: str, body: LifecycleIn) -> dict[str, Any]:
    """Record a step after approval (a response, agreement, start, completion with outcome, decline),
    checked against the state machine; the step is an event with actor, time and note."""
    doc = await _visible_match(c, principal, match_id)
    party = match_rules.responding_party(principal, doc, body.party) if body.event in match_rules.RESPONSES else None
    match_rules.check_transition(doc, body.event, party)
    outcome = body.outcome.model_dump(mode="json") if body.outcome is not None else None
    saved = await c.matches.record_step(doc, principal, match_rules.actor_of(principal), body.event, party, body.note, outcome, now())
    return public_match(saved)


async def respond(c: Catalog, principal: Principal, match_id: str, response: Literal["interested", "not_interested"],
                  note: str | None = None, party: Literal["need", "offer"] | None = None) -> dict[str, Any]:
    return await record_step(c, principal, match_id, LifecycleIn(event=response, note=note, party=party))


async def report_outcome(c: Catalog, principal: Principal, match_id: str, outcome: Outcome, note: str | None = None) -> dict[str, Any]:
    return await record_step(c, principal, match_id, LifecycleIn(event="completed", note=note, outcome=outcome))


# ---- reports ------------------------------------------------------------------------------------
async def reports_summary(c: Catalog, principal: Principal, filters: QueueFilters) -> dict[str, Any]:
    """The dashboard's figures (broker or admin), with the queue's filters."""
    _require(principal, "admin", "broker")
    needs, offers, matches = await c.matches.report_rows(filters)
    return summarize(needs, offers, matches, filters.model_dump(mode="json"))
