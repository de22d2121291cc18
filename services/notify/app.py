"""Notify wiring: FastAPI app, inbox store, its own directory projection and the event consumer.

Notify reads no other service's database: organizations and items come from the catalog's events
(``Directory``), and bearer tokens are checked by asking the catalog (``TokenAuthority``, cached).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from services.notify.agents import notify_consumer
from services.notify.api import router
from services.notify.delivery import DeliveryStore, DeliveryWorker
from services.notify.directory import Directory
from services.notify.inbox import InboxStore
from services.notify.limits import BufferedBodyLimit, TokenRateLimit
from services.notify.reminders import ExpiryReminder
from services.notify.subscriptions import SubscriptionStore
from ssmatch.auth import TokenAuthority
from ssmatch.http import _CODES, CorrelationIdMiddleware, error_response, install_error_handlers
from ssmatch.metrics import PrometheusMiddleware, ServiceMetrics, consumer_lag
from ssmatch.mongo import make_client, ping
from ssmatch.settings import Settings, get_settings


def _methods_by_path(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    return [(compile_path(t)[0], {m.upper() for m in ops}) for t, ops in app.openapi().get("paths", {}).items()]


def _install_method_answers(app: FastAPI) -> None:
    """``OPTIONS`` answers 204 with every method of the path in ``Allow``, and so does a 405 (Starlette
    names only the first matching route's methods)."""
    table: list[tuple[re.Pattern[str], set[str]]] = []

    def allowed(path: str) -> set[str]:
        if not table:
            table.extend(_methods_by_path(app))
        return set().union(*(methods for regex, methods in table if regex.match(path)))

    @app.middleware("http")
    async def options(request: Request, call_next: Any) -> Response:
        if request.method == "OPTIONS":
            methods = allowed(request.url.path)
            if methods:
                return Response(status_code=204, headers={"Allow": ", ".join(sorted(methods | {"OPTIONS"}))})
            return error_response(404, "not_found", "Not Found")
        return await call_next(request)  # type: ignore[no-any-return]

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 400:
            return error_response(422, "validation_failed", "the request body cannot be parsed",
                                  [{"path": "$", "in": "body", "message": str(exc.detail)}])
        if exc.status_code == 405 and (methods := allowed(request.url.path)):
            headers["Allow"] = ", ".join(sorted(methods | {"OPTIONS"}))
        return error_response(exc.status_code, _CODES.get(exc.status_code, "error"), str(exc.detail), None, headers or None)


def _document_bearer_auth(app: FastAPI) -> None:
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer", "description": "a token from the catalog's POST /v1/tokens, or SSMATCH_ADMIN_TOKEN",
            }
            for path, operations in schema.get("paths", {}).items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_metrics(app: FastAPI, metrics: ServiceMetrics) -> None:
    """Counters read from the components' totals, gauges refreshed from the store at each scrape."""
    state = app.state
    metrics.counter_from("ssmatch_events_processed", "Events handled by this process.", ("consumer",),
                         lambda: {("notify",): state.consumer.processed_total})
    metrics.counter_from("ssmatch_events_deadlettered", "Events this process sent to the dead-letter topic.", ("consumer",),
                         lambda: {("notify",): state.consumer.deadlettered_total})
    metrics.counter_from("ssmatch_notify_deliveries", "Delivery attempts by channel and outcome (sent, retried, failed, cancelled).",
                         ("channel", "outcome"), lambda: dict(state.worker.outcomes))
    metrics.counter_from("ssmatch_notify_expiry_reminders", "Expiry reminders added to inboxes.", (),
                         lambda: {(): state.reminder.reminded_total})
    metrics.counter_from("ssmatch_rate_limited_requests", "Requests refused with 429.", (), lambda: {(): state.rate_limit.limited_total})
    metrics.counter_from("ssmatch_token_introspections", "Token checks sent to the catalog (cache misses).", (),
                         lambda: {(): state.authority.lookups_total})
    lag = metrics.gauge("ssmatch_consumer_lag_records", "Records behind the end of the assigned partitions (a lower bound on the embedded broker).", ("consumer",))
    backlog = metrics.gauge("ssmatch_notify_delivery_records", "Delivery records in the store by status.", ("status",))
    oldest_due = metrics.gauge("ssmatch_notify_oldest_due_age_seconds", "How long the oldest due pending delivery has waited (0: none).")
    svc = metrics.service

    async def refresh() -> None:
        behind = await consumer_lag(getattr(state.consumer, "_consumer", None))
        if behind is not None:
            lag.labels(svc, "notify").set(behind)
        coll = state.deliveries.coll
        for status in ("pending", "sending", "sent", "failed", "cancelled"):
            backlog.labels(svc, status).set(await coll.count_documents({"status": status}))
        now = datetime.now(UTC)
        oldest = await coll.find_one({"status": "pending", "deliver_at": {"$lte": now}}, sort=[("deliver_at", 1)])
        oldest_due.labels(svc).set((now - oldest["deliver_at"]).total_seconds() if oldest else 0.0)

    metrics.on_scrape(refresh)


def create_app(settings: Settings | None = None, *, catalog_http: httpx.AsyncClient | None = None,
               start_background: bool = True) -> FastAPI:
    """``catalog_http``: a client on the catalog for token checks (tests pass one on the catalog app
    in process); by default notify calls ``Settings.catalog_base_url``. ``start_background=False``
    serves the API without the consumer, delivery worker and reminder (API-only tests)."""
    settings = settings or get_settings()
    metrics = ServiceMetrics("notify")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = make_client(settings.mongodb_uri)
        await ping(client)
        inbox = InboxStore(client, settings.notify_db)
        await inbox.init()
        subscriptions = SubscriptionStore(client, settings.notify_db)
        await subscriptions.init()
        deliveries = DeliveryStore(client, settings.notify_db)
        await deliveries.init()
        directory = Directory(client, settings.notify_db)
        await directory.init()
        authority = TokenAuthority(None, settings.admin_token, catalog_url=settings.catalog_base_url,
                                   cache_ttl_s=settings.token_cache_s, http=catalog_http)
        worker = DeliveryWorker(settings, deliveries, subscriptions)
        consumer = notify_consumer(settings, inbox, directory, subscriptions, deliveries, on_planned=worker.wake,
                                   on_token_revoked=authority.forget)
        reminder = ExpiryReminder(settings, directory, inbox, subscriptions, deliveries, on_planned=worker.wake)
        app.state.reminder = reminder
        app.state.settings = settings
        app.state.inbox = inbox
        app.state.subscriptions = subscriptions
        app.state.deliveries = deliveries
        app.state.directory = directory
        app.state.consumer = consumer
        app.state.worker = worker
        app.state.authority = authority
        if start_background:
            consumer.start()
            worker.start()
            reminder.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await consumer.stop()
            await reminder.stop()
            await worker.stop()
            await authority.aclose()
            await client.close()

    app = FastAPI(title="South-South Match — notify", version="1.0.0", lifespan=lifespan,
                  description="The caller organization's inbox, webhook subscriptions and notification preferences.")
    app.state.ready = False
    app.state.rate_limit = TokenRateLimit(settings.notify_rate_limit)
    app.state.metrics = metrics
    install_error_handlers(app)
    _install_method_answers(app)
    app.add_middleware(BufferedBodyLimit)
    app.add_middleware(CorrelationIdMiddleware)
    app.add_middleware(PrometheusMiddleware, metrics=metrics)
    app.include_router(router)
    _document_bearer_auth(app)
    _install_metrics(app, metrics)

    @app.get("/healthz", tags=["ops"], include_in_schema=False)
    async def healthz() -> JSONResponse:
        ready = bool(getattr(app.state, "ready", False))
        return JSONResponse({"status": "ok" if ready else "starting"}, status_code=200 if ready else 503)

    app.add_route("/metrics", metrics.endpoint, include_in_schema=False)
    return app
