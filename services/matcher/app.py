"""Matcher wiring: the faust app, its topics, and the agents and views driving a MatcherRuntime.

Several workers may run on one host: each one's faust datadir and web port derive from its
MATCHER_PORT, and all of them join one consumer group (`<prefix>-matcher`).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import faust

from services.matcher import agents, transport, web
from services.matcher.runtime import MatcherRuntime, topic_partitions

APP_ID = "ssmatch-matcher"


def create_app(runtime: MatcherRuntime) -> faust.App:
    settings = runtime.settings
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

    def topic(name: str) -> Any:
        return app.topic(name, partitions=topic_partitions(name), value_serializer="raw", key_serializer="raw")

    topics = {
        "items": app.topic("ssmatch.needs", "ssmatch.offers", value_serializer="raw", key_serializer="raw"),
        "deadletter": topic("ssmatch.deadletter"),
    }
    pending: set[asyncio.Task[None]] = set()

    @app.on_partitions_revoked.connect
    async def _on_revoked(app: faust.App, revoked: Any, **_: Any) -> None:
        runtime.owned = {"need": set(), "offer": set()}  # write no list until the new assignment is known

    @app.on_partitions_assigned.connect
    async def _on_assigned(app: faust.App, assigned: Any, **_: Any) -> None:
        current = set(assigned)  # faust passes the whole new assignment
        await runtime.ensure_started()
        # reconcile in the background: the rebalance callback must return quickly
        task = asyncio.create_task(runtime.on_assigned(current))
        pending.add(task)
        task.add_done_callback(pending.discard)

    agents.register(app, runtime, topics)
    web.register(app, runtime)
    return app
