"""Session fixtures: a real Tansu broker and a real SecantusDB store on free ports, started once.

Nothing here mocks Kafka or MongoDB. Each test that needs isolation gets its own database names
through `make_settings`; topics are shared, so tests filter what they read by their own ids.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ssmatch.settings import Settings
from ssmatch.stack.embedded import mongo_uri, start_secantus, start_tansu
from ssmatch.stack.processes import Child, free_port, stop_all
from tests.hang_watch import PROBE_BOUND_S, REPORT_AFTER_S, REPORTS, probe_broker, probe_store, report


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


@pytest.fixture(autouse=True)
def _hang_watch(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that uses the shared servers finds them answering; one that hangs is reported and ends
    the run (see tests/hang_watch.py)."""
    uses_servers = "servers" in request.fixturenames
    servers: Servers | None = request.getfixturevalue("servers") if uses_servers else None
    report_path = servers.log_dir / "hang-report.txt" if servers is not None else None
    if servers is not None:
        problem = _servers_answer(servers)
        if problem is not None:
            text = report(f"the shared servers stopped answering before {request.node.nodeid}: {problem}", servers, tasks=False)
            REPORTS.add(text, report_path)
            pytest.exit("\n".join(text.splitlines()[-150:]), returncode=3)  # an exit skips the terminal summary
    hung = threading.Event()

    def on_hang() -> None:
        hung.set()
        REPORTS.add(report(f"{request.node.nodeid} still running after {REPORT_AFTER_S:.0f} s", servers, tasks=True), report_path)

    timer = threading.Timer(REPORT_AFTER_S, on_hang)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()
    if hung.is_set():
        request.session.shouldstop = f"{request.node.nodeid} hung (report at the end)"


def _servers_answer(servers: Servers) -> str | None:
    """None once the store answers a probe and the broker a connection, within PROBE_BOUND_S."""
    deadline = time.monotonic() + PROBE_BOUND_S
    while True:
        problem = probe_store(servers.mongodb_uri) or probe_broker(servers.kafka_port)
        if problem is None or time.monotonic() > deadline:
            return problem
        time.sleep(0.5)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for text in REPORTS.texts:
        terminalreporter.section("hang report", sep="=")
        for line in text.splitlines()[-200:]:
            terminalreporter.write_line(line)
