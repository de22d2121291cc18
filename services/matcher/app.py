"""Matcher wiring: the faust app, its topics, web views, and the MatcherService it drives."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import faust

from services.matcher import transport
from services.matcher.pipeline import MatcherService, Scorer
from services.matcher.state import MatcherState
from ssmatch import schemas
from ssmatch.mongo import make_client
from ssmatch.settings import Settings

APP_ID = "ssmatch-matcher"


class MatcherRuntime:
    """What the agents and views share: settings, state, the service and readiness."""

    def __init__(self, settings: Settings, scorer: Scorer) -> None:
        self.settings = settings
        self.scorer = scorer
        self.state: MatcherState | None = None
        self.service: MatcherService | None = None
        self.assigned = False
        self.processed_total = 0
        self.deadlettered_total = 0
        self.proposed_total = 0

    async def ensure_started(self) -> MatcherService:
        if self.service is None:
            client = make_client(self.settings.mongodb_uri)
            state = MatcherState(client, self.settings.matcher_db)
            await state.init()
            self.state = state
            self.service = MatcherService(state, self.scorer)
        return self.service

    @property
    def ready(self) -> bool:
        return self.assigned and self.state is not None and self.state.loaded


def topic_partitions(name: str) -> int:
    return next(int(t["partitions"]) for t in schemas.topics() if t["name"] == name)


def create_app(settings: Settings, scorer: Scorer) -> tuple[faust.App, MatcherRuntime]:
    transport.register(settings.kafka_fetch_max_wait_ms)
    datadir = Path(tempfile.gettempdir()) / f"ssmatch-matcher-{settings.matcher_port}"
    app = faust.App(
        f"{settings.group_prefix}-matcher",
        broker=transport.broker_urls(settings.kafka_bootstrap_servers),
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.kafka_session_timeout_s / 3),
        producer_max_batch_size=settings.kafka_producer_max_batch_bytes,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_allow_declare=False,
        web_enabled=True,
        web_port=settings.matcher_port,
        web_bind=settings.bind_host,
        web_in_thread=False,
        datadir=str(datadir),
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
    )
    runtime = MatcherRuntime(settings, scorer)

    def topic(name: str) -> Any:
        return app.topic(name, partitions=topic_partitions(name), value_serializer="raw", key_serializer="raw")

    topics = {
        "items": app.topic(
            "ssmatch.needs", "ssmatch.offers", value_serializer="raw", key_serializer="raw"
        ),
        "matches": topic("ssmatch.matches"),
        "deadletter": topic("ssmatch.deadletter"),
    }

    @app.on_partitions_assigned.connect
    async def _on_assigned(app: faust.App, assigned: Any, **_: Any) -> None:  # noqa: ARG001
        await runtime.ensure_started()
        runtime.assigned = True

    from services.matcher import agents, web

    agents.register(app, runtime, topics)
    web.register(app, runtime)
    return app, runtime
