"""Browser tests: the catalog (with its workspace) and notify over real HTTP in threads, on the session's
broker and store, driven by Debian's Chromium through Playwright. One browser and one pair of servers
for the browser tests (module scope: they stop before the rest of the suite runs); each test makes its
own organizations so tests never see each other's data."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.catalog.app import create_app as create_catalog
from services.notify.app import create_app as create_notify
from ssmatch.settings import Settings
from ssmatch.stack.processes import free_port
from tests.browser.helpers import ADMIN, CHROMIUM, CHROMIUM_ARGS, Served, Workspace


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if items and any("tests/browser" in str(i.fspath) for i in items) and not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        raise pytest.UsageError("browser tests need Chromium: run `apt-get install -y chromium` (or set SSMATCH_CHROMIUM to its path)")


@pytest.fixture(scope="module")
def workspace(servers: Any) -> Iterator[Workspace]:
    suffix = uuid.uuid4().hex[:8]
    notify_port, catalog_port = free_port(), free_port()
    settings = Settings.model_validate({
        "kafka_bootstrap_servers": servers.kafka_bootstrap, "mongodb_uri": servers.mongodb_uri,
        "catalog_db": f"t_ui_catalog_{suffix}", "notify_db": f"t_ui_notify_{suffix}", "matcher_db": f"t_ui_matcher_{suffix}",
        "group_prefix": f"ui-{suffix}", "admin_token": ADMIN, "kafka_producer_max_batch_bytes": 1, "outbox_poll_interval_s": 0.2,
        "notify_port": notify_port, "catalog_port": catalog_port, "rate_limit_per_minute": 0,
    })
    catalog = Served(create_catalog(settings), catalog_port)  # notify checks tokens at this catalog
    notify = Served(create_notify(settings), notify_port)
    catalog.start()
    notify.start()
    try:
        with httpx.Client(base_url=catalog.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as http:
            yield Workspace(catalog, notify, http)
    finally:
        notify.stop()
        catalog.stop()
        from pymongo import MongoClient

        with MongoClient(servers.mongodb_uri) as client:
            for db in (settings.catalog_db, settings.notify_db):
                client.drop_database(db)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_page(browser: Any, workspace: Workspace) -> Iterator[Callable[..., Any]]:
    """Pages in fresh contexts (own cookies); `lang` sets Accept-Language, `js=False` disables scripts."""
    contexts: list[Any] = []

    def make(lang: str = "en", js: bool = True, width: int = 1100) -> Any:
        ctx = browser.new_context(base_url=workspace.url, locale=lang, extra_http_headers={"Accept-Language": lang},
                                  java_script_enabled=js, viewport={"width": width, "height": 900}, accept_downloads=True)
        ctx.set_default_timeout(15_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


