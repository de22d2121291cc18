"""Notify tests get organizations and tokens the way production does: from the catalog (in process,
its outbox relay publishing organization events to the real broker), never by writing the
catalog's database. Notify checks tokens by asking that catalog (``create_app(catalog_http=...)``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from services.catalog.app import create_app as create_catalog_app
from tests.helpers import eventually, uid

ADMIN = "test-admin-token"


@dataclass
class Org:
    id: str
    token: str
    token_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Catalog:
    client: httpx.AsyncClient
    app: Any

    async def org(self, type_: str = "country_office", *, name: str | None = None, country: str = "SEN", language: str = "en",
                  contact: dict[str, str] | None = None) -> Org:
        body: dict[str, Any] = {"name": name or f"Org {uid()}", "type": type_, "country": country, "language": language}
        if contact:
            body["contact"] = contact
        admin = {"Authorization": f"Bearer {ADMIN}"}
        r = await self.client.post("/v1/organizations", json=body, headers=admin)
        assert r.status_code == 201, r.text
        t = await self.client.post("/v1/tokens", json={"organization_id": r.json()["id"]}, headers=admin)
        assert t.status_code == 201, t.text
        return Org(r.json()["id"], t.json()["token"], t.json()["id"])

    async def revoke(self, org: Org) -> None:
        r = await self.client.delete(f"/v1/tokens/{org.token_id}", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text


@asynccontextmanager
async def running_catalog(settings: Any) -> AsyncIterator[Catalog]:
    """The catalog app in process with its outbox relay running; drops its database after."""
    app = create_catalog_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://catalog") as client:
            yield Catalog(client, app)
        await app.state.store.client.drop_database(settings.catalog_db)


async def known_to_notify(notify_app: Any, *orgs: Org, timeout: float = 90) -> None:
    """Wait until notify's own projection holds these organizations (they arrive as events)."""
    ids = [o.id for o in orgs]

    async def known() -> bool:
        return len(await notify_app.state.directory.orgs_by_id(ids)) == len(ids)

    await eventually(known, timeout=timeout)


# ---- a real catalog process, for tests whose notify runs outside this test's event loop -----------
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from ssmatch.stack.processes import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


@dataclass
class CatalogService:
    url: str
    db: str

    def org(self, type_: str = "country_office", **extra: Any) -> Org:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=self.url, timeout=30) as c:
            r = c.post("/v1/organizations", json={"name": f"Org {uid()}", "type": type_, "country": "KEN", **extra}, headers=admin)
            assert r.status_code == 201, r.text
            t = c.post("/v1/tokens", json={"organization_id": r.json()["id"]}, headers=admin)
            assert t.status_code == 201, t.text
        return Org(r.json()["id"], t.json()["token"], t.json()["id"])

    def revoke(self, org: Org) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            r = c.delete(f"/v1/tokens/{org.token_id}", headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 200, r.text


@pytest.fixture(scope="session")
def catalog_service(servers: Any) -> Iterator[CatalogService]:
    """``python -m services.catalog`` on a free port and its own database, shared by the session."""
    port, db = free_port(), f"t_catalog_svc_{uid()}"
    env = dict(os.environ)
    env.update(KAFKA_BOOTSTRAP_SERVERS=servers.kafka_bootstrap, MONGODB_URI=servers.mongodb_uri, CATALOG_PORT=str(port),
               SSMATCH_CATALOG_DB=db, SSMATCH_ADMIN_TOKEN=ADMIN, SSMATCH_GROUP_PREFIX=f"svc{uid()}", SSMATCH_LOG_FORMAT="text",
               SSMATCH_KAFKA_PRODUCER_MAX_BATCH_BYTES="1", SSMATCH_OUTBOX_POLL_INTERVAL_S="0.2", SSMATCH_RATE_LIMIT_PER_MINUTE="0")
    proc = subprocess.Popen([sys.executable, "-m", "services.catalog"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the catalog exited at start-up"
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the catalog did not become healthy"
            time.sleep(0.2)
        yield CatalogService(url, db)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        from pymongo import MongoClient

        with MongoClient(servers.mongodb_uri) as client:
            client.drop_database(db)
