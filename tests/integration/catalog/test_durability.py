"""Durability: with the broker down, the catalog still accepts writes (2xx) and publishes every event
once, in order per key, when the broker comes back — through the real app and its running relay."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ssmatch.kafka import ensure_topics
from ssmatch.metrics import sample
from ssmatch.stack.embedded import start_tansu
from ssmatch.stack.processes import free_port, stop_all
from tests.helpers import eventually, read_topic
from tests.integration.catalog.conftest import NEED, open_api

pytestmark = pytest.mark.integration


async def test_needs_posted_while_the_broker_is_down_are_all_published_once_in_order(make_settings: Any, servers: Any) -> None:
    port = free_port()  # nothing listens here yet: the broker is down
    bootstrap = f"127.0.0.1:{port}"
    settings = make_settings(kafka_bootstrap_servers=bootstrap, admin_token="test-admin-token", rate_limit_per_minute=0)
    broker = None
    try:
        async with open_api(settings, start_background=True) as api:
            _, office = await api.org()
            ids = []
            for i in range(100):
                r = await api.client.post("/v1/needs", json={**NEED, "title": f"Need number {i}"}, headers=office)
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])
            patched = ids[:10]  # a few keys with several events, so that order per key is tested
            for need_id in patched:
                for revision in (1, 2):
                    r = await api.client.patch(f"/v1/needs/{need_id}", json={"title": f"Revision {revision + 1}"}, headers={**office, "If-Match": f'"{revision}"'})
                    assert r.status_code == 200, r.text
            relay = api.app.state.relay
            await eventually(lambda: _has_failed(relay), timeout=15)
            # 120 need events and the office's organization.created
            assert (await relay.lag())["pending"] == 121 and relay.published_total == 0

            broker = start_tansu(port, servers.log_dir)
            await ensure_topics(bootstrap)
            await eventually(lambda: _drained(relay), timeout=40)

            mine = set(ids)
            records = await read_topic(bootstrap, "ssmatch.needs", lambda r: r.key.decode() in mine, want=120, timeout=20)
            events = [json.loads(r.value) for r in records]
            assert len(events) == 120 and len({e["event_id"] for e in events}) == 120  # each once, nothing lost
            published = [e["entity_id"] for e in events if e["type"] == "need.published"]
            assert sorted(published) == sorted(ids)
            for need_id in ids:
                revisions = [e["payload"]["revision"] for e in events if e["entity_id"] == need_id]
                assert revisions == ([1, 2, 3] if need_id in patched else [1]), (need_id, revisions)
            assert relay.published_total == 121
            metrics = (await api.client.get("/metrics")).text  # Prometheus text format
            assert sample(metrics, "ssmatch_outbox_pending") == 0 and (sample(metrics, "ssmatch_outbox_relay_errors_total") or 0) > 0
    finally:
        # the app (and its consumer) stops first, the broker after: a consumer stopping against a dead
        # broker is not what this test is about
        if broker:
            stop_all([broker], grace_s=3)


async def _has_failed(relay: Any) -> bool:
    return relay.errors_total > 0


async def _drained(relay: Any) -> bool:
    return (await relay.lag())["pending"] == 0
