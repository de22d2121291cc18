"""OutboxRelay: nothing accepted is lost when Kafka is down; order per key is kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.catalog.outbox import OutboxRelay
from services.catalog.store import CatalogStore
from ssmatch.events import make_event
from ssmatch.kafka import ensure_topics
from ssmatch.mongo import in_transaction, make_client
from ssmatch.stack.embedded import start_tansu
from ssmatch.stack.processes import free_port, stop_all
from tests.helpers import eventually, item_payload, read_topic, uid

pytestmark = pytest.mark.integration


async def test_events_written_while_kafka_is_down_are_published_once_in_order(make_settings: Any, servers: Any) -> None:
    port = free_port()  # nothing listens here yet: the broker is "down"
    settings = make_settings(kafka_bootstrap_servers=f"127.0.0.1:{port}")
    client = make_client(settings.mongodb_uri)
    store = CatalogStore(client, settings.catalog_db)
    await store.init_indexes()
    relay = OutboxRelay(store.outbox, settings)
    relay.start()
    broker = None
    try:
        keys = [uid("n") for _ in range(5)]
        written = []
        for revision in (1, 2, 3, 4):
            for key in keys:
                event = make_event("need.updated", "need", key, item_payload("need", id=key, revision=revision), producer="test")
                written.append(event)

                async def work(session: Any, event: Any = event) -> None:
                    await store._emit(session, event)  # noqa: SLF001 - the store's own outbox write

                await in_transaction(client, work)
        relay.wake()
        await eventually(lambda: _errors(relay), timeout=10)
        assert (await relay.lag())["pending"] == 20

        broker = start_tansu(port, servers.log_dir)
        await ensure_topics(f"127.0.0.1:{port}")
        await eventually(lambda: _drained(relay), timeout=30)

        mine = set(keys)
        records = await read_topic(f"127.0.0.1:{port}", "ssmatch.needs", lambda r: r.key.decode() in mine, want=20)
        events = [json.loads(r.value) for r in records]
        assert sorted(e["event_id"] for e in events) == sorted(e.event_id for e in written)  # each once
        for key in keys:
            revisions = [e["payload"]["revision"] for e in events if e["entity_id"] == key]
            assert revisions == [1, 2, 3, 4]  # in order per key
        assert relay.published_total == 20
    finally:
        await relay.stop()
        if broker:
            stop_all([broker], grace_s=3)
        await client.drop_database(settings.catalog_db)
        await client.close()


async def _errors(relay: OutboxRelay) -> bool:
    return relay.errors_total > 0


async def _drained(relay: OutboxRelay) -> bool:
    return (await relay.lag())["pending"] == 0
