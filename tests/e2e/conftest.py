"""A running stack (catalog, matcher, notify as real processes) on the session's broker and store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ssmatch.stack.launcher import Stack, StackConfig
from ssmatch.stack.processes import free_port

ADMIN = "e2e-admin-token"


@pytest.fixture(scope="session")
def stack(servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    data_dir: Path = tmp_path_factory.mktemp("e2e")
    config = StackConfig(
        kafka_bootstrap=servers.kafka_bootstrap,
        mongodb_uri=servers.mongodb_uri,
        data_dir=data_dir,
        ports={"catalog": free_port(), "matcher": free_port(), "notify": free_port()},
        admin_token=ADMIN,
        demo=False,
        log_format="text",
    )
    stack = Stack(config)
    stack.start_services(timeout_s=120)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def catalog(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url("catalog"), timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def notify(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url("notify"), timeout=30) as client:
        yield client
