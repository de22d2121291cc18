"""Catalog wiring: FastAPI app, Mongo store, outbox relay and match projection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from services.catalog.api import router
from services.catalog import metrics as catalog_metrics
from services.catalog.introspect import router as introspect_router
from services.catalog.importer import MAX_FILE_BYTES
from services.catalog.outbox import OutboxRelay
from services.catalog.projection import match_projection
from services.catalog.ratelimit import RateLimiter
from services.catalog.store import CatalogStore
from ssmatch.auth import TokenAuthority
from ssmatch.http import BodySizeLimitMiddleware, CorrelationIdMiddleware, install_error_handlers
from ssmatch.mongo import make_client, ping
from ssmatch.settings import Settings, get_settings

MAX_BODY_BYTES = 256 * 1024
MAX_IMPORT_BODY_BYTES = MAX_FILE_BYTES + 64 * 1024  # the file plus multipart framing
IMPORT_PATH = "/v1/imports"


class _BodyLimits:
    """Bodies over 256 KB are refused (413), except uploads to /v1/imports, which may carry a 10 MB file."""

    def __init__(self, app: ASGIApp) -> None:
        self.small = BodySizeLimitMiddleware(app, max_bytes=MAX_BODY_BYTES)
        self.large = BodySizeLimitMiddleware(app, max_bytes=MAX_IMPORT_BODY_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limited = self.large if scope["type"] == "http" and scope.get("path") == IMPORT_PATH else self.small
        await limited(scope, receive, send)


def _allow_every_method_of_the_path(app: FastAPI) -> None:
    """405 answers name every method of the path in `Allow` (Starlette names only the first route's)."""
    import re

    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import Request
    from starlette.routing import compile_path

    from ssmatch.http import _CODES, error_response

    table: list[tuple[re.Pattern[str], set[str]]] = []

    def allowed(path: str) -> set[str]:
        if not table:
            for template, operations in app.openapi().get("paths", {}).items():
                table.append((compile_path(template)[0], {m.upper() for m in operations}))
        return set().union(*(methods for regex, methods in table if regex.match(path)))

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
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None, *, start_background: bool = True) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = make_client(settings.mongodb_uri)
        await ping(client)
        relay_holder: dict[str, OutboxRelay] = {}
        store = CatalogStore(client, settings.catalog_db, on_outbox_write=lambda: relay_holder["relay"].wake())
        await store.init_indexes()
        relay = OutboxRelay(store.outbox, settings)
        relay_holder["relay"] = relay
        projection = match_projection(settings, store)
        app.state.store = store
        app.state.relay = relay
        app.state.projection = projection
        app.state.authority = TokenAuthority(store.db, settings.admin_token, local=True)  # the catalog owns tokens
        app.state.settings = settings
        if start_background:
            relay.start()
            projection.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
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
    # Per-token token bucket, in this process (see ratelimit.py for what that means with replicas).
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    install_error_handlers(app)
    _allow_every_method_of_the_path(app)
    app.add_middleware(GZipMiddleware, minimum_size=800)
    app.add_middleware(_BodyLimits)
    app.add_middleware(CorrelationIdMiddleware)
    app.include_router(introspect_router)  # before the main router: GET /v1/tokens/self
    app.include_router(router)
    _document_bearer_auth(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        ready = bool(getattr(app.state, "ready", False))
        return JSONResponse({"status": "ok" if ready else "starting"}, status_code=200 if ready else 503)

    catalog_metrics.install(app)  # Prometheus /metrics and /asyncapi.json

    return app
