"""Notify wiring: FastAPI app, inbox store and the event consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.notify.agents import notify_consumer
from services.notify.api import router
from services.notify.delivery import DeliveryStore, DeliveryWorker
from services.notify.inbox import InboxStore
from services.notify.reminders import ExpiryReminder
from services.notify.subscriptions import SubscriptionStore
from ssmatch.auth import TokenAuthority
from ssmatch.http import CorrelationIdMiddleware, install_error_handlers
from ssmatch.mongo import make_client, ping
from ssmatch.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

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
        catalog_db = client.get_database(settings.catalog_db)
        worker = DeliveryWorker(settings, deliveries, subscriptions, catalog_db)
        consumer = notify_consumer(settings, inbox, catalog_db, subscriptions, deliveries, on_planned=worker.wake)
        reminder = ExpiryReminder(settings, catalog_db, inbox, subscriptions, deliveries, on_planned=worker.wake)
        app.state.reminder = reminder
        app.state.settings = settings
        app.state.inbox = inbox
        app.state.subscriptions = subscriptions
        app.state.consumer = consumer
        app.state.worker = worker
        app.state.authority = TokenAuthority(catalog_db, settings.admin_token)
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
            await client.close()

    app = FastAPI(title="South-South Match — notify", version="1.0.0", lifespan=lifespan)
    app.state.ready = False
    install_error_handlers(app)
    app.add_middleware(CorrelationIdMiddleware)
    app.include_router(router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        ready = bool(getattr(app.state, "ready", False))
        return JSONResponse({"status": "ok" if ready else "starting"}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> dict[str, Any]:
        consumer = app.state.consumer
        worker = app.state.worker
        return {
            "events_processed_total": consumer.processed_total,
            "events_deadlettered_total": consumer.deadlettered_total,
            "deliveries_sent_total": worker.sent_total,
            "deliveries_failed_total": worker.failed_total,
            "expiry_reminders_total": app.state.reminder.reminded_total,
            "expiry_scans_total": app.state.reminder.scans_total,
        }

    return app
