"""Notify tests get organizations and tokens the way production does: from the catalog (in process,
its outbox relay publishing organization events to the real broker), never by writing the
catalog's database. Notify checks tokens by asking that catalog (``create_app(catalog_http=...)``)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.catalog.app import create_app as create_catalog_app
from ssmatch.kafka import ensure_topics
from ssmatch.stack.embedded import start_tansu
from ssmatch.stack.processes import free_port, stop_all
from tests.helpers import eventually, uid
from tests.integration.services import CatalogService, Org, catalog_process

ADMIN = "test-admin-token"


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


# ---- a broker of the package's own, and a real catalog process for tests whose notify runs apart ----


@contextmanager
def broker_of_its_own(servers: Any, tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Any]:
    """`servers` with a fresh embedded broker (every topic created, empty) in place of its own."""
    port = free_port()
    child = start_tansu(port, tmp_path_factory.mktemp(name))
    bootstrap = f"127.0.0.1:{port}"
    asyncio.run(ensure_topics(bootstrap))
    try:
        yield dataclasses.replace(servers, kafka_bootstrap=bootstrap, kafka_port=port, broker=child)
    finally:
        stop_all([child], grace_s=3)


@pytest.fixture
def flood_servers(servers: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """For a test that writes thousands of events: a broker of its own, so the package's later tests
    (each a fresh consumer group reading from offset 0) do not replay its flood."""
    with broker_of_its_own(servers, tmp_path_factory, "notify-flood-broker") as own:
        yield own


@pytest.fixture(scope="package")
def servers(servers: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's document store with a broker of the notify tests' own. A notify test starts a
    fresh consumer group, which reads every topic from offset 0: on the session broker that is the
    whole suite's history (thousands of proposals, each alerting every broker organization ever
    created), so how long a test waits would depend on what ran before it. Tansu starts in
    milliseconds (the matcher tests do the same)."""
    with broker_of_its_own(servers, tmp_path_factory, "notify-broker") as own:
        yield own


@pytest.fixture(scope="package")
def catalog_service(servers: Any) -> Iterator[CatalogService]:
    """``python -m services.catalog`` on a free port and its own database, shared by the package."""
    with catalog_process(servers.kafka_bootstrap, servers.mongodb_uri, ADMIN) as service:
        yield service
