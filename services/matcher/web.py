"""The matcher's HTTP views on MATCHER_PORT (served by faust's web server).

/healthz and /metrics only read counters: scoring runs in threads, so they answer while it works.
Every other answer follows the project's contract: JSON, errors as `{error: {code, message,
details}}` (also for unknown paths, wrong methods and oversized bodies: a middleware on faust's
aiohttp application), described by the OpenAPI document at /openapi.json (`openapi.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust
from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View
from pydantic import BaseModel, ValidationError

from services.matcher import openapi, search
from services.matcher.http_models import MAX_BODY_BYTES, ScoreRequest, SearchRequest
from services.matcher.lists import to_match_item
from services.matcher.metrics import CONTENT_TYPE
from services.matcher.runtime import MatcherRuntime
from services.matcher.scoring import MatchItem, item_text, score_pair
from ssmatch.auth import Principal, TokenAuthority
from ssmatch.http import ApiError, error_code

log = logging.getLogger(__name__)
#: how old the snapshot of the open items' vectors a search ranks may be (the catalog keeps answers 10 s)
CORPUS_MAX_AGE_S = 1.0
M = TypeVar("M", bound=BaseModel)


def _error(view: View, status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None) -> Response:
    return view.json({"error": {"code": code, "message": message, "details": details}}, status=status, headers=headers)


def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> aiohttp_web.Response:
    body = {"error": {"code": error_code(status), "message": message, "details": None}}
    return aiohttp_web.json_response(body, status=status, headers=headers)


@aiohttp_web.middleware
async def json_errors(request: aiohttp_web.Request, handler: Callable[[aiohttp_web.Request], Awaitable[Any]]) -> Any:
    """aiohttp's own answers (unknown path, wrong method, body too large) in the contract's shape;
    an unexpected exception is logged and answered 500 in that shape, never a traceback."""
    try:
        return await handler(request)
    except aiohttp_web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error_response(exc.status, exc.reason, headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("matcher web request failed", extra={"path": request.path})
        return _error_response(500, "internal error")


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


async def _read_json(view: View, request: Request, model: type[M]) -> M | Response:
    """The body as `model`, or the 4xx that says why not (413 over 1 MB, 422 otherwise). Callers test
    for the model: faust's `Response` is an abstract type the driver's responses are not instances of."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _error(view, 413, "payload_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        raw = await request.content.read(MAX_BODY_BYTES + 1)
    except aiohttp_web.HTTPRequestEntityTooLarge:
        raw = b"x" * (MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        return _error(view, 413, "payload_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw or b"{}", parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        return _error(view, 422, "validation_failed", "the body is not JSON", [{"path": "$", "message": str(exc)[:300]}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [{"path": ".".join(str(p) for p in e["loc"]) or "$", "message": e["msg"]} for e in exc.errors()[:50]]
        return _error(view, 422, "validation_failed", "the request is not valid", details)


def _visible(doc: dict[str, Any], who: Principal) -> bool:
    """An open item is anyone's to score; a withdrawn or expired one only its owner's and staff's."""
    return doc.get("status") == "open" or who.role in ("admin", "broker") or doc.get("organization_id") == who.organization_id


def register(app: faust.App, runtime: MatcherRuntime) -> None:
    app.web.web_app.middlewares.append(json_errors)
    # tokens are the catalog's: asked over HTTP (introspection, cached ≤ 60 s), never read from its database
    authority = TokenAuthority(None, runtime.settings.admin_token, catalog_url=runtime.settings.catalog_base_url,
                               cache_ttl_s=runtime.settings.token_cache_s)
    # repeated searches are not embedded again; concurrent ones are embedded and ranked in batches
    searcher = search.Searcher(search.QueryVectors(runtime.embed))
    corpora: dict[str, tuple[float, tuple[int, int], search.Corpus]] = {}

    def corpus_of(service: Any, kind: str) -> search.Corpus:
        """The open items' vectors as a snapshot at most `CORPUS_MAX_AGE_S` old, taken here on the event
        loop (where the agents write them), so the search thread reads a copy that never changes under
        it. A copy for every search cost ~110 ms at 100,000 items (measured), more than the search; a
        snapshot is taken again only once an item was written or dropped since (and what the searches
        derived from it, the corpus mean and the filtered row sets, lives as long as it does)."""
        now = time.monotonic()
        held = corpora.get(kind)
        version = (id(service.index), service.index.version(kind))
        if held is None or (now - held[0] > CORPUS_MAX_AGE_S and held[1] != version):
            ids, matrix, columns = service.index.search_view(kind)
            held = corpora[kind] = (now, version, search.Corpus(ids, matrix, service.index.docs[kind], search.Columns(columns)))
        return held[2]

    async def caller(view: View, request: Request) -> Principal | Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(view, 401, "unauthorized", "missing bearer token")
        try:
            principal = await authority.resolve(token.strip())
        except ApiError as exc:  # the catalog cannot be asked right now: 503 with Retry-After, not a 500
            return _error(view, exc.status, exc.code, exc.message, exc.details, exc.headers)
        if principal is None:
            return _error(view, 401, "unauthorized", "invalid, expired or revoked token")
        return principal

    async def caller_and_body(view: View, request: Request, model: type[M]) -> tuple[Principal, M] | Response:
        """The caller, then the body as `model`: or the 401/503/413/422 that says why not."""
        if not isinstance(who := await caller(view, request), Principal):
            return who
        body = await _read_json(view, request, model)
        return (who, body) if isinstance(body, model) else body

    @app.page("/openapi.json")
    class OpenApiView(View):
        async def get(self, request: Request) -> Response:
            return self.json(openapi.document())

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            ready = runtime.ready
            return self.json(
                {"status": "ok" if ready else "starting", "assigned": runtime.assigned, "state_loaded": runtime.loaded},
                status=200 if ready else 503,
            )

    @app.page("/metrics")
    class MetricsView(View):
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
                log.debug("consumer lag not available yet")
            return self.bytes(m.render(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/v1/rules")
    class RulesView(View):
        async def get(self, request: Request) -> Response:
            if not isinstance(who := await caller(self, request), Principal):
                return who
            return self.json({"version": runtime.rules.version, "rules": runtime.rules.model_dump(mode="json"),
                              "centring_version": runtime.centring.version if runtime.centring else None})

    @app.page("/v1/centring")
    class CentringView(View):
        async def get(self, request: Request) -> Response:
            if not isinstance(who := await caller(self, request), Principal):
                return who
            await runtime.ensure_started()
            snap = runtime.centring
            assert snap is not None
            return self.json({"version": snap.version, "items": snap.items, "languages": sorted(k for k in snap.centroids.table if k.isalpha())})

        async def post(self, request: Request) -> Response:
            """Build a new snapshot from the open items, store it; every worker rescores with it (admin
            only: it re-proposes across the whole catalogue)."""
            if not isinstance(who := await caller(self, request), Principal):
                return who
            if not who.is_admin:
                return _error(self, 403, "forbidden", "only an administrator may rebuild the centring snapshot")
            snap = await runtime.refresh_centring()
            return self.json({"version": snap.version, "items": snap.items})

    @app.page("/v1/search")
    class SearchView(View):
        async def post(self, request: Request) -> Response:
            """The open items nearest to the query by meaning (any language): the query is embedded once
            with the matcher's model, then ranked against every open item's vector (open items only:
            nothing private is found)."""
            asked = await caller_and_body(self, request, SearchRequest)
            if not isinstance(asked, tuple):
                return asked
            _, body = asked
            deadline = search.deadline_of(request.headers.get(search.BUDGET_HEADER))
            service = await runtime.ensure_started()
            question = search.Question(corpus_of(service, body.kind), body.q, body.k, body.filters, deadline)
            try:
                found = await searcher.search(question)
            except search.Expired:
                return _error(self, 503, "unavailable", "the search waited longer than the caller's budget")
            return self.json(found.view())

    @app.page("/v1/score")
    class ScoreView(View):
        async def post(self, request: Request) -> Response:
            """Explain any need/offer pair with the rules and centring snapshot in force; stores nothing."""
            asked = await caller_and_body(self, request, ScoreRequest)
            if not isinstance(asked, tuple):
                return asked
            who, body = asked
            service = await runtime.ensure_started()
            snap = runtime.centring
            assert snap is not None
            dims = snap.centroids.dimensions
            items: dict[str, MatchItem] = {}
            for kind in ("need", "offer"):
                given, ref = getattr(body, kind), getattr(body, f"{kind}_id")
                if given is not None:
                    items[kind] = MatchItem.model_validate({**given.model_dump(), "id": f"adhoc-{kind}",
                                                            "organization_id": f"adhoc-{kind}-org", "kind": kind})
                    vec = items[kind].embedding
                    if vec is not None and len(vec) != dims:
                        return _error(self, 422, "validation_failed", f"{kind}.embedding must have {dims} numbers, not {len(vec)}",
                                      {"field": f"{kind}.embedding", "expected_length": dims, "length": len(vec)})
                elif ref is not None:
                    doc = service.index.get(kind, ref)
                    if doc is None or "title" not in doc or not _visible(doc, who):
                        return _error(self, 404, "not_found", f"{kind} {ref} is not known to the matcher")
                    items[kind] = to_match_item({**doc, "embedding": service.index.embedding(kind, ref)})
                else:
                    return _error(self, 422, "validation_failed", f"give {kind} or {kind}_id")
            missing = [k for k, it in items.items() if it.embedding is None]
            if missing:
                texts = [item_text(items[k]) for k in missing]
                vectors = await asyncio.to_thread(runtime.embed, texts)
                for k, vec in zip(missing, vectors, strict=True):
                    items[k] = items[k].model_copy(update={"embedding": [float(x) for x in vec]})
            score = score_pair(items["need"], items["offer"], runtime.rules, centroids=snap.centroids)
            return self.json({"score": min(1.0, max(0.0, score.total)), "excluded": score.excluded, "explanation": score.explanation(),
                              "rules_version": runtime.rules.version, "centring_version": snap.version})
