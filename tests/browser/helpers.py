"""Helpers of the browser tests: servers in threads, data set-up, sign-in, polling, weight, axe, screenshots."""

from __future__ import annotations

import asyncio
import gzip
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from ssmatch.events import MatchProposedPayload
from ssmatch.stack.processes import free_port

CHROMIUM = os.environ.get("SSMATCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
ADMIN = "browser-admin-token"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PAGE_BUDGET = 100 * 1024


class Served:
    """A FastAPI app on a free port in a thread with its own event loop (kept for calls into the app)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.server.serve(),), daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (the app's store lives there)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Workspace:
    catalog: Served
    notify: Served
    http: httpx.Client

    @property
    def url(self) -> str:
        return self.catalog.url

    def org(self, type_: str, country: str = "SEN", name: str | None = None) -> tuple[str, str]:
        """A new organization and a token for it."""
        r = self.http.post("/v1/organizations", json={"name": name or f"{type_} {uuid.uuid4().hex[:6]}", "type": type_, "country": country})
        assert r.status_code == 201, r.text
        t = self.http.post("/v1/tokens", json={"organization_id": r.json()["id"]})
        assert t.status_code == 201, t.text
        return r.json()["id"], t.json()["token"]

    def post(self, token: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"/v1/{kind}s", json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def propose(self, need: dict[str, Any], offer: dict[str, Any], score: float, **explanation: Any) -> str:
        """A match.proposed applied through the catalog's projection path (the matcher is not running)."""
        match_id = f"{need['id']}.{offer['id']}"
        payload = MatchProposedPayload(
            match_id=match_id, need_id=need["id"], offer_id=offer["id"], need_organization_id=need["organization_id"],
            offer_organization_id=offer["organization_id"], need_title=need["title"], offer_title=offer["title"], score=score,
            explanation=explanation or {"components": {"semantic": round(score * 0.6, 3), "sectors": round(score * 0.3, 3), "sdgs": round(score * 0.1, 3)},
                                        "reasons": ["same sector: food_security", "SDGs in common: 2"],
                                        "reason_codes": [{"code": "same_sector", "params": {"sectors": ["food_security"]}},
                                                         {"code": "common_sdgs", "params": {"sdgs": [2]}}]},
            rules_version="test", need_revision=need["revision"], offer_revision=offer["revision"],
        )
        assert self.catalog.call(self.catalog.app.state.store.apply_match_proposed(payload, datetime.now(UTC)))
        return match_id


def sign_in(page: Any, token: str, next_path: str = "/ui/") -> None:
    page.goto(f"/ui/?next={next_path}")
    page.fill("#token", token)
    page.click("form[action='/ui/signin'] button[type=submit]")
    page.wait_for_load_state()


def poll(check: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.2) -> Any:
    """Call `check` until it returns something truthy, or fail after the bound."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval_s)


def page_weight(page: Any, path: str) -> int:
    """Bytes of a page's first load, as a slow link would carry them: HTML + its CSS + JS, gzip-compressed."""
    total = 0
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=page.url.split("/ui/")[0], cookies=cookies) as http:
        html = http.get(path, headers={"Accept-Encoding": "gzip"})
        total += len(gzip.compress(html.content))
        for asset in ("/ui/static/app.css", "/ui/static/app.js"):
            total += len(gzip.compress(http.get(asset).content))
    return total


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious or critical axe-core violations on the current page."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)
