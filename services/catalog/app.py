"""Catalog wiring: FastAPI app, Mongo store, outbox relay and match projection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse

from services.catalog.api import router
from services.catalog.outbox import OutboxRelay
from services.catalog.projection import match_projection
from services.catalog.store import CatalogStore
from ssmatch.auth import TokenAuthority
from ssmatch.http import BodySizeLimitMiddleware, CorrelationIdMiddleware, install_error_handlers
from ssmatch.mongo import make_client, ping
from ssmatch.settings import Settings, get_settings

MAX_BODY_BYTES = 256 * 1024


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
        app.state.authority = TokenAuthority(store.db, settings.admin_token)
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
    install_error_handlers(app)
    app.add_middleware(GZipMiddleware, minimum_size=800)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(CorrelationIdMiddleware)
    app.include_router(router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        ready = bool(getattr(app.state, "ready", False))
        return JSONResponse({"status": "ok" if ready else "starting"}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> dict[str, Any]:
        relay: OutboxRelay = app.state.relay
        return {
            "outbox": await relay.lag(),
            "outbox_published_total": relay.published_total,
            "outbox_relay_errors_total": relay.errors_total,
            "outbox_relay_last_error": relay.last_error,
            "match_events_processed_total": app.state.projection.processed_total,
            "match_events_deadlettered_total": app.state.projection.deadlettered_total,
        }

    return app
