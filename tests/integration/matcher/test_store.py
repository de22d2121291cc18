"""MatcherStore on the real document store: revision guards, list compare-and-set, the change
stream every worker follows, and the centring snapshot round trip."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from services.matcher import centring
from services.matcher.lists import Entry, ListState
from services.matcher.state import MatcherStore
from ssmatch.mongo import make_client
from tests.helpers import item_payload

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(make_settings: Any) -> Any:
    settings = make_settings()
    client = make_client(settings.mongodb_uri)
    s = MatcherStore(client, settings.matcher_db)
    await s.init()
    yield s
    await client.drop_database(settings.matcher_db)
    await client.close()


def doc(revision: int, **kw: Any) -> dict[str, Any]:
    d = item_payload("need", id="n1", revision=revision, **kw).model_dump(mode="python")
    d["_id"] = d.pop("id")
    d["embedding"] = np.arange(4, dtype=np.float32) * revision
    return d


async def test_items_keep_the_newest_revision_and_their_vector(store: MatcherStore) -> None:
    assert await store.put_item(doc(2, title="two"))
    assert not await store.put_item(doc(1, title="one"))
    assert not await store.put_item(doc(2, title="two again"))
    held = await store.get_item("n1")
    assert held is not None and held["title"] == "two" and held["embedding"].tolist() == [0, 2, 4, 6]
    assert await store.withdraw_item("need", "n1", "org", 3)
    assert not await store.withdraw_item("need", "n1", "org", 3)
    held = await store.get_item("n1")
    assert held is not None and held["status"] == "withdrawn" and held["title"] == "two"


async def test_a_batch_of_items_is_stored_in_one_bulk_and_says_which_were_new(store: MatcherStore) -> None:
    await store.put_item(doc(3, title="three"))
    other = {**doc(1, title="other"), "_id": "n2"}
    assert await store.put_items([doc(2, title="stale"), other, doc(4, title="four")]) == [False, True, True]
    held = await store.get_item("n1")
    assert held is not None and held["title"] == "four" and held["embedding"].tolist() == [0, 4, 8, 12]
    assert (await store.get_item("n2"))["title"] == "other"  # type: ignore[index]
    assert await store.put_items([doc(4, title="four again"), doc(1)]) == [False, False]
    assert await store.put_items([]) == []
    await store.cache_vectors({"h1": np.ones(4, dtype=np.float32)})
    await store.cache_vectors({"h1": np.zeros(4, dtype=np.float32), "h2": np.zeros(4, dtype=np.float32)})  # first writer wins
    cached = await store.cached_vectors(["h1", "h2"])
    assert cached["h1"].tolist() == [1, 1, 1, 1] and cached["h2"].tolist() == [0, 0, 0, 0]


async def test_a_list_step_is_a_compare_and_set_on_its_version(store: MatcherStore) -> None:
    key = ("need", "n1")
    one = ListState(1, {"o1": Entry(0.5, 1, 1)}, "r|c")
    assert await store.write_list(key, 0, one, ["k\nv"], {})
    assert not await store.write_list(key, 0, one, [], {})  # someone else's first step
    loaded = await store.load_lists([key])
    assert loaded[key] == (one, ["k\nv"])
    await store.mark_sent(key, 1)
    assert (await store.load_lists([key]))[key][1] == []
    two = ListState(2, {}, "r|c")
    assert not await store.write_list(key, 5, two, [], {})
    assert await store.write_list(key, 1, two, [], {})


async def test_many_list_steps_in_one_bulk_refuse_only_the_ones_another_writer_moved(store: MatcherStore) -> None:
    keys = [("offer", f"b{i}") for i in range(4)]
    first = ListState(1, {"n1": Entry(0.4, 1, 1)}, "r|c")
    assert await store.write_lists([(k, 0, first, ["k\nv"]) for k in keys[:2]]) == [True, True]
    second = ListState(2, {}, "r|c")
    # b0 moves on from version 1; b1 is claimed at a stale version; b2 is new; b3 claims an existing first step
    results = await store.write_lists([(keys[0], 1, second, []), (keys[1], 3, second, []), (keys[2], 0, first, ["x\ny"]), (keys[3], 0, first, [])])
    assert results == [True, False, True, True]
    assert await store.write_lists([(keys[3], 0, first, [])]) == [False]
    loaded = await store.load_lists(keys)
    assert loaded[keys[0]] == (second, []) and loaded[keys[1]] == (first, ["k\nv"]) and loaded[keys[2]] == (first, ["x\ny"])
    await store.mark_sents([(keys[1], 1), (keys[2], 7)])  # b2 is at version 1: not marked
    loaded = await store.load_lists(keys)
    assert loaded[keys[1]][1] == [] and loaded[keys[2]][1] == ["x\ny"]


async def test_every_write_reaches_a_follower_through_the_change_stream(store: MatcherStore) -> None:
    stream = store.watch_items()
    cursor = await stream if asyncio.iscoroutine(stream) else stream
    seen: list[int] = []
    async with cursor as changes:
        await store.put_item(doc(1))
        await store.withdraw_item("need", "n1", "org", 2)
        async for change in changes:
            seen.append(change["fullDocument"]["revision"])
            if len(seen) == 2:
                break
    assert seen == [1, 2]


async def test_a_centring_snapshot_round_trips_with_its_version(store: MatcherStore) -> None:
    rng = np.random.default_rng(1)
    snap = centring.build(rng.normal(size=(20, 384)).astype(np.float32), ["en"] * 10 + ["fr"] * 10, 5.0)
    await centring.save(store.meta, snap)
    back = await centring.load(store.meta)
    assert back is not None and back.version == snap.version and back.items == 20
    assert np.allclose(back.centroids.centroid("fr"), snap.centroids.centroid("fr"))
    assert np.allclose(back.centroids.centroid("xx"), snap.centroids.table[centring.UNSEEN])
