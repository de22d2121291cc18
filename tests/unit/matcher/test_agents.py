"""The matcher's batch retry policy: transient failures retried, a poison record isolated and
dead-lettered, the good records of its batch still processed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from services.matcher.agents import SettleStage, process_isolating_poison
from services.matcher.service import item_keys
from ssmatch.events import ItemPayload, ItemWithdrawnPayload


class Flaky:
    """Fails the first `fail_first` calls, and every call that contains a poison payload."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.calls: list[list[str]] = []
        self.done: list[str] = []

    async def __call__(self, payloads: list[str]) -> None:
        self.calls.append(list(payloads))
        if len(self.calls) <= self.fail_first or any(p.startswith("poison") for p in payloads):
            raise RuntimeError("store blip" if len(self.calls) <= self.fail_first else "bad record")
        self.done.extend(payloads)


async def test_a_transient_failure_is_retried_and_the_batch_is_processed_whole() -> None:
    process, dead, retries = Flaky(fail_first=2), [], []

    async def deadletter(event: int, reason: str) -> None:
        dead.append((event, reason))

    await process_isolating_poison([(1, "a"), (2, "b")], process, deadletter, lambda: retries.append(1), backoff_s=0.001)
    assert process.done == ["a", "b"] and dead == [] and len(retries) == 2
    assert process.calls == [["a", "b"]] * 3


async def test_a_poison_record_is_dead_lettered_and_the_others_are_processed() -> None:
    process, dead = Flaky(), []

    async def deadletter(event: int, reason: str) -> None:
        dead.append((event, reason))

    batch = [(1, "a"), (2, "poison-x"), (3, "c")]
    await process_isolating_poison(batch, process, deadletter, lambda: None, batch_attempts=3, record_attempts=2, backoff_s=0.001)
    assert process.done == ["a", "c"]
    assert dead == [(2, "processing failed 2 times: RuntimeError: bad record")]
    assert process.calls.count(["poison-x"]) == 2 and process.calls.count(["a", "poison-x", "c"]) == 3


class Settling:
    """A stage 2 whose batches finish when the test says so; records what was held and released."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.held: list[int] = []
        self.released: list[int] = []

    async def settle(self, batch: list[tuple[int, str]]) -> None:
        name = batch[0][1]
        self.started.append(name)
        await self.gates.setdefault(name, asyncio.Event()).wait()

    def stage(self) -> SettleStage[int, str]:
        return SettleStage(self.settle, self.held.append, self.released.append)


async def _until(condition: Callable[[], bool], bound_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + bound_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def test_a_batch_settles_while_the_next_is_ingested_and_is_released_only_once_settled() -> None:
    s = Settling()
    stage = s.stage()
    await stage.hand_over([(1, "a"), (2, "a")])
    await _until(lambda: s.started == ["a"])
    assert s.held == [1, 2] and s.released == []  # held from the end of stage 1, not acked yet
    # stage 1 of the next batch runs now (hand_over returned); its hand-over waits for "a" to settle
    nxt = asyncio.create_task(stage.hand_over([(3, "b")]))
    await asyncio.sleep(0.01)
    assert not nxt.done() and s.started == ["a"] and 3 not in s.held
    s.gates["a"].set()
    await nxt
    assert s.released == [1, 2] and s.held == [1, 2, 3]
    await _until(lambda: s.started == ["a", "b"])
    assert s.released == [1, 2]
    s.gates["b"].set()
    await stage.drain()
    assert s.released == [1, 2, 3]


async def test_a_settle_cancelled_by_a_stopping_worker_releases_nothing() -> None:
    s = Settling()
    stage = s.stage()
    await stage.hand_over([(1, "a")])
    await _until(lambda: s.started == ["a"])
    running = stage._running
    assert running is not None
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stage.drain()
    assert s.held == [1] and s.released == []  # never acked: delivered again after the restart


def test_item_keys_name_each_item_once_in_order() -> None:
    snap = {"organization_id": "org", "title": "t", "description": "d", "keywords": [], "sdgs": [2], "sectors": [], "modalities": [],
            "languages": ["en"], "country": "MWI", "status": "open", "revision": 1, "created_at": "2026-11-30T00:00:00Z",
            "updated_at": "2026-11-30T00:00:00Z"}
    payloads = [ItemWithdrawnPayload(id="n1", kind="need", organization_id="org", revision=2),
                ItemPayload.model_validate({**snap, "id": "o1", "kind": "offer"}),
                ItemWithdrawnPayload(id="n1", kind="need", organization_id="org", revision=3)]
    assert item_keys(payloads) == [("need", "n1"), ("offer", "o1")]


async def test_the_records_processed_are_returned_without_the_dead_lettered_ones() -> None:
    async def deadletter(event: int, reason: str) -> None:
        pass

    batch = [(1, "a"), (2, "poison-x"), (3, "c")]
    assert await process_isolating_poison(batch, Flaky(), deadletter, lambda: None, batch_attempts=1, record_attempts=1,
                                          backoff_s=0.001) == [(1, "a"), (3, "c")]
    assert await process_isolating_poison([(4, "d")], Flaky(), deadletter, lambda: None) == [(4, "d")]


async def test_events_not_settled_are_released_in_order_after_the_batch_settled() -> None:
    s = Settling()
    stage = s.stage()
    await stage.hand_over([(2, "a")], events=[1, 2, 3])  # 1 and 3: dead-lettered or invalid, not held
    await _until(lambda: s.started == ["a"])
    assert s.held == [2] and s.released == []
    s.gates["a"].set()
    await stage.drain()
    assert s.released == [1, 2, 3]
    await stage.hand_over([], events=[4])  # nothing to settle: released once the batch before has settled
    await stage.drain()
    assert s.released == [1, 2, 3, 4] and s.started == ["a"]
