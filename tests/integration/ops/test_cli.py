"""The `ssmatch` command finds the store as the services do, and the shared package imports no service."""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.integration.catalog.conftest import NEED, open_api

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


async def test_ssmatch_replay_as_the_readme_shows_it_finds_the_embedded_store_by_its_port(make_settings: Any, servers: Any) -> None:
    settings = make_settings(admin_token="test-admin-token")
    async with open_api(settings) as api:
        _, office = await api.org("country_office", "MWI", name="Ministry of Health")
        for i in range(3):
            r = await api.client.post("/v1/needs", json={**NEED, "title": f"{NEED['title']} {i}"}, headers=office)
            assert r.status_code == 201, r.text
        before = await api.app.state.store.outbox.count_documents({})
        env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "KAFKA_BOOTSTRAP_SERVERS")}
        env.update(SSMATCH_MONGO_PORT=str(urlparse(servers.mongodb_uri).port), SSMATCH_CATALOG_DB=settings.catalog_db)
        script = Path(sys.executable).parent / "ssmatch"
        result = await asyncio.to_thread(subprocess.run, [str(script), "replay"], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "queued=3"
        assert await api.app.state.store.outbox.count_documents({}) == before + 3


def test_the_shared_package_never_imports_a_service() -> None:
    offenders = []
    for path in sorted((REPO / "ssmatch").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n == "services" or n.startswith("services.")]
    assert offenders == []
