"""Restarts lose nothing: post → stop `make run` (Ctrl-C: everything stops within 10 s, no orphans) →
start it again on the same data.

The embedded broker keeps topics in memory, so the second run starts with an empty broker and no
consumer offsets. What the first run accepted but nobody consumed must still happen: items posted
while the matcher was frozen get matched, a decision published while notify was frozen reaches both
parties, and everything already done is not done twice.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from ssmatch.metrics import sample
from tests.integration.ops.stackrun import Launcher, alive, auth, descendants, launcher_env, make_org, need, offer, poll

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]


@pytest.mark.timeout(900)
def test_work_accepted_before_a_stop_is_done_after_the_restart_exactly_once(tmp_path: Path) -> None:
    env = launcher_env(tmp_path / "data")
    run = Launcher(env)
    try:
        run.wait_for("Press Ctrl-C to stop.", timeout=180)
        catalog = run.url("catalog")
        _, office = make_org(catalog, "Ministry of Agriculture, Malawi", "country_office", "MWI")
        _, provider = make_org(catalog, "Agricultural research agency, Brazil", "solution_provider", "BRA")
        _, broker = make_org(catalog, "Brokering desk", "broker", "KEN")

        # 1. A match the first run proposes; its approval is published while notify is frozen.
        n0 = httpx.post(f"{catalog}/v1/needs", json=need(0, "decided"), headers=auth(office), timeout=30).json()["id"]
        o0 = httpx.post(f"{catalog}/v1/offers", json=offer(0, "decided"), headers=auth(provider), timeout=30).json()["id"]
        decided = f"{n0}.{o0}"
        poll(lambda: httpx.get(f"{catalog}/v1/matches/{decided}", headers=auth(broker), timeout=10).status_code == 200, timeout=120)
        pids = run.services()
        os.kill(pids["notify"], signal.SIGSTOP)
        r = httpx.post(f"{catalog}/v1/matches/{decided}/decision", json={"decision": "approve"}, headers=auth(broker), timeout=30)
        assert r.status_code == 200, r.text

        # 2. Items accepted while the matcher is frozen: published, never consumed.
        os.kill(pids["matcher"], signal.SIGSTOP)
        offers = [httpx.post(f"{catalog}/v1/offers", json=offer(i, "frozen"), headers=auth(provider), timeout=30) for i in range(1, 4)]
        needs = [httpx.post(f"{catalog}/v1/needs", json=need(i, "frozen"), headers=auth(office), timeout=30) for i in range(1, 4)]
        assert all(x.status_code == 201 for x in needs + offers)
        poll(lambda: _metric(catalog, "ssmatch_outbox_pending") == 0, timeout=90)
        children = descendants(run.proc.pid)
        assert len(children) >= 5  # broker, store, catalog, matcher, notify
        t0 = time.monotonic()
        assert run.stop() == 0  # Ctrl-C, even with two services frozen
        assert time.monotonic() - t0 < 10
        time.sleep(0.3)
        assert [pid for pid in children if alive(pid)] == [], "orphans left behind"
    finally:
        run.stop()

    again = Launcher(env)  # same data dir and ports; a new, empty in-memory broker
    try:
        again.wait_for("Press Ctrl-C to stop.", timeout=180)
        catalog, notify = again.url("catalog"), again.url("notify")
        poll(lambda: (_metric(catalog, "ssmatch_outbox_recoveries_total") or 0) >= 1, timeout=120)
        assert (_metric(catalog, "ssmatch_outbox_recovered_events_total") or 0) >= 9  # 8 items + 1 decision at least

        need_ids = [n0] + [x.json()["id"] for x in needs]
        for nid in need_ids:
            poll(lambda nid=nid: httpx.get(f"{catalog}/v1/needs/{nid}/matches", headers=auth(office), timeout=10).json()["items"], timeout=180)

        def approvals(token: str) -> list[str]:
            items = httpx.get(f"{notify}/v1/notifications", headers=auth(token), timeout=10).json()["items"]
            return [n["match_id"] for n in items if n["kind"] == "match_approved"]

        for token in (office, provider):
            poll(lambda token=token: approvals(token), timeout=120)
        # Let notify drain what the recovery re-relayed, then count: once per party, not twice.
        poll(lambda: _consumed_everything(catalog), timeout=120)
        proposed = poll(lambda: _broker_inbox(notify, broker, need_ids), timeout=120)
        assert approvals(office) == [decided] and approvals(provider) == [decided]
        assert max(Counter(proposed).values()) == 1, Counter(proposed)

        # The embedded broker itself killed while running: supervised back (empty), refilled by the relay.
        broker_pid = next(p for p in descendants(again.proc.pid) if b"tansu" in Path(f"/proc/{p}/cmdline").read_bytes())
        os.kill(broker_pid, signal.SIGKILL)
        again.wait_for("broker (Tansu) restarted", timeout=120)
        assert httpx.post(f"{catalog}/v1/offers", json=offer(9, "after-broker"), headers=auth(provider), timeout=30).status_code == 201
        late = httpx.post(f"{catalog}/v1/needs", json=need(9, "after-broker"), headers=auth(office), timeout=30).json()["id"]
        poll(lambda: httpx.get(f"{catalog}/v1/needs/{late}/matches", headers=auth(office), timeout=10).json()["items"], timeout=180)
        # the relay finds the empty broker on its next check (every outbox_check_interval_s, 5 s), which may
        # come after the late need was already matched: its events went out as new rows
        poll(lambda: (_metric(catalog, "ssmatch_outbox_recoveries_total") or 0) >= 2, timeout=60)
        assert approvals(office) == [decided]  # the re-relayed decision is still not a second notification
    finally:
        assert again.stop() == 0


def _consumed_everything(catalog: str) -> bool:
    return bool(_metric(catalog, "ssmatch_outbox_pending") == 0)


def _metric(catalog: str, name: str) -> float | None:
    """One sample of the catalog's Prometheus /metrics."""
    return sample(httpx.get(f"{catalog}/metrics", timeout=10).text, name)


def _broker_inbox(notify: str, broker: str, need_ids: list[str]) -> list[str]:
    """The broker's match_proposed entries once every need has one (else empty: keep polling)."""
    items = httpx.get(f"{notify}/v1/notifications", headers=auth(broker), timeout=10).json()["items"]
    proposed = [n["match_id"] for n in items if n["kind"] == "match_proposed"]
    return proposed if all(any(m.startswith(f"{nid}.") for m in proposed) for nid in need_ids) else []
