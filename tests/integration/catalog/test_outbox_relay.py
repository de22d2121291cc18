"""OutboxRelay: nothing accepted is lost when Kafka is down; order per key is kept."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from services.catalog.outbox import OutboxRelay
from services.catalog.store import CatalogStore
from ssmatch.events import make_event
from ssmatch.kafka import ensure_topics
from ssmatch.metrics import sample
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
                    await store._emit(session, event)

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
                await store._emit(session, event)

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

        # the old holder paused too long: its lease ran out a second ago (not "now": BSON dates keep
        # milliseconds, so a lease expiring in this very millisecond has not yet run out)
        await store.db["outbox_relay"].update_one({"_id": LEASE_ID}, {"$set": {"expires_at": utcnow() - timedelta(seconds=1)}})
        assert await new.acquire() and new.token == old.token + 1  # type: ignore[operator]
        await _emit_revisions(client, store, [uid("n")], range(1, 2))
        row = await store.outbox.find_one({})
        with pytest.raises(LeaseLost):
            await old._mark_published([row["_id"]], {})
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


def _catalog_process(settings: Any, servers: Any, name: str, port: int) -> Any:
    import os
    import sys

    from ssmatch.stack.processes import Child

    env = dict(os.environ)
    env.update(
        MONGODB_URI=settings.mongodb_uri, KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers, CATALOG_PORT=str(port),
        SSMATCH_CATALOG_DB=settings.catalog_db, SSMATCH_ADMIN_TOKEN="two-admin", SSMATCH_OUTBOX_LEASE_S="2",
        SSMATCH_KAFKA_PRODUCER_MAX_BATCH_BYTES="1", SSMATCH_RATE_LIMIT_PER_MINUTE="0", SSMATCH_LOG_FORMAT="text",
        SSMATCH_GROUP_PREFIX=f"two-{settings.catalog_db}", SSMATCH_OUTBOX_POLL_INTERVAL_S="0.2",
    )
    return Child(name, [sys.executable, "-m", "services.catalog"], env, servers.log_dir / f"{name}-{port}.log").start()


@pytest.mark.timeout(600)
async def test_two_catalog_processes_publish_each_row_once_in_commit_order_and_survive_a_kill(make_settings: Any, servers: Any) -> None:
    """Two catalog processes on one store: one relay publishes (no duplicate at all while both live);
    kill -9 of the holder mid-stream → the other takes over; duplicates only from the batch the dead
    holder had sent but not marked; per entity the revisions arrive in commit order."""
    import httpx

    settings = make_settings()
    ports = [free_port(), free_port()]
    procs = [_catalog_process(settings, servers, f"catalog{i}", port) for i, port in enumerate(ports)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    admin = {"Authorization": "Bearer two-admin"}
    try:
        async with httpx.AsyncClient(timeout=30) as http:

            async def healthy() -> bool:
                try:
                    return all([(await http.get(f"{u}/healthz")).status_code == 200 for u in urls])
                except httpx.HTTPError:
                    return False

            await eventually(healthy, timeout=120, interval=0.3)
            org = (await http.post(f"{urls[0]}/v1/organizations", json={"name": "Ministry of Planning", "type": "country_office", "country": "MWI"}, headers=admin)).json()
            office = {"Authorization": f"Bearer {(await http.post(f'{urls[0]}/v1/tokens', json={'organization_id': org['id']}, headers=admin)).json()['token']}"}
            body = {"title": "Census data systems", "description": "Modernise the national statistics office.", "sdgs": [17],
                    "sectors": ["statistics_data"], "modalities": ["capacity_development"], "languages": ["en"]}

            async def write(live: list[str], n: int) -> list[str]:
                """n needs, each created on one process and revised twice through the other(s)."""
                ids = []
                for i in range(n):
                    r = await http.post(f"{live[i % len(live)]}/v1/needs", json={**body, "title": f"Census data systems {i}"}, headers=office)
                    assert r.status_code == 201, r.text
                    ids.append(r.json()["id"])
                for rev in (2, 3):
                    for i, nid in enumerate(ids):
                        url = live[(i + rev) % len(live)]
                        etag = (await http.get(f"{url}/v1/needs/{nid}", headers=office)).headers["etag"]
                        r = await http.patch(f"{url}/v1/needs/{nid}", json={"title": f"Census data systems {i} r{rev}"}, headers={**office, "If-Match": etag})
                        assert r.status_code == 200, r.text
                return ids

            async def drained(url: str) -> bool:
                return sample((await http.get(f"{url}/metrics")).text, "ssmatch_outbox_pending") == 0

            async def metrics() -> list[str]:
                return [(await http.get(f"{u}/metrics")).text for u in urls]

            first = await write(urls, 15)
            await eventually(lambda: drained(urls[0]), timeout=60)
            holders = [sample(m, "ssmatch_outbox_relay_holds_lease") == 1 for m in await metrics()]
            assert holders.count(True) == 1, holders
            records = await read_topic(settings.kafka_bootstrap_servers, "ssmatch.needs", lambda r: r.key.decode() in set(first), want=45)
            events = [json.loads(r.value) for r in records]
            assert len(events) == 45 and len({e["event_id"] for e in events}) == 45  # no duplicate while both live
            for nid in first:
                assert [e["payload"]["revision"] for e in events if e["entity_id"] == nid] == [1, 2, 3]

            # kill -9 the holder while the survivor keeps taking writes
            holder = holders.index(True)
            survivor = urls[1 - holder]
            task = asyncio.create_task(write([survivor], 15))
            await asyncio.sleep(0.3)
            procs[holder].kill()
            second = await task
            await eventually(lambda: drained(survivor), timeout=60)
            after = (await http.get(f"{survivor}/metrics")).text
            assert sample(after, "ssmatch_outbox_relay_holds_lease") == 1 and (sample(after, "ssmatch_outbox_relay_lease_token") or 0) >= 2  # a fenced takeover
            mine = set(first) | set(second)
            want = 90
            for _ in range(5):  # duplicates count towards `want`: read again until every event is seen
                records = await read_topic(settings.kafka_bootstrap_servers, "ssmatch.needs", lambda r: r.key.decode() in mine, want=want)
                events = [json.loads(r.value) for r in records]
                ids = [e["event_id"] for e in events]
                if len(set(ids)) >= 90:
                    break
                want = len(ids) + 90 - len(set(ids))
            assert len(set(ids)) == 90  # every accepted change published
            assert len(ids) - len(set(ids)) <= 200  # at most the one batch in flight at the kill (batch size 200)
            for nid in mine:
                revisions = [e["payload"]["revision"] for e in events if e["entity_id"] == nid]
                firsts = list(dict.fromkeys(revisions))
                assert firsts == [1, 2, 3], (nid, revisions)  # commit order per entity
    finally:
        stop_all(procs, grace_s=5)
        client = make_client(settings.mongodb_uri)
        await client.drop_database(settings.catalog_db)
        await client.close()
