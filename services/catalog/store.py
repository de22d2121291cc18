"""The catalog's system of record in MongoDB, with a transactional outbox.

Every accepted change is written together with its event in one transaction, so a 2xx answer means
the event will be published even if Kafka is down right now (the OutboxRelay publishes it later).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bson import ObjectId, Regex
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, InsertOne, ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from services.catalog import org_events
from services.catalog.domain import items as item_rules
from services.catalog.domain.errors import Conflict, Invalid, NotFound, PreconditionFailed
from services.catalog.domain.items import etag_for, parse_if_match  # noqa: F401 - re-exported for older imports
from services.catalog.domain.queue import FACET_FIELDS, match_facets
from services.catalog.models import ItemFields, NeedCreate, OfferCreate, OrganizationCreate
from services.catalog.projection import Sided, fold_updates, proposal_fields, sided_update
from ssmatch import reference
from ssmatch.auth import ROLE_BY_ORG_TYPE, Principal, hash_token, new_token
from ssmatch.events import (
    Envelope,
    ItemPayload,
    ItemWithdrawnPayload,
    MatchProposedPayload,
    MatchRetractedPayload,
    make_event,
)
from ssmatch.mongo import bulk_refusals, in_transaction
from ssmatch.text import fold, guess_script_language

PRODUCER = "catalog"
ITEM_CREATE_MODEL: dict[str, type[ItemFields]] = {"need": NeedCreate, "offer": OfferCreate}
_INTERNAL_FIELDS = {"_id", "search_text", "organization_id", "kind", "revision", "created_at", "updated_at", "withdrawn_at", "created_by"}


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """ObjectId hex: sortable by creation time, so it doubles as the pagination cursor."""
    return str(ObjectId())


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except Exception as exc:
        raise Invalid("cursor is not valid", details=[{"path": "$.cursor", "in": "query", "message": "malformed"}]) from exc
    if not re.fullmatch(r"[0-9a-f]{24}", value):
        raise Invalid("cursor is not valid", details=[{"path": "$.cursor", "in": "query", "message": "malformed"}])
    return value


def item_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The public JSON shape of a stored need or offer."""
    out = {k: v for k, v in doc.items() if k not in ("_id", "search_text", "created_by")}
    out["id"] = doc["_id"]
    return out


def _json_default(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def public_json(doc: dict[str, Any]) -> bytes:
    """The item's public JSON as the API sends it (datetimes in ISO form): what the word index keeps,
    so that a page is served from the index without reading the store."""
    return json.dumps(item_view(doc), default=_json_default, ensure_ascii=False).encode()


def as_stored(value: Any) -> Any:
    """A document as the store gives it back: BSON keeps datetimes to the millisecond (floor)."""
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, dict):
        return {k: as_stored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_stored(v) for v in value]
    return value


def match_view(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "_id"}
    out["id"] = doc["_id"]
    return out


def org_view(doc: dict[str, Any]) -> dict[str, Any]:
    """An organization with its country's UN M49 region/sub-region and UN groups (derived, never stored)."""
    out = {k: v for k, v in doc.items() if k != "_id"}
    out["id"] = doc["_id"]
    country = reference.country(doc.get("country", ""))
    out["region"] = country.region if country else None
    out["subregion"] = country.subregion if country else None
    out["intermediate_region"] = country.intermediate_region if country else None
    out["groups"] = sorted(reference.country_groups(doc.get("country", "")))
    return out


def encode_offset_cursor(offset: int) -> str:
    return encode_cursor(f"o{offset}")


def decode_offset_cursor(cursor: str) -> int:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except Exception as exc:
        raise Invalid("cursor is not valid", details=[{"path": "$.cursor", "in": "query", "message": "malformed"}]) from exc
    if not re.fullmatch(r"o[0-9]{1,6}", value):
        raise Invalid("cursor is not valid", details=[{"path": "$.cursor", "in": "query", "message": "not a cursor of a relevance-sorted list"}])
    return int(value[1:])


#: With sort=relevance, at most this many (newest) matching items are ranked; the rest are not reachable.
RELEVANCE_WINDOW = 1000


class CatalogStore:
    def __init__(self, client: AsyncMongoClient, db_name: str, on_outbox_write: Callable[[], None] | None = None) -> None:
        self.client = client
        self.db = client.get_database(db_name)
        self.orgs = self.db["organizations"]
        self.tokens = self.db["tokens"]
        self.items = {"need": self.db["needs"], "offer": self.db["offers"]}
        self.matches = self.db["matches"]
        self.outbox = self.db["outbox"]
        self.idempotency = self.db["idempotency"]
        self.audit = self.db["audit"]
        self._on_outbox_write = on_outbox_write or (lambda: None)
        self._org_cache: dict[str, dict[str, Any]] = {}

    async def init_indexes(self) -> None:
        await self.orgs.create_index([("type", ASCENDING), ("name", ASCENDING)])
        await self.tokens.create_index([("organization_id", ASCENDING)])
        await self.tokens.create_index("token_id", unique=True)
        for coll in self.items.values():
            await coll.create_index([("organization_id", ASCENDING), ("_id", DESCENDING)])
            await coll.create_index([("status", ASCENDING), ("_id", DESCENDING)])
            await coll.create_index([("sectors", ASCENDING), ("_id", DESCENDING)])
            await coll.create_index([("sdgs", ASCENDING), ("_id", DESCENDING)])
            await coll.create_index([("country", ASCENDING), ("_id", DESCENDING)])
            # the word index catches up from its watermark after a restart (IndexSync)
            await coll.create_index([("updated_at", ASCENDING)])
        await self.matches.create_index([("status", ASCENDING), ("score", DESCENDING)])
        await self.matches.create_index([("need_id", ASCENDING), ("score", DESCENDING)])
        await self.matches.create_index([("offer_id", ASCENDING), ("score", DESCENDING)])
        await self.outbox.create_index([("published_at", ASCENDING), ("_id", ASCENDING)])
        await self.idempotency.create_index("created_at", expireAfterSeconds=7 * 24 * 3600)
        await self.audit.create_index([("entity_id", ASCENDING), ("at", ASCENDING)])

    # ---- outbox and audit -------------------------------------------------------------------
    async def _emit(self, session: AsyncClientSession, event: Envelope) -> None:
        await self.outbox.insert_one(
            {
                "_id": ObjectId(),
                "event_id": event.event_id,
                "topic": event.topic,
                "key": event.entity_id,
                "event": event.to_json_dict(),
                "created_at": now(),
                "published_at": None,
            },
            session=session,
        )

    async def _audit(
        self, session: AsyncClientSession, principal: Principal, action: str, entity_type: str, entity_id: str, changes: dict[str, Any]
    ) -> None:
        await self.audit.insert_one(
            {
                "at": now(),
                "action": action,
                "entity_type": entity_type,
                "entity_id": entity_id,
                "by_organization": principal.organization_id,
                "by_role": principal.role,
                "by_token": principal.token_id,
                "changes": changes,
            },
            session=session,
        )

    # ---- organizations and tokens -------------------------------------------------------------
    async def create_org(self, body: OrganizationCreate) -> dict[str, Any]:
        doc = {"_id": new_id(), **body.model_dump(mode="json"), "created_at": now()}
        await org_events.insert_org(self, doc)  # with its organization.created event
        return doc

    def forget_org(self, org_id: str) -> None:
        self._org_cache.pop(org_id, None)

    async def get_org(self, org_id: str, fresh: bool = False) -> dict[str, Any] | None:
        """Organizations never disappear and their type and country never change, so a found one is
        cached in this process (creating a need costs one store round trip less). Name, language and
        contact can change (`PATCH /v1/organizations/{id}`): whoever shows those asks `fresh`."""
        cached = None if fresh else self._org_cache.get(org_id)
        if cached is not None:
            return cached
        doc = await self.orgs.find_one({"_id": org_id})
        if doc is not None:
            if len(self._org_cache) >= 10_000:
                self._org_cache.clear()
            self._org_cache[org_id] = doc
        return doc

    async def list_orgs(self, org_type: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {}
        if org_type:
            query["type"] = org_type
        if name:
            query["name"] = name
        return await self.orgs.find(query).sort("_id", ASCENDING).to_list(1000)

    async def issue_token(self, org: dict[str, Any], expires_in_days: int | None) -> tuple[str, dict[str, Any]]:
        token = new_token()
        doc = {
            "_id": hash_token(token),
            "token_id": new_id(),
            "organization_id": org["_id"],
            "role": ROLE_BY_ORG_TYPE[org["type"]],
            "created_at": now(),
            "expires_at": now() + timedelta(days=expires_in_days) if expires_in_days else None,
            "revoked_at": None,
        }
        await self.tokens.insert_one(doc)
        return token, doc

    async def revoke_token(self, token_id: str) -> bool:
        return await org_events.revoke_token(self, token_id)  # with its token.revoked event

    # ---- needs and offers ---------------------------------------------------------------------
    @staticmethod
    def _search_text(doc: dict[str, Any]) -> str:
        return fold(" ".join([doc["title"], doc["description"], " ".join(doc.get("keywords", []))]))

    @staticmethod
    def _payload(doc: dict[str, Any]) -> ItemPayload:
        fields = ItemPayload.model_fields
        data = {k: v for k, v in doc.items() if k in fields}
        data["id"] = doc["_id"]
        return ItemPayload.model_validate(data)

    def _event(self, kind: str, action: str, doc: dict[str, Any]) -> Envelope:
        return make_event(f"{kind}.{action}", kind, doc["_id"], self._payload(doc), producer=PRODUCER)  # type: ignore[arg-type]

    async def create_item(
        self,
        kind: str,
        principal: Principal,
        org: dict[str, Any],
        body: ItemFields,
        idempotency_key: str | None,
        request_hash: str,
    ) -> tuple[int, dict[str, Any], bool]:
        """Create a need/offer with its outbox event (and idempotency record) in one transaction.

        Returns (status, public view, replayed): `replayed` is True when the Idempotency-Key was seen before
        and the first answer is repeated (nothing was created)."""
        idem_id = self.idempotency_id(org["_id"], kind, idempotency_key) if idempotency_key else None
        if idem_id:
            prior = await self.idempotency.find_one({"_id": idem_id})
            if prior:
                return (*self._replay(prior, request_hash), True)
        data = _to_bson(body.model_dump(mode="python"))
        data["country"] = data.get("country") or org["country"]
        data["text_language"] = data.get("text_language") or guess_script_language(
            data["title"] + " " + data["description"]
        ) or data["languages"][0]
        ts = now()
        doc = {
            "_id": new_id(),
            "kind": kind,
            "organization_id": org["_id"],
            **data,
            "revision": 1,
            "created_at": ts,
            "updated_at": ts,
        }
        doc["search_text"] = self._search_text(doc)
        view = item_view(doc)

        async def work(session: AsyncClientSession) -> None:
            await self.items[kind].insert_one(doc, session=session)
            await self._emit(session, self._event(kind, "published", doc))
            await self._audit(session, principal, "create", kind, doc["_id"], {"revision": 1})
            if idem_id:
                await self.idempotency.insert_one(
                    {"_id": idem_id, "request_hash": request_hash, "status": 201, "body": _jsonable(view), "created_at": ts},
                    session=session,
                )

        try:
            await in_transaction(self.client, work)
        except DuplicateKeyError:
            # A concurrent retry with the same key won the race: answer as it did.
            prior = await self.idempotency.find_one({"_id": idem_id}) if idem_id else None
            if prior is None:
                raise
            return (*self._replay(prior, request_hash), True)
        self._on_outbox_write()
        return 201, view, False

    @staticmethod
    def idempotency_id(org_id: str, kind: str, key: str) -> str:
        return f"{org_id}:{kind}:{key}"

    @staticmethod
    def _replay(prior: dict[str, Any], request_hash: str) -> tuple[int, dict[str, Any]]:
        if prior["request_hash"] != request_hash:
            raise Conflict("this Idempotency-Key was already used with a different request body", code="idempotency_key_reused")
        return prior["status"], prior["body"]

    async def get_item(self, kind: str, item_id: str) -> dict[str, Any] | None:
        return await self.items[kind].find_one({"_id": item_id})

    @staticmethod
    def _terms(q: str | None) -> list[str]:
        return [t for t in fold(q).split() if t][:8] if q else []

    def list_query(self, filters: dict[str, Any], *, words: bool = True) -> dict[str, Any]:
        """The store query of a list's filters; `words=False` leaves out `q` (the word index's part)."""
        return self._list_query(filters if words else {**filters, "q": None})

    def _list_query(self, filters: dict[str, Any]) -> dict[str, Any]:
        query: dict[str, Any] = {}
        for key in ("sdgs", "sectors", "modalities", "country", "languages", "organization_id"):
            if filters.get(key) is not None:
                query[key] = filters[key]
        if filters.get("country_in") is not None:
            allowed = sorted(filters["country_in"])
            query["country"] = allowed[0] if len(allowed) == 1 else {"$in": allowed}
        query["status"] = filters["status"] if filters.get("status") else {"$ne": "withdrawn"}
        scope = filters.get("scope")
        if scope:
            # the caller's visibility (domain.items.list_scope) overrides the asked status/organization
            if "organization_id" in scope and query.get("organization_id") not in (None, scope["organization_id"]):
                scope = {**scope, "organization_id": {"$in": []}}
            query.update(scope)
        terms = self._terms(filters.get("q"))
        if terms:
            # One condition on search_text, after the equality filters: SecantusDB evaluates an explicit
            # `$and` of regexes on every document (7-8x slower on 20k items, measured); `$all` of regexes
            # means the same (every term present) on MongoDB and SecantusDB alike.
            regexes = [Regex(re.escape(t)) for t in terms]
            query["search_text"] = {"$regex": regexes[0].pattern} if len(regexes) == 1 else {"$all": regexes}
        return query

    async def list_items(
        self, kind: str, filters: dict[str, Any], limit: int, cursor: str | None, sort: str = "recency"
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of items matching every filter. `sort="recency"`: newest first, keyset cursor on `_id`.
        `sort="relevance"` (with `q`): items ranked by how many q terms their title contains, then their
        description, then recency; the cursor is an offset into that ranking (of at most RELEVANCE_WINDOW items)."""
        query = self._list_query(filters)
        terms = self._terms(filters.get("q"))
        if sort == "relevance" and terms:
            return await self._list_by_relevance(kind, query, terms, limit, cursor)
        if cursor:
            query["_id"] = {"$lt": decode_cursor(cursor)}
        docs = await self.items[kind].find(query).sort("_id", DESCENDING).limit(limit + 1).to_list(limit + 1)
        next_cursor = encode_cursor(docs[limit - 1]["_id"]) if len(docs) > limit else None
        return docs[:limit], next_cursor

    async def _list_by_relevance(
        self, kind: str, query: dict[str, Any], terms: list[str], limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        offset = decode_offset_cursor(cursor) if cursor else 0
        coll = self.items[kind]
        candidates = await coll.find(query, {"title": 1, "description": 1}).sort("_id", DESCENDING).limit(RELEVANCE_WINDOW).to_list(RELEVANCE_WINDOW)

        def score(doc: dict[str, Any]) -> tuple[int, int, str]:
            title, description = fold(doc.get("title", "")), fold(doc.get("description", ""))
            return sum(t in title for t in terms), sum(t in description for t in terms), doc["_id"]

        ranked = sorted(candidates, key=score, reverse=True)
        page_ids = [d["_id"] for d in ranked[offset : offset + limit]]
        by_id = {d["_id"]: d for d in await coll.find({"_id": {"$in": page_ids}}).to_list(len(page_ids))} if page_ids else {}
        docs = [by_id[i] for i in page_ids if i in by_id]
        next_cursor = encode_offset_cursor(offset + limit) if len(ranked) > offset + limit else None
        return docs, next_cursor

    async def changed_since(self, kind: str, since: datetime, limit: int = 200) -> list[dict[str, Any]]:
        """Items written after `since`, oldest change first (on the `updated_at` index alone: another
        condition makes SecantusDB scan)."""
        cond = {"updated_at": {"$gt": since}}
        return await self.items[kind].find(cond).sort("updated_at", ASCENDING).limit(limit).to_list(limit)

    async def update_item(
        self, kind: str, item_id: str, principal: Principal, patch: dict[str, Any], expected_revision: int
    ) -> dict[str, Any]:
        current = await self.get_item(kind, item_id)
        if current is None:
            raise NotFound(f"{kind} {item_id} not found")
        item_rules.check_owner(kind, current, principal)
        item_rules.check_editable(kind, current)
        item_rules.check_revision(kind, current, expected_revision)
        model = ITEM_CREATE_MODEL[kind]
        unknown = sorted(set(patch) - set(model.model_fields))
        if unknown:
            raise Invalid(
                "the request is not valid",
                details=[{"path": f"$.{k}", "in": "body", "message": "unknown or read-only field", "type": "extra_forbidden"} for k in unknown],
            )
        editable = {k: current[k] for k in model.model_fields if k in current}
        merged = _to_bson(model.model_validate({**editable, **patch}).model_dump(mode="python"))
        changes = {k: v for k, v in merged.items() if current.get(k) != v}
        ts = now()
        new_doc = {**current, **merged, "revision": current["revision"] + 1, "updated_at": ts}
        new_doc["search_text"] = self._search_text(new_doc)

        async def work(session: AsyncClientSession) -> dict[str, Any] | None:
            res = await self.items[kind].find_one_and_replace(
                {"_id": item_id, "revision": current["revision"]}, new_doc, session=session, return_document=ReturnDocument.AFTER
            )
            if res is None:
                return None
            await self._emit(session, self._event(kind, "updated", new_doc))
            await self._audit(session, principal, "update", kind, item_id, _jsonable(changes))
            return res

        saved = await in_transaction(self.client, work)
        if saved is None:
            raise PreconditionFailed(f"{kind} {item_id} changed while you were editing it; read it again")
        self._on_outbox_write()
        return saved

    async def withdraw_item(self, kind: str, item_id: str, principal: Principal) -> dict[str, Any]:
        current = await self.get_item(kind, item_id)
        if current is None:
            raise NotFound(f"{kind} {item_id} not found")
        item_rules.check_owner(kind, current, principal)
        if current["status"] == "withdrawn":
            return current
        ts = now()

        async def work(session: AsyncClientSession) -> dict[str, Any] | None:
            saved = await self.items[kind].find_one_and_update(
                {"_id": item_id, "status": {"$ne": "withdrawn"}},
                {"$set": {"status": "withdrawn", "withdrawn_at": ts, "updated_at": ts}, "$inc": {"revision": 1}},
                session=session,
                return_document=ReturnDocument.AFTER,
            )
            if saved is None:
                return None
            payload = ItemWithdrawnPayload(id=item_id, kind=kind, organization_id=saved["organization_id"], revision=saved["revision"])  # type: ignore[arg-type]
            await self._emit(session, make_event(f"{kind}.withdrawn", kind, item_id, payload, producer=PRODUCER))  # type: ignore[arg-type]
            await self._audit(session, principal, "withdraw", kind, item_id, {"status": "withdrawn"})
            return saved

        saved = await in_transaction(self.client, work)
        self._on_outbox_write()
        return saved or (await self.get_item(kind, item_id)) or current

    @staticmethod
    def check_owner(kind: str, doc: dict[str, Any], principal: Principal) -> None:
        item_rules.check_owner(kind, doc, principal)

    async def republish_open_items(self) -> int:
        """Queue the current state of every open/draft need and offer again (replay after broker loss)."""
        count = 0
        for kind, coll in self.items.items():
            async for doc in coll.find({"status": {"$in": ["open", "draft", "matched"]}}).sort("_id", ASCENDING):
                async def work(session: AsyncClientSession, doc: dict[str, Any] = doc, kind: str = kind) -> None:
                    await self._emit(session, self._event(kind, "published", doc))

                await in_transaction(self.client, work)
                count += 1
        self._on_outbox_write()
        return count

    # ---- matches (projection of the matcher's events + broker decisions) ---------------------------
    async def apply_match_proposed(self, payload: MatchProposedPayload, occurred_at: datetime) -> bool:
        """Sided events (see projection.py): per-side, version-guarded; legacy events: upsert by
        pair id. A decided match is never overwritten."""
        if payload.side is not None and payload.list_version is not None:
            return await self._apply_sided(payload, occurred_at)
        fields = {**proposal_fields(payload), "status": "proposed", "proposed_at": occurred_at}
        try:
            res = await self.matches.update_one(
                {
                    "_id": payload.match_id,
                    "status": {"$in": ["proposed", "retracted"]},
                    "proposed_at": {"$lte": occurred_at},
                },
                {"$set": fields, "$setOnInsert": {"created_at": now()}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # decided, or a newer proposal is already there
        return res.upserted_id is not None or res.modified_count > 0

    async def apply_match_retracted(self, payload: MatchRetractedPayload, occurred_at: datetime) -> bool:
        if payload.side is not None and payload.list_version is not None:
            return await self._apply_sided(payload, occurred_at)
        res = await self.matches.update_one(
            {"_id": payload.match_id, "status": "proposed", "proposed_at": {"$lte": occurred_at}},
            {"$set": {"status": "retracted", "retracted_reason": payload.reason, "retracted_at": occurred_at}},
        )
        return res.modified_count > 0

    async def _apply_sided(self, payload: MatchProposedPayload | MatchRetractedPayload, occurred_at: datetime) -> bool:
        """Read, decide with the pure `project`, write only if the match is still as read."""
        for _ in range(20):
            current = await self.matches.find_one({"_id": payload.match_id})
            update = sided_update(current, payload, occurred_at)
            if update is None:
                return False
            if await self._write_match(current, payload.match_id, update):
                return True
        raise RuntimeError(f"match {payload.match_id} kept changing under the projection")

    async def _write_match(self, current: dict[str, Any] | None, match_id: str, update: dict[str, Any]) -> bool:
        """Insert, or update only if the match is still as read (False: someone wrote in between)."""
        if current is None:
            try:
                await self.matches.insert_one({"_id": match_id, **update, "created_at": now()})
            except DuplicateKeyError:
                return False
            return True
        res = await self.matches.update_one(self._as_read(current), {"$set": update})
        return res.modified_count > 0

    @staticmethod
    def _as_read(current: dict[str, Any]) -> dict[str, Any]:
        """A filter that matches the match only while its status and sides are as `current` holds them."""
        return {"_id": current["_id"], "status": current["status"], "sides": current.get("sides", {"$exists": False})}

    async def apply_match_events(self, events: list[tuple[Sided, datetime]]) -> int:
        """A batch of match events, same result as applying them one by one in order, in two round
        trips: every match read at once, each written once (its events folded), all writes in one
        unordered bulk. A match written by someone else in between (a broker's decision) is redone
        event by event. Legacy events (no side) are applied one by one. Returns the matches written."""
        if any(p.side is None or p.list_version is None for p, _ in events):
            written = 0
            for payload, at in events:
                apply = self.apply_match_proposed if isinstance(payload, MatchProposedPayload) else self.apply_match_retracted
                written += await apply(payload, at)  # type: ignore[arg-type]
            return written
        by_match: dict[str, list[tuple[Sided, datetime]]] = {}
        for payload, at in events:
            by_match.setdefault(payload.match_id, []).append((payload, at))
        current = {doc["_id"]: doc async for doc in self.matches.find({"_id": {"$in": list(by_match)}})}
        updates = {match_id: update for match_id, its in by_match.items() if (update := fold_updates(current.get(match_id), its)) is not None}
        await self._add_facets(updates, current, by_match)
        ops: list[Any] = []
        op_ids: list[str] = []
        for match_id, update in updates.items():
            held = current.get(match_id)
            # a guarded upsert: if the match moved since it was read, the insert it falls back to is a
            # duplicate key, which names the op that lost
            ops.append(InsertOne({"_id": match_id, **update, "created_at": now()}) if held is None
                       else UpdateOne(self._as_read(held), {"$set": update}, upsert=True))
            op_ids.append(match_id)
        for match_id, written in zip(op_ids, await bulk_refusals(self.matches, ops), strict=True):
            if not written:
                for payload, at in by_match[match_id]:
                    await self._apply_sided(payload, at)
        return len(ops)

    async def _add_facets(self, updates: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]],
                          by_match: dict[str, list[tuple[Sided, datetime]]]) -> None:
        """New matches (and ones whose item changed) get their filter facets with the write that makes
        them, instead of a second write by the background enricher."""
        pairs = {m: (by_match[m][0][0].need_id, by_match[m][0][0].offer_id) for m in updates if current.get(m, {}).get("facets_v") is None}
        for m, facets in (await self.match_facets_of(pairs)).items():
            updates[m].update(facets)

    async def match_facets_of(self, pairs: dict[str, tuple[str, str]]) -> dict[str, dict[str, Any]]:
        """match id → its facets, for matches given as (need id, offer id): one item lookup per kind."""
        if not pairs:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for kind, ids in (("need", {n for n, _ in pairs.values()}), ("offer", {o for _, o in pairs.values()})):
            found |= {f"{kind}:{d['_id']}": d async for d in self.items[kind].find({"_id": {"$in": list(ids)}}, FACET_FIELDS)}
        return {m: match_facets(found.get(f"need:{n}"), found.get(f"offer:{o}")) for m, (n, o) in pairs.items()}

    async def get_match(self, match_id: str) -> dict[str, Any] | None:
        return await self.matches.find_one({"_id": match_id})

    async def list_matches(self, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        return await self.matches.find(query).sort([("score", DESCENDING), ("_id", ASCENDING)]).limit(limit).to_list(limit)


def _to_bson(value: Any) -> Any:
    """BSON has datetimes but no plain dates: keep datetimes, store dates as ISO strings."""
    if isinstance(value, dict):
        return {k: _to_bson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_bson(v) for v in value]
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
