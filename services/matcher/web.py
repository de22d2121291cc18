"""The matcher's HTTP views on MATCHER_PORT (served by faust's web server).

/healthz and /metrics only read counters: scoring runs in threads, so they answer while it works.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import faust
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.matcher.lists import to_match_item
from services.matcher.metrics import CONTENT_TYPE
from services.matcher import search
from services.matcher.runtime import MatcherRuntime
from services.matcher.scoring import MatchItem, item_text, score_pair
from ssmatch.auth import TokenAuthority
from ssmatch.mongo import make_client


class ScoreRequest(BaseModel):
    """Either stored ids or full items (as in the catalog's need/offer JSON)."""

    model_config = ConfigDict(extra="forbid")
    need_id: str | None = None
    offer_id: str | None = None
    need: dict[str, Any] | None = None
    offer: dict[str, Any] | None = None


class SearchRequest(BaseModel):
    """A search by meaning: the query text, the kind of item, how many, and the list filters."""

    model_config = ConfigDict(extra="forbid")
    q: str = Field(min_length=1, max_length=1000)
    kind: Literal["need", "offer"]
    k: int = Field(20, ge=1, le=200)
    filters: dict[str, list[str | int]] = Field(default_factory=dict)

    @field_validator("q")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip() or any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
            raise ValueError("q must hold text without control characters")
        return value

    @field_validator("filters")
    @classmethod
    def _known(cls, value: dict[str, list[str | int]]) -> dict[str, list[str | int]]:
        unknown = sorted(set(value) - search.FILTER_FIELDS)
        if unknown:
            raise ValueError(f"unknown filters {unknown}: use {sorted(search.FILTER_FIELDS)}")
        return value


def _error(view: View, status: int, code: str, message: str, details: Any = None) -> Response:
    return view.json({"error": {"code": code, "message": message, "details": details}}, status=status)


def register(app: faust.App, runtime: MatcherRuntime) -> None:
    authority_holder: dict[str, TokenAuthority] = {}

    async def authorized(view: View, request: Request) -> Response | None:
        if "a" not in authority_holder:
            db = make_client(runtime.settings.mongodb_uri).get_database(runtime.settings.catalog_db)
            authority_holder["a"] = TokenAuthority(db, runtime.settings.admin_token)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(view, 401, "unauthorized", "missing bearer token")
        if await authority_holder["a"].resolve(token.strip()) is None:
            return _error(view, 401, "unauthorized", "invalid, expired or revoked token")
        return None

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            ready = runtime.ready
            return self.json(
                {"status": "ok" if ready else "starting", "assigned": runtime.assigned, "state_loaded": runtime.loaded},
                status=200 if ready else 503,
            )

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            m = runtime.metrics
            if runtime.service is not None:
                for kind, docs in runtime.service.index.docs.items():
                    m.items.labels(kind).set(len(docs))
            try:
                consumer = app.consumer
                for tp in consumer.assignment():
                    high = consumer.highwater(tp)
                    pos = await consumer.position(tp) if hasattr(consumer, "position") else None
                    if high is not None and pos is not None:
                        m.lag.labels(tp.topic, str(tp.partition)).set(max(0, int(high) - int(pos)))
            except Exception:  # noqa: BLE001 - lag is best effort (before the first assignment)
                pass
            return self.bytes(m.render(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/v1/rules")
    class RulesView(View):
        async def get(self, request: Request) -> Response:
            if (denied := await authorized(self, request)) is not None:
                return denied
            return self.json({"version": runtime.rules.version, "rules": runtime.rules.model_dump(mode="json"),
                              "centring_version": runtime.centring.version if runtime.centring else None})

    @app.page("/v1/centring")
    class CentringView(View):
        async def get(self, request: Request) -> Response:
            if (denied := await authorized(self, request)) is not None:
                return denied
            await runtime.ensure_started()
            snap = runtime.centring
            assert snap is not None
            return self.json({"version": snap.version, "items": snap.items, "languages": sorted(k for k in snap.centroids.table if k.isalpha())})

        async def post(self, request: Request) -> Response:
            """Build a new snapshot from the open items, store it; every worker rescores with it."""
            if (denied := await authorized(self, request)) is not None:
                return denied
            snap = await runtime.refresh_centring()
            return self.json({"version": snap.version, "items": snap.items})

    @app.page("/v1/score")
    class ScoreView(View):
        async def post(self, request: Request) -> Response:
            """Explain any need/offer pair with the rules and centring snapshot in force; stores nothing."""
            if (denied := await authorized(self, request)) is not None:
                return denied
            try:
                body = ScoreRequest.model_validate(json.loads(await request.read() or b"{}"))
            except (ValueError, ValidationError) as exc:
                return _error(self, 422, "validation_failed", "the request is not valid", str(exc)[:1000])
            service = await runtime.ensure_started()
            snap = runtime.centring
            assert snap is not None
            dims = snap.centroids.dimensions
            items: dict[str, MatchItem] = {}
            for kind in ("need", "offer"):
                given, ref = getattr(body, kind), getattr(body, f"{kind}_id")
                if given is not None:
                    try:
                        items[kind] = MatchItem.model_validate({"id": f"adhoc-{kind}", "organization_id": f"adhoc-{kind}-org", **given, "kind": kind})
                    except ValidationError as exc:
                        return _error(self, 422, "validation_failed", f"{kind} is not valid", json.loads(exc.json()))
                    vec = items[kind].embedding
                    if vec is not None and len(vec) != dims:
                        return _error(self, 422, "validation_failed", f"{kind}.embedding must have {dims} numbers, not {len(vec)}",
                                      {"field": f"{kind}.embedding", "expected_length": dims, "length": len(vec)})
                elif ref is not None:
                    doc = service.index.get(kind, ref)
                    if doc is None or "title" not in doc:
                        return _error(self, 404, "not_found", f"{kind} {ref} is not known to the matcher")
                    items[kind] = to_match_item(doc)
                else:
                    return _error(self, 422, "validation_failed", f"give {kind} or {kind}_id")
            missing = [k for k, it in items.items() if it.embedding is None]
            if missing:
                texts = [item_text(items[k]) for k in missing]
                vectors = await asyncio.to_thread(runtime.embed, texts)
                for k, vec in zip(missing, vectors, strict=True):
                    items[k] = items[k].model_copy(update={"embedding": [float(x) for x in vec]})
            score = score_pair(items["need"], items["offer"], runtime.rules, centroids=snap.centroids)
            return self.json({"score": score.total, "excluded": score.excluded, "explanation": score.explanation(),
                              "rules_version": runtime.rules.version, "centring_version": snap.version})

    @app.page("/v1/search")
    class SearchView(View):
        async def post(self, request: Request) -> Response:
            """The open items nearest to the query by meaning (any language): the query is embedded once
            with the matcher's model, then ranked against every open item's vector."""
            if (denied := await authorized(self, request)) is not None:
                return denied
            try:
                body = SearchRequest.model_validate(json.loads(await request.read() or b"{}"))
            except (ValueError, ValidationError) as exc:
                return _error(self, 422, "validation_failed", "the request is not valid", str(exc)[:1000])
            service = await runtime.ensure_started()
            vector = (await asyncio.to_thread(runtime.embed, [body.q]))[0]
            ids, matrix = service.index.vectors(body.kind)
            docs = service.index.docs[body.kind]
            allowed = (lambda i: search.passes(docs.get(i), body.filters)) if body.filters else None
            return self.json(search.nearest(ids, matrix, vector, body.k, allowed).view())
