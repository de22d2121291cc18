"""The matcher's batch retry policy: transient failures retried, a poison record isolated and
dead-lettered, the good records of its batch still processed."""

from __future__ import annotations

from services.matcher.agents import process_isolating_poison


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
