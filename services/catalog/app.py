"""Catalog wiring: FastAPI app, Mongo store, outbox relay and match projection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.catalog import metrics as catalog_metrics
from services.catalog.adapters.matches import FacetEnricher, MatchRepository
from services.catalog.adapters.meaning import MeaningClient
from services.catalog.adapters.word_index import WordIndex
from services.catalog.api import router
from services.catalog.api.errors import install_domain_errors
from services.catalog.importer import MAX_FILE_BYTES
from services.catalog.introspect import router as introspect_router
from services.catalog.outbox import OutboxRelay
from services.catalog.projection import match_projection
from services.catalog.ratelimit import RateLimiter
from services.catalog.search_sync import IndexSync
from services.catalog.service import Catalog
from services.catalog.store import CatalogStore
from services.catalog.ui import mount as mount_workspace
from services.catalog.ui.sessions import Sessions
from ssmatch.auth import TokenAuthority
from ssmatch.http import BodySizeLimitMiddleware, CorrelationIdMiddleware, install_error_handlers
from ssmatch.mongo import make_client, ping
from ssmatch.settings import Settings, get_settings

MAX_BODY_BYTES = 256 * 1024
MAX_IMPORT_BODY_BYTES = MAX_FILE_BYTES + 64 * 1024  # the file plus multipart framing
IMPORT_PATH = "/v1/imports"


class _BodyLimits:
    """Bodies over 256 KB are refused (413), except uploads to /v1/imports, which may carry a 10 MB file.

    A body without Content-Length (chunked) is read here, up to the limit, before the app sees it: an
    oversized one is answered 413 (refusing it inside the app's body parser would surface as 422)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.small = BodySizeLimitMiddleware(app, max_bytes=MAX_BODY_BYTES)
        self.large = BodySizeLimitMiddleware(app, max_bytes=MAX_IMPORT_BODY_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        large = scope.get("path") in (IMPORT_PATH, "/ui/import")
        limited = self.large if large else self.small
        headers = dict(scope.get("headers", []))
        if b"content-length" in headers or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await limited(scope, receive, send)
            return
        limit = MAX_IMPORT_BODY_BYTES if large else MAX_BODY_BYTES
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                from ssmatch.http import error_response

                await error_response(413, "payload_too_large", f"request body over {limit} bytes")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _allow_every_method_of_the_path(app: FastAPI) -> None:
    """405 answers name every method of the path in `Allow` (Starlette names only the first route's)."""
    import re

    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import Request
    from starlette.routing import compile_path

    from ssmatch.http import _CODES, error_response

    table: list[tuple[re.Pattern[str], set[str], bool]] = []

    def allowed(path: str) -> set[str]:
        if not table:
            for template, operations in app.openapi().get("paths", {}).items():
                table.append((compile_path(template)[0], {m.upper() for m in operations}, "{" not in template))
        hits = [(methods, literal) for regex, methods, literal in table if regex.match(path)]
        # a literal path (/v1/matches/decisions) is its own resource, not an id of /v1/matches/{match_id}
        literal = [methods for methods, is_literal in hits if is_literal]
        return set().union(*(literal or [methods for methods, _ in hits]))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (undecodable JSON or multipart): an invalid body, like any other.
            return error_response(422, "validation_failed", "the request body cannot be parsed", [{"path": "$", "in": "body", "message": str(exc.detail)}])
        if exc.status_code == 405:
            methods = allowed(request.url.path)
            if methods:
                headers["Allow"] = ", ".join(sorted(methods))
        code = _CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), None, headers or None)


def _document_bearer_auth(app: FastAPI) -> None:
    """Declare `Authorization: Bearer <token>` on every /v1 operation in the OpenAPI document (the check
    itself is done by AuthedRoute, before the body is read)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "a token from POST /v1/tokens, or SSMATCH_ADMIN_TOKEN",
            }
            for path, operations in schema.get("paths", {}).items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
                for method, operation in operations.items():
                    # If-Match is required on PATCH (428 without it): say so, though the code reads it as optional
                    for parameter in operation.get("parameters", []) if method == "patch" else []:
                        if parameter.get("in") == "header" and parameter.get("name", "").lower() == "if-match":
                            parameter["required"] = True
                            parameter["schema"] = {"type": "string", "minLength": 1}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _pydantic_errors_are_422(app: FastAPI) -> None:
    """A model built inside a handler (e.g. the queue's filters) that refuses its input is a 422 too."""
    from pydantic import ValidationError
    from starlette.requests import Request

    from ssmatch.http import error_response, validation_details

    @app.exception_handler(ValidationError)
    async def _invalid(_: Request, exc: ValidationError) -> JSONResponse:
        return error_response(422, "validation_failed", "the request is not valid", validation_details(list(exc.errors())))


def create_app(settings: Settings | None = None, *, start_background: bool = True, start_search: bool | None = None) -> FastAPI:
    """`start_background` starts the Kafka-facing tasks (relay, projection, enricher); `start_search`
    (default: the same) the word index's sync, which needs only the store."""
    settings = settings or get_settings()
    search_on = start_background if start_search is None else start_search

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = make_client(settings.mongodb_uri)
        await ping(client)
        relay_holder: dict[str, OutboxRelay] = {}

        def written() -> None:  # an item or organization was written by this process
            relay_holder["relay"].wake()

        store = CatalogStore(client, settings.catalog_db, on_outbox_write=written)
        await store.init_indexes()
        # the word index is this process's read model; without its sync, `q` is answered by the store
        words = await asyncio.to_thread(WordIndex, settings.search_index_path) if search_on else None
        meaning = MeaningClient(settings.matcher_base_url, settings.search_meaning_timeout_s)
        catalog = Catalog(store, MatchRepository(store), words=words, meaning=meaning)
        index_sync = IndexSync(store, words) if words is not None else None
        await catalog.matches.init_indexes()
        app.state.ui_sessions = Sessions(store.db)
        await app.state.ui_sessions.init_indexes()  # expired workspace sessions are swept by TTL
        relay = OutboxRelay(store.outbox, settings)
        relay_holder["relay"] = relay
        projection = match_projection(settings, store)
        enricher = FacetEnricher(catalog.matches)
        app.state.store = store
        app.state.catalog = catalog  # the service layer (services/catalog/service.py) for the API and /ui
        app.state.relay = relay
        app.state.projection = projection
        app.state.enricher = enricher
        app.state.words = words
        app.state.index_sync = index_sync
        # the catalog owns tokens; valid answers kept catalog_token_cache_s, dropped at once on revocation here
        app.state.authority = TokenAuthority(store.db, settings.admin_token, local=True, cache_ttl_s=settings.catalog_token_cache_s)
        if start_background:
            relay.start()
            projection.start()
            enricher.start()
        if index_sync is not None:
            index_sync.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await enricher.stop()
            if index_sync is not None:
                await index_sync.stop()
            await meaning.close()
            await projection.stop()
            await relay.stop()
            await client.close()

    app = FastAPI(
        title="South-South Match — catalog",
        version="1.0.0",
        description="Needs, offers, organizations, taxonomy and the broker match queue.",
        lifespan=lifespan,
    )
    app.state.ready = False
    # Per-token moving windows, in this process or shared through the store (see ratelimit.py).
    app.state.rate_limiter = RateLimiter.from_settings(
        settings.rate_limit_per_minute, settings.rate_limit_burst, settings.rate_limit_storage,
        settings.mongodb_uri, settings.catalog_db,
    )
    install_error_handlers(app)
    install_domain_errors(app)
    _pydantic_errors_are_422(app)
    _allow_every_method_of_the_path(app)
    app.add_middleware(GZipMiddleware, minimum_size=800)
    app.add_middleware(_BodyLimits)
    app.add_middleware(CorrelationIdMiddleware)
    app.include_router(introspect_router)  # before the main router: GET /v1/tokens/self
    app.include_router(router)
    mount_workspace(app, settings)  # the web workspace under /ui
    _document_bearer_auth(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        ready = bool(getattr(app.state, "ready", False))
        return JSONResponse({"status": "ok" if ready else "starting"}, status_code=200 if ready else 503)

    catalog_metrics.install(app)  # Prometheus /metrics and /asyncapi.json

    return app
