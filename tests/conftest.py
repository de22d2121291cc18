"""Session fixtures: a real Tansu broker and a real SecantusDB store on free ports, started once.

Nothing here mocks Kafka or MongoDB. Each test that needs isolation gets its own database names
through `make_settings`; topics are shared, so tests filter what they read by their own ids.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ssmatch.settings import Settings
from ssmatch.stack.embedded import mongo_uri, start_secantus, start_tansu
from ssmatch.stack.processes import Child, free_port, stop_all


@dataclass
class Servers:
    kafka_bootstrap: str
    kafka_port: int
    mongodb_uri: str
    log_dir: Path
    broker: Child
    store: Child


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    from ssmatch.kafka import ensure_topics

    base = tmp_path_factory.mktemp("stack")
    log_dir = base / "logs"
    kafka_port, mongo_port = free_port(), free_port()
    broker = start_tansu(kafka_port, log_dir)
    store = start_secantus(mongo_port, base / "mongo", log_dir)
    bootstrap = f"127.0.0.1:{kafka_port}"
    asyncio.run(ensure_topics(bootstrap))
    try:
        yield Servers(bootstrap, kafka_port, mongo_uri(mongo_port), log_dir, broker, store)
    finally:
        stop_all([broker, store], grace_s=5)


@pytest.fixture
def make_settings(servers: Servers) -> Callable[..., Settings]:
    """Settings pointing at the session servers, with databases unique to the calling test."""

    def factory(**overrides: object) -> Settings:
        suffix = uuid.uuid4().hex[:8]
        values: dict[str, object] = {
            "kafka_bootstrap_servers": servers.kafka_bootstrap,
            "mongodb_uri": servers.mongodb_uri,
            "catalog_db": f"t_catalog_{suffix}",
            "matcher_db": f"t_matcher_{suffix}",
            "notify_db": f"t_notify_{suffix}",
            "admin_token": "test-admin-token",
            "kafka_producer_max_batch_bytes": 1,
            "outbox_poll_interval_s": 0.2,
        }
        values.update(overrides)
        return Settings.model_validate(values)

    return factory


@pytest.fixture(scope="session", autouse=True)
def _quiet_env() -> Iterator[None]:
    os.environ.setdefault("SSMATCH_LOG_FORMAT", "text")
    yield
