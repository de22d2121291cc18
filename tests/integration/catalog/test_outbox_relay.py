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


async def _emit_revisions(client: Any, store: CatalogStore, keys: list[str], revisions: range) -> list[Any]:
    written = []
    for revision in revisions:
        for key in keys:
            event = make_event("need.updated", "need", key, item_payload("need", id=key, revision=revision), producer="test")
            written.append(event)

            async def work(session: Any, event: Any = event) -> None:
                await store._emit(session, event)  # noqa: SLF001 - the store's own outbox write

            await in_transaction(client, work)
    return written


async def test_a_broker_that_forgot_its_topics_gets_every_retained_row_again(make_settings: Any, servers: Any) -> None:
    """Restarting the in-memory broker empties it: the relay notices and re-relays, in order; rows pruned
    after the retention period are not re-relayed (the recovery reaches back exactly as far as retention)."""
    port = free_port()
    broker = start_tansu(port, servers.log_dir)
    bootstrap = f"127.0.0.1:{port}"
    await ensure_topics(bootstrap)
    settings = make_settings(kafka_bootstrap_servers=bootstrap, outbox_retention_s=1.5, outbox_check_interval_s=0.3, outbox_lease_s=3)
    client = make_client(settings.mongodb_uri)
    store = CatalogStore(client, settings.catalog_db)
    await store.init_indexes()
    relay = OutboxRelay(store.outbox, settings)
    relay.start()
    try:
        old_keys = [uid("n") for _ in range(3)]
        await _emit_revisions(client, store, old_keys, range(1, 3))
        relay.wake()
        await eventually(lambda: _drained(relay), timeout=20)
        await eventually(lambda: _pruned(relay, 6), timeout=20)  # past retention: gone from the outbox

        keys = [uid("n") for _ in range(4)]
        written = await _emit_revisions(client, store, keys, range(1, 4))
        relay.wake()
        await eventually(lambda: _drained(relay), timeout=20)
        assert relay.recoveries_total == 0

        stop_all([broker], grace_s=3)
        broker = start_tansu(port, servers.log_dir)  # same address, empty
        await eventually(lambda: _recovered(relay), timeout=30)
        await eventually(lambda: _drained(relay), timeout=30)
        assert relay.recovered_events_total == len(written)  # the 12 retained rows, not the 6 pruned ones

        everyone = set(keys) | set(old_keys)
        records = await read_topic(bootstrap, "ssmatch.needs", lambda r: r.key.decode() in everyone, want=len(written), timeout=20)
        events = [json.loads(r.value) for r in records]
        assert sorted(e["event_id"] for e in events) == sorted(e.event_id for e in written)
        for key in keys:
            assert [e["payload"]["revision"] for e in events if e["entity_id"] == key] == [1, 2, 3]
        assert relay.stats()["outbox_last_recovery"]["events"] == len(written)
        assert relay.recoveries_total == 1  # the refilled broker is not mistaken for another loss
    finally:
        await relay.stop()
        stop_all([broker], grace_s=3)
        await client.drop_database(settings.catalog_db)
        await client.close()


async def test_two_relays_on_one_store_publish_each_row_once(make_settings: Any) -> None:
    """Only the lease holder publishes; the other takes over when the holder stops, from the first unmarked row."""
    settings = make_settings(outbox_lease_s=2)
    client = make_client(settings.mongodb_uri)
    store = CatalogStore(client, settings.catalog_db)
    await store.init_indexes()
    first, second = OutboxRelay(store.outbox, settings, batch_size=7), OutboxRelay(store.outbox, settings, batch_size=7)
    first.start()
    second.start()
    try:
        keys = [uid("n") for _ in range(6)]
        written = await _emit_revisions(client, store, keys, range(1, 6))
        first.wake()
        second.wake()
        await eventually(lambda: _drained(first), timeout=30)
        assert [first.holds_lease, second.holds_lease].count(True) == 1
        holder, other = (first, second) if first.holds_lease else (second, first)
        assert other.published_total == 0

        await holder.stop()  # hands the lease over
        more = await _emit_revisions(client, store, keys, range(6, 8))
        other.wake()
        await eventually(lambda: _drained(other), timeout=30)
        assert other.holds_lease and other.token is not None and other.token >= 2  # a new fencing token

        mine = set(keys)
        records = await read_topic(settings.kafka_bootstrap_servers, "ssmatch.needs", lambda r: r.key.decode() in mine, want=len(written) + len(more))
        events = [json.loads(r.value) for r in records]
        assert sorted(e["event_id"] for e in events) == sorted(e.event_id for e in written + more)
        for key in keys:
            assert [e["payload"]["revision"] for e in events if e["entity_id"] == key] == list(range(1, 8))
    finally:
        await first.stop()
        await second.stop()
        await client.drop_database(settings.catalog_db)
        await client.close()


async def test_a_relay_that_lost_its_lease_cannot_mark_rows(make_settings: Any) -> None:
    """Fencing: after a takeover, the old holder's token no longer matches, so its marks are refused."""
    from services.catalog.outbox import LEASE_ID, LeaseLost

    settings = make_settings(outbox_lease_s=30)
    client = make_client(settings.mongodb_uri)
    store = CatalogStore(client, settings.catalog_db)
    await store.init_indexes()
    old, new = OutboxRelay(store.outbox, settings), OutboxRelay(store.outbox, settings)
    try:
        assert await old.acquire()
        assert not await new.acquire()  # a live lease is not taken
        from ssmatch.events import utcnow

        await store.db["outbox_relay"].update_one({"_id": LEASE_ID}, {"$set": {"expires_at": utcnow()}})  # old holder paused too long
        assert await new.acquire() and new.token == old.token + 1  # type: ignore[operator]
        await _emit_revisions(client, store, [uid("n")], range(1, 2))
        row = await store.outbox.find_one({})
        with pytest.raises(LeaseLost):
            await old._mark_published([row["_id"]], {})  # noqa: SLF001
        assert (await store.outbox.find_one({"_id": row["_id"]}))["published_at"] is None
        assert await old.publish_pending() == 0 and not old.holds_lease  # it notices and stops
    finally:
        await old.stop()
        await new.stop()
        await client.drop_database(settings.catalog_db)
        await client.close()


async def _recovered(relay: OutboxRelay) -> bool:
    return relay.recoveries_total > 0


async def _pruned(relay: OutboxRelay, n: int) -> bool:
    return relay.pruned_total >= n
