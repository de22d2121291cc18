"""Real service processes for integration tests that need one outside the test's event loop: the
catalog (`python -m services.catalog`), on the given broker and store, with its own database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from ssmatch.stack.processes import free_port
from tests.helpers import uid

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Org:
    id: str
    token: str
    token_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class CatalogService:
    url: str
    db: str
    admin_token: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def org(self, type_: str = "country_office", **extra: Any) -> Org:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            r = c.post("/v1/organizations", json={"name": f"Org {uid()}", "type": type_, "country": "KEN", **extra}, headers=self.admin)
            assert r.status_code == 201, r.text
            t = c.post("/v1/tokens", json={"organization_id": r.json()["id"]}, headers=self.admin)
            assert t.status_code == 201, t.text
        return Org(r.json()["id"], t.json()["token"], t.json()["id"])

    def revoke(self, org: Org) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            r = c.delete(f"/v1/tokens/{org.token_id}", headers=self.admin)
            assert r.status_code == 200, r.text


@contextmanager
def catalog_process(kafka_bootstrap: str, mongodb_uri: str, admin_token: str, **env_extra: str) -> Iterator[CatalogService]:
    """The catalog on a free port, healthy before this yields; stopped and its database dropped after."""
    port, db = free_port(), f"t_catalog_svc_{uid()}"
    env = dict(os.environ)
    env.update(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, MONGODB_URI=mongodb_uri, CATALOG_PORT=str(port),
               SSMATCH_CATALOG_DB=db, SSMATCH_ADMIN_TOKEN=admin_token, SSMATCH_GROUP_PREFIX=f"svc{uid()}", SSMATCH_LOG_FORMAT="text",
               SSMATCH_KAFKA_PRODUCER_MAX_BATCH_BYTES="1", SSMATCH_OUTBOX_POLL_INTERVAL_S="0.2", SSMATCH_RATE_LIMIT_PER_MINUTE="0")
    env.update(env_extra)
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
        yield CatalogService(url, db, admin_token)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        with MongoClient(mongodb_uri) as client:
            client.drop_database(db)
