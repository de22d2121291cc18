"""MongoDB side of the broker's work on matches: the queue, claims, decisions, lifecycle steps, reports.

The rules (who may, what may follow what) are checked by the service with `domain.matches` before
these writes; each write is still conditional on the state it was checked against, so two brokers
racing get one success and one Conflict, never a lost update. Every change commits with its outbox
event and audit entry in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from services.catalog.domain.errors import Conflict
from services.catalog.domain.queue import decode_cursor, encode_cursor
from services.catalog.models import QueueFilters
from services.catalog.store import PRODUCER, CatalogStore
from ssmatch import reference
from ssmatch.auth import Principal
from ssmatch.events import MatchDecidedPayload, MatchLifecyclePayload, make_event
from ssmatch.mongo import in_transaction
from ssmatch.tasks import BackgroundTask

log = logging.getLogger(__name__)

#: widths of the score windows a queue page reads through (the last one covers everything)
SCORE_WINDOWS = (0.02, 0.08, 0.3, 1.01)
#: widths (days after the cursor) of the time windows a page sorted by age reads through; None = all
AGE_WINDOWS_DAYS = (1, 7, 60, None)
#: proposals a queue read enriches itself before answering; more wait for the background FacetEnricher
READ_ENRICH_LIMIT = 50


def now() -> datetime:
    return datetime.now(UTC)


class MatchRepository:
    """Match documents of the catalog (the projection writes proposals; this writes everything brokers
    and parties do with them)."""

    def __init__(self, store: CatalogStore) -> None:
        self.store = store
        self.matches = store.matches

    async def init_indexes(self) -> None:
        """One index per queue filter, each ending in the sort key, so a filtered page is an index range."""
        m = self.matches
        await m.create_index([("status", ASCENDING), ("score", DESCENDING), ("_id", ASCENDING)])
        await m.create_index([("status", ASCENDING), ("proposed_at", ASCENDING), ("_id", ASCENDING)])
        for facet in ("sdgs", "sectors", "modalities", "regions", "groups"):
            await m.create_index([("status", ASCENDING), (facet, ASCENDING), ("score", DESCENDING), ("_id", ASCENDING)])
        await m.create_index([("score", DESCENDING), ("_id", ASCENDING)])
        await m.create_index([("facets_v", ASCENDING)])
        await m.create_index([("need_organization_id", ASCENDING), ("status", ASCENDING)])
        await m.create_index([("offer_organization_id", ASCENDING), ("status", ASCENDING)])

    # ---- facets ------------------------------------------------------------------------------------
    async def enrich_pending(self, batch: int = 200, at_most: int | None = None) -> int:
        """Copy need/offer facets onto matches that have none yet (new proposals, or items edited since).

        Each costs a lookup and an indexed write (~10-40 ms on the embedded store), so a read enriches at
        most `at_most` itself and `FacetEnricher` does the rest in the background."""
        total = 0
        while at_most is None or total < at_most:
            if at_most is not None:
                batch = min(batch, at_most - total)
            docs = await self.matches.find({"facets_v": None}, {"need_id": 1, "offer_id": 1}).limit(batch).to_list(batch)
            if not docs:
                return total
            facets = await self.store.match_facets_of({d["_id"]: (d["need_id"], d["offer_id"]) for d in docs})
            ops = [UpdateOne({"_id": d["_id"]}, {"$set": facets[d["_id"]]}) for d in docs]
            await self.matches.bulk_write(ops, ordered=False)
            total += len(docs)
            if len(docs) < batch:
                return total
        return total

    async def forget_facets(self, kind: str, item_id: str) -> None:
        """An edited item's matches get their facets copied again on the next read."""
        await self.matches.update_many({f"{kind}_id": item_id}, {"$set": {"facets_v": None}})

    # ---- reads -------------------------------------------------------------------------------------
    async def get(self, match_id: str) -> dict[str, Any] | None:
        return await self.matches.find_one({"_id": match_id})

    @staticmethod
    def filter_query(f: QueueFilters, at: datetime) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if f.status:
            query["status"] = f.status
        for field, value in (("sdgs", f.sdg), ("sectors", f.sector), ("modalities", f.modality), ("groups", f.group),
                             ("need_languages", f.need_language), ("offer_languages", f.offer_language)):
            if value is not None:
                query[field] = value
        if f.region:
            query["regions"] = f.region.lower()
        score: dict[str, float] = {}
        if f.min_score is not None:
            score["$gte"] = f.min_score
        if f.max_score is not None:
            score["$lte"] = f.max_score
        if score:
            query["score"] = score
        age: dict[str, datetime] = {}
        if f.min_age_days is not None:
            age["$lte"] = at - timedelta(days=f.min_age_days)
        if f.max_age_days is not None:
            age["$gte"] = at - timedelta(days=f.max_age_days)
        if age:
            query["proposed_at"] = age
        return query

    async def page(self, f: QueueFilters, sort: str, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the queue, keyset-paged: `score` = best first (ties by id), `age` = oldest proposal first.

        After a cursor the page is two index ranges: the rest of the cursor's tie (same key, later id),
        then strictly worse keys. No offsets, no $or: each page costs the same however deep it is. The
        embedded store sorts every document a query matches, so the score range is also cut into
        growing windows below the cursor: a page reads about the documents it shows, not the queue."""
        await self.enrich_pending(at_most=READ_ENRICH_LIMIT)
        base = self.filter_query(f, now())
        key, direction = ("score", DESCENDING) if sort == "score" else ("proposed_at", ASCENDING)
        order = [(key, direction), ("_id", ASCENDING)]
        want = limit + 1
        docs: list[dict[str, Any]] = []
        last_key: Any = None
        if cursor:
            last_key, last_id = decode_cursor(cursor, sort)
            # the ties of the cursor's key are few: read them by the key's own index, check facets here
            residual = {k: v for k, v in base.items() if k in DRIVING_FACETS}
            tie = {k: v for k, v in base.items() if k not in DRIVING_FACETS and k != key}
            tie.update({"_id": {"$gt": last_id}, key: last_key})  # the cursor's key came from inside the filter's range
            found = self.matches.find(tie).sort(order)
            if residual:
                docs = [d for d in await found.to_list(None) if _matches(d, residual)][:want]
            else:
                docs = await found.limit(want).to_list(want)
        if len(docs) < want:
            need = want - len(docs)
            if sort == "score":
                docs += await self._score_windows(base, order, need, last_key)
            else:
                docs += await self._age_windows(base, order, need, last_key)
        next_cursor = None
        if len(docs) > limit:
            last = docs[limit - 1]
            next_cursor = encode_cursor(sort, last.get(key), last["_id"])
        return docs[:limit], next_cursor

    async def _age_windows(self, base: dict[str, Any], order: list[tuple[str, int]], need: int, after: datetime | None) -> list[dict[str, Any]]:
        """The oldest `need` proposals after `after`, read through time windows of growing width."""
        bounds = base.get("proposed_at") or {}
        start = after if after is not None else bounds.get("$gte")
        if start is None:
            first = await self.matches.find(base, {"proposed_at": 1}).sort(order).limit(1).to_list(1)
            if not first:
                return []
            start = first[0]["proposed_at"]
        lower = {"$gt": start} if after is not None else {"$gte": start}
        driver, residual = _split_facets(base)
        docs: list[dict[str, Any]] = []
        for days in AGE_WINDOWS_DAYS:
            query = {**driver, "proposed_at": {**bounds, **lower}}
            if days is not None:
                query["proposed_at"]["$lt"] = min(start + timedelta(days=days), bounds.get("$lte", start + timedelta(days=days + 1)) + timedelta(microseconds=1))
            found = self.matches.find(query).sort(order)
            if residual:
                docs = [d for d in await found.to_list(None) if _matches(d, residual)][:need]
            else:
                docs = await found.limit(need).to_list(need)
            if len(docs) >= need:
                break
        return docs

    async def _score_windows(self, base: dict[str, Any], order: list[tuple[str, int]], need: int, below: float | None) -> list[dict[str, Any]]:
        """The best `need` matches with a score under `below` (or the filter's max), read through score
        windows of growing width until enough are found or the whole range was covered."""
        bounds = base.get("score") or {}
        floor = float(bounds.get("$gte", 0.0))
        top = float(bounds.get("$lte", 1.0)) if below is None else min(below, float(bounds.get("$lte", 1.0)))
        upper = {"$lt": below} if below is not None and below <= float(bounds.get("$lte", 1.0)) else {"$lte": top}
        # one facet drives the index; further facets are checked here (the store's planner does badly
        # with two multikey conditions), which means reading the whole window for them
        driver, residual = _split_facets(base)
        docs: list[dict[str, Any]] = []
        for width in SCORE_WINDOWS:
            lo = max(floor, top - width)
            query = {**driver, "score": {**upper, "$gte": lo}}
            cursor = self.matches.find(query).sort(order)
            if residual:
                docs = [d for d in await cursor.to_list(None) if _matches(d, residual)][:need]
            else:
                docs = await cursor.limit(need).to_list(need)
            if len(docs) >= need or lo <= floor:
                break
        return docs

    @staticmethod
    def _and_range(existing: Any, extra: dict[str, Any]) -> Any:
        if existing is None:
            return extra.get("$eq", extra)
        return _tighter(existing, extra)

    async def list_by_item(self, kind: str, item_id: str, status: str | None, limit: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {f"{kind}_id": item_id, "status": status if status else {"$ne": "retracted"}}
        return await self.matches.find(query).sort([("score", DESCENDING), ("_id", ASCENDING)]).limit(limit).to_list(limit)

    async def list_by_party(self, organization_id: str, limit: int) -> list[dict[str, Any]]:
        """Matches with `organization_id` on either side (not retracted), best first."""
        query = {"$or": [{"need_organization_id": organization_id}, {"offer_organization_id": organization_id}], "status": {"$ne": "retracted"}}
        return await self.matches.find(query).sort([("score", DESCENDING), ("_id", ASCENDING)]).limit(limit).to_list(limit)

    async def approved_between(self, org_a: str, org_b: str) -> bool:
        """Is there an approved match with `org_a` on one side and `org_b` on the other?"""
        for need_org, offer_org in ((org_a, org_b), (org_b, org_a)):
            if await self.matches.find_one({"need_organization_id": need_org, "offer_organization_id": offer_org, "status": "approved"}, {"_id": 1}):
                return True
        return False

    async def report_rows(self, f: QueueFilters) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """Needs, offers and matches in the filters' scope, with only the fields the summary reads."""
        await self.enrich_pending(at_most=READ_ENRICH_LIMIT)
        fields = {"sdgs": 1, "sectors": 1, "country": 1, "status": 1, "created_at": 1}
        item_rows = []
        for kind, language in (("need", f.need_language), ("offer", f.offer_language)):
            query: dict[str, Any] = {"status": {"$nin": ["draft", "withdrawn"]}}
            for field, value in (("sdgs", f.sdg), ("sectors", f.sector), ("modalities", f.modality), ("languages", language)):
                if value is not None:
                    query[field] = value
            allowed: set[str] | None = None
            if f.region:
                allowed = reference.region_members(f.region)
            if f.group:
                members = reference.region_members(f.group)
                allowed = members if allowed is None else allowed & members
            if allowed is not None:
                query["country"] = {"$in": sorted(allowed)}
            item_rows.append(await self.store.items[kind].find(query, fields).to_list(None))
        match_fields = {"need_id": 1, "offer_id": 1, "status": 1, "lifecycle": 1, "sdgs": 1, "sectors": 1, "need_country": 1, "groups": 1,
                        "gender_responsive": 1, "created_at": 1, "proposed_at": 1, "decided_at": 1, "outcome": 1, "lifecycle_history": 1}
        matches = await self.matches.find(self.filter_query(f, now()), match_fields).to_list(None)
        return item_rows[0], item_rows[1], matches

    # ---- claims ------------------------------------------------------------------------------------
    async def claim(self, match_id: str, holder: str, at: datetime, seconds: int) -> dict[str, Any] | None:
        """Take (or renew) the claim unless another holder's claim is still running; None if it is."""
        until = at + timedelta(seconds=seconds)
        return await self.matches.find_one_and_update(
            {"_id": match_id, "status": "proposed", "$or": [{"claimed_by": None}, {"claimed_by": holder}, {"claimed_until": {"$lte": at}}]},
            {"$set": {"claimed_by": holder, "claimed_until": until}},
            return_document=ReturnDocument.AFTER,
        )

    async def release(self, match_id: str, holder: str | None, at: datetime) -> dict[str, Any] | None:
        """Drop the claim (`holder` None: whoever holds it, for an admin)."""
        cond: dict[str, Any] = {"_id": match_id}
        if holder is not None:
            cond["$or"] = [{"claimed_by": None}, {"claimed_by": holder}, {"claimed_until": {"$lte": at}}]
        return await self.matches.find_one_and_update(
            cond, {"$set": {"claimed_by": None, "claimed_until": None}}, return_document=ReturnDocument.AFTER
        )

    # ---- writes with events ------------------------------------------------------------------------
    async def decide(self, current: dict[str, Any], principal: Principal, actor: str, decision: str, note: str | None, at: datetime) -> dict[str, Any]:
        """Approve/reject a match still proposed and not claimed by someone else (checked again here)."""
        status = "approved" if decision == "approve" else "rejected"
        match_id = current["_id"]
        store = self.store

        async def work(session: AsyncClientSession) -> dict[str, Any] | None:
            saved = await self.matches.find_one_and_update(
                {"_id": match_id, "status": "proposed", "$or": [{"claimed_by": None}, {"claimed_by": actor}, {"claimed_until": {"$lte": at}}]},
                {"$set": {"status": status, "decision_note": note, "decided_at": at, "decided_by": actor, "claimed_by": None, "claimed_until": None}},
                session=session,
                return_document=ReturnDocument.AFTER,
            )
            if saved is None:
                return None
            payload = MatchDecidedPayload(
                match_id=match_id, need_id=saved["need_id"], offer_id=saved["offer_id"], decision=decision, note=note,  # type: ignore[arg-type]
                decided_by=actor, need_organization_id=saved["need_organization_id"], offer_organization_id=saved["offer_organization_id"],
                need_title=saved.get("need_title"), offer_title=saved.get("offer_title"), score=saved["score"],
                explanation=saved.get("explanation") or {},
            )
            await store._emit(session, make_event("match.decided", "match", match_id, payload, producer=PRODUCER))
            await store._audit(session, principal, f"match.{decision}", "match", match_id, {"status": status, "note": note})
            return saved

        saved = await in_transaction(store.client, work)
        if saved is None:
            raise Conflict(f"match {match_id} was decided or claimed by someone else just now; read it again", code="already_decided")
        store._on_outbox_write()
        return saved

    async def record_step(
        self, current: dict[str, Any], principal: Principal, actor: str, event: str, party: str | None, note: str | None,
        outcome: dict[str, Any] | None, at: datetime,
    ) -> dict[str, Any]:
        """Append a lifecycle step (conditional on the lifecycle it was checked against) with its event."""
        match_id = current["_id"]
        state = current.get("lifecycle")
        store = self.store
        step = {"event": event, "party": party, "note": note, "by": actor, "at": at}
        update: dict[str, Any] = {"$set": {"lifecycle": event, "lifecycle_at": at},
                                  "$push": {"lifecycle_history": step}}
        cond: dict[str, Any] = {"_id": match_id, "status": "approved", "lifecycle": state}
        if party is not None and event in ("interested", "not_interested"):
            update["$set"][f"responses.{party}"] = {"response": event, "note": note, "by": actor, "at": at}
            cond[f"responses.{party}"] = None
        if outcome is not None:
            update["$set"]["outcome"] = outcome

        async def work(session: AsyncClientSession) -> dict[str, Any] | None:
            saved = await self.matches.find_one_and_update(cond, update, session=session, return_document=ReturnDocument.AFTER)
            if saved is None:
                return None
            payload = MatchLifecyclePayload(
                match_id=match_id, need_id=saved["need_id"], offer_id=saved["offer_id"], event=event, note=note,  # type: ignore[arg-type]
                reported_by=actor, need_organization_id=saved["need_organization_id"], offer_organization_id=saved["offer_organization_id"],
                need_title=saved.get("need_title"), offer_title=saved.get("offer_title"), party=party, outcome=outcome,  # type: ignore[arg-type]
            )
            await store._emit(session, make_event("match.lifecycle", "match", match_id, payload, producer=PRODUCER))
            await store._audit(session, principal, f"match.{event}", "match", match_id, {"lifecycle": event, "party": party, "note": note})
            return saved

        saved = await in_transaction(store.client, work)
        if saved is None:
            raise Conflict(f"match {match_id} changed just now; read it again", code="invalid_transition")
        store._on_outbox_write()
        return saved


def _tighter(existing: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Combine two range conditions on one field, keeping the tighter bound of each operator."""
    out = dict(existing)
    for op, value in extra.items():
        if op not in out or op == "$eq":
            out[op] = value
        elif op in ("$lt", "$lte"):
            out[op] = min(out[op], value)
        else:
            out[op] = max(out[op], value)
    return out


class FacetEnricher(BackgroundTask):
    """Keeps match facets current in the background, so a burst of proposals never slows a queue read."""

    task_name = "match-facets"

    def __init__(self, repo: MatchRepository, interval_s: float = 1.0) -> None:
        super().__init__()
        self.repo = repo
        self.interval_s = interval_s
        self.enriched_total = 0
        self.errors_total = 0

    async def _run(self) -> None:
        while True:
            try:
                self.enriched_total += await self.repo.enrich_pending(at_most=2000)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.errors_total += 1
                log.warning("match facet enrichment failed; retrying", exc_info=True)
            await self.wait_for_wake(self.interval_s)


#: facets in the order they drive a queue query (the first one present goes to the index)
DRIVING_FACETS = ("sdgs", "sectors", "modalities", "regions", "groups", "need_languages", "offer_languages")


def _split_facets(query: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    present = [f for f in DRIVING_FACETS if f in query]
    driver = {k: v for k, v in query.items() if k not in present[1:]}
    return driver, {k: query[k] for k in present[1:]}


def _matches(doc: dict[str, Any], residual: dict[str, Any]) -> bool:
    """Equality on an array facet means membership, as in MongoDB."""
    for field, value in residual.items():
        have = doc.get(field)
        if not (value in have if isinstance(have, list) else have == value):
            return False
    return True
