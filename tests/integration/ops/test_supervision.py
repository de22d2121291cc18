"""The launcher supervises like systemd or Kubernetes: `kill -9` of any service under load → it is back,
nothing accepted is lost and nothing is done twice. Two matcher workers (SSMATCH_MATCHER_WORKERS=2)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.ops.stackrun import Launcher, auth, healthy, launcher_env, make_org, need, offer, poll

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]


def _kill_and_wait_back(run: Launcher, name: str, url: str) -> None:
    before = run.services()[name]
    os.kill(before, signal.SIGKILL)
    poll(lambda: run.services().get(name) not in (None, before), timeout=60)
    poll(lambda: healthy(url), timeout=180)


def _post_retrying(url: str, body: dict[str, Any], token: str, key: str, timeout: float = 120) -> int:
    """A client that retries through a restart; the Idempotency-Key makes each retry safe."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.post(url, json=body, headers={**auth(token), "Idempotency-Key": key}, timeout=10)
            if r.status_code < 500:
                return r.status_code
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return 599
        time.sleep(0.2)


def _notifications(notify: str, token: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = httpx.get(f"{notify}/v1/notifications", params=params, headers=auth(token), timeout=10).json()
        out += page["items"]
        if not page.get("next_before"):
            return out
        params["before"] = page["next_before"]


@pytest.mark.timeout(1200)
def test_kill_9_of_each_service_under_load(tmp_path: Path) -> None:
    run = Launcher(launcher_env(tmp_path / "data", SSMATCH_MATCHER_WORKERS="2"))
    try:
        run.wait_for("Press Ctrl-C to stop.", timeout=240)
        assert "2 workers" in run.read()
        services = run.services()
        assert set(services) >= {"catalog", "notify", "matcher"} and len([n for n in services if n.startswith("matcher")]) == 2
        catalog, notify, matcher = run.url("catalog"), run.url("notify"), run.url("matcher")
        office_id, office = make_org(catalog, "Ministry of Agriculture, Malawi", "country_office", "MWI")
        _, provider = make_org(catalog, "Agricultural research agency, Brazil", "solution_provider", "BRA")
        _, broker = make_org(catalog, "Brokering desk", "broker", "KEN")

        # Offers first, so each need arriving later finds them (the matcher ranks the item that changed).
        for i in range(10):
            assert httpx.post(f"{catalog}/v1/offers", json=offer(i, "load"), headers=auth(provider), timeout=60).status_code == 201
        probe = httpx.post(f"{catalog}/v1/needs", json=need(0, "probe"), headers=auth(office), timeout=60).json()["id"]
        poll(lambda: httpx.get(f"{catalog}/v1/needs/{probe}/matches", headers=auth(office), timeout=10).json()["items"], timeout=240)

        # Matcher worker 0 killed while 200 concurrent posts arrive: every post succeeds.
        with ThreadPoolExecutor(20) as pool:
            futures = [pool.submit(httpx.post, f"{catalog}/v1/needs", json=need(i, "load"), headers=auth(office), timeout=120) for i in range(200)]
            _kill_and_wait_back(run, "matcher", matcher)
            answers = [f.result() for f in futures]
        assert Counter(a.status_code for a in answers) == Counter({201: 200})
        other = next(n for n in run.services() if n.startswith("matcher:"))
        _kill_and_wait_back(run, other, f"http://127.0.0.1:{other.split(':')[1]}")

        # Catalog killed while an office keeps posting (retrying with its Idempotency-Key): all there, once.
        with ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(_post_retrying, f"{catalog}/v1/needs", need(i, "catalogkill"), office, f"ck-{i}") for i in range(40)]
            time.sleep(0.5)
            _kill_and_wait_back(run, "catalog", catalog)
            codes = [f.result() for f in futures]
        assert Counter(codes) == Counter({201: 40}), Counter(codes)
        mine: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = httpx.get(f"{catalog}/v1/needs", params={"organization_id": office_id, "limit": 100, **({"cursor": cursor} if cursor else {})},
                             headers=auth(office), timeout=10).json()
            mine += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        titles = Counter(n["title"] for n in mine)
        assert len(mine) == 241 and max(titles.values()) == 1

        # Every need is matched (nothing the killed matchers were doing is lost).
        with httpx.Client(base_url=catalog, headers=auth(office), timeout=10) as client:
            for n in mine:  # one need at a time (polling all of them at once loads the stack it waits for)
                try:
                    poll(lambda nid=n["id"]: client.get(f"/v1/needs/{nid}/matches").json()["items"], timeout=300)
                except AssertionError:
                    unmatched = [(m["id"], m["title"], m["created_at"]) for m in mine if not client.get(f"/v1/needs/{m['id']}/matches").json()["items"]]
                    raise AssertionError(f"{len(unmatched)} needs without a proposal after 300 s: {unmatched[:20]}\n{_logs(run)}") from None

        # Notify killed while a broker approves ten matches: each party hears of each approval once.
        queue = httpx.get(f"{catalog}/v1/matches", params={"status": "proposed", "limit": 10}, headers=auth(broker), timeout=10).json()["items"]
        assert len(queue) == 10
        before = run.services()["notify"]
        os.kill(before, signal.SIGKILL)
        for m in queue:
            assert httpx.post(f"{catalog}/v1/matches/{m['id']}/decision", json={"decision": "approve"}, headers=auth(broker), timeout=30).status_code == 200
        poll(lambda: run.services().get("notify") not in (None, before), timeout=60)
        poll(lambda: healthy(notify), timeout=120)
        decided = {m["id"] for m in queue}

        def approvals(token: str) -> Counter[str]:
            return Counter(n["match_id"] for n in _notifications(notify, token) if n["kind"] == "match_approved")

        for token in (office, provider):
            got = poll(lambda token=token: (c := approvals(token)) and set(c) >= decided and c, timeout=120)
            assert set(got) == decided and max(got.values()) == 1, got
        proposed = Counter((n["kind"], n["match_id"]) for n in _notifications(notify, broker))
        assert max(proposed.values()) == 1  # a re-delivered proposal is not a second alert
        assert "restarted" in run.read() and "giving up" not in run.read()
    finally:
        assert run.stop() == 0


def _logs(run: Launcher, lines: int = 40) -> str:
    """The last lines of each service's log and of the launcher's output (a failure says what they saw)."""
    out = [f"--- launcher\n{''.join(run.read().splitlines(keepends=True)[-lines:])}"]
    logs = Path(run.env["SSMATCH_DATA_DIR"]) / "logs"
    for path in sorted(logs.glob("*.log")) if logs.is_dir() else []:
        out.append(f"--- {path.name}\n{''.join(path.read_text(errors='replace').splitlines(keepends=True)[-lines:])}")
    return "\n".join(out)
