"""faust agents: the thin edge between Kafka and MatcherService.

A batch goes through two stages: stage 1 embeds and stores its items (`MatcherService.ingest`),
stage 2 settles the lists they affect and sends the result (`MatcherService.settle`). Stage 2 of a
batch runs while stage 1 of the next one embeds (`SettleStage`): embedding is the slow, CPU-bound
part, and settling mostly waits on the store and the broker. One batch settles at a time, in order.

A batch is acked (faust commits past it) only after its stage 2 sent its output and the broker
acknowledged it: its messages are held (a reference faust counts, like a second stream's) from the
end of stage 1 until then. A failing stage is retried whole with backoff; if it keeps failing, its
records are retried one by one and a record that still fails is dead-lettered, so one poison record
neither stalls the partition nor takes the good ones with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import faust
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from services.matcher.runtime import MatcherRuntime
from services.matcher.service import item_keys
from ssmatch.events import DeadLetterPayload, InvalidEvent, make_event, parse_event
from ssmatch.logging import correlation_id

log = logging.getLogger(__name__)
BATCH_MAX = 64
BATCH_WITHIN_S = 0.02  # a lone event waits at most this long for company (a burst fills batches anyway)
BATCH_ATTEMPTS = 5
RECORD_ATTEMPTS = 3
BACKOFF_S = 0.2
BACKOFF_MAX_S = 5.0


E = TypeVar("E")
P = TypeVar("P")


def _retrying(attempts: int, backoff_s: float, on_retry: Callable[[], None]) -> AsyncRetrying:
    def count(state: RetryCallState) -> None:
        on_retry()
        error = state.outcome.exception() if state.outcome else None
        log.warning("matcher batch failed (attempt %d): %s", state.attempt_number, error)

    return AsyncRetrying(stop=stop_after_attempt(attempts), wait=wait_exponential(multiplier=backoff_s, max=BACKOFF_MAX_S),
                         retry=retry_if_exception_type(Exception), before_sleep=count, reraise=True)


async def process_isolating_poison(
    batch: list[tuple[E, P]],
    process: Callable[[list[P]], Awaitable[None]],
    deadletter: Callable[[E, str], Awaitable[None]],
    on_retry: Callable[[], None],
    batch_attempts: int = BATCH_ATTEMPTS,
    record_attempts: int = RECORD_ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> list[tuple[E, P]]:
    """The batch with backoff; if it keeps failing, each record alone, and the ones that still fail
    (poison) to the dead-letter topic, so one bad record cannot stop the partition or take the good
    ones with it. Returns once every record was processed or dead-lettered (then the batch may be
    acked), with the records that were processed (the batch less the dead-lettered ones)."""
    try:
        async for attempt in _retrying(batch_attempts, backoff_s, on_retry):
            with attempt:
                await process([payload for _, payload in batch])
        return batch
    except Exception:  # noqa: BLE001 - isolate the poison record(s) below
        pass
    processed = []
    for event, payload in batch:
        try:
            async for attempt in _retrying(record_attempts, backoff_s, on_retry):
                with attempt:
                    await process([payload])
            processed.append((event, payload))
        except Exception as exc:  # noqa: BLE001
            await deadletter(event, f"processing failed {record_attempts} times: {type(exc).__name__}: {exc}")
    return processed


class SettleStage(Generic[E, P]):
    """Stage 2 of the batches, one at a time and in order, each while the next batch goes through
    stage 1. `hand_over` waits for the previous batch to settle (so at most one batch is embedded
    ahead: the queue and the lag stay bounded), holds the records to settle, and starts settling
    them; once they settled, `release` is called for every event of the batch, in order (the held
    ones are acked then; the others, dead-lettered or invalid, are only reported done after what
    came before them). A cancelled settle (the worker stopping) releases nothing: its records were
    never acked, so they are delivered again."""

    def __init__(self, settle: Callable[[list[tuple[E, P]]], Awaitable[None]], hold: Callable[[E], None],
                 release: Callable[[E], None]) -> None:
        self._settle = settle
        self._hold = hold
        self._release = release
        self._running: asyncio.Task[None] | None = None

    async def hand_over(self, batch: list[tuple[E, P]], events: list[E] | None = None) -> None:
        """Settle `batch`; `events`: the whole batch's events to release afterwards (default: `batch`'s)."""
        await self.drain()
        for event, _ in batch:
            self._hold(event)
        done = [e for e, _ in batch] if events is None else events
        self._running = asyncio.create_task(self._run(batch, done))

    async def drain(self) -> None:
        """Wait until the batch handed over last has settled (its records are then released)."""
        running, self._running = self._running, None
        if running is not None:
            await running

    async def _run(self, batch: list[tuple[E, P]], events: list[E]) -> None:
        if batch:
            await self._settle(batch)
        for event in events:
            self._release(event)


def register(app: faust.App, runtime: MatcherRuntime, topics: dict[str, Any]) -> None:
    async def deadletter(event: Any, reason: str) -> None:
        import base64

        msg = event.message
        raw: bytes = msg.value or b""
        try:
            text, enc = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, enc = base64.b64encode(raw).decode(), "base64"
        key = msg.key.decode("utf-8", "replace") if msg.key else None
        payload = DeadLetterPayload(
            consumer="matcher", source_topic=msg.topic, source_partition=msg.partition, source_offset=msg.offset,
            source_key=key, reason=reason[:2000], raw=text, raw_encoding=enc,  # type: ignore[arg-type]
        )
        dead = make_event("deadletter.recorded", "need" if "need" in msg.topic else "offer", key or f"{msg.topic}-{msg.offset}", payload, producer="matcher")
        await (await topics["deadletter"].send(key=dead.entity_id.encode(), value=dead.to_bytes()))
        runtime.metrics.deadlettered.inc()
        log.warning("dead-lettered record", extra={"topic": msg.topic, "offset": msg.offset, "reason": reason})

    async def ingest(payloads: list[BaseModel]) -> None:
        service = await runtime.ensure_started()
        await service.ingest(payloads)

    async def settle(payloads: list[BaseModel]) -> None:
        service = await runtime.ensure_started()
        await service.settle(item_keys(payloads))

    def release(event: Any) -> None:
        event.ack()  # a held event's last reference: faust may now commit past it (a no-op for the others)
        msg = event.message
        runtime.metrics.processed_offset.labels(msg.topic, str(msg.partition)).set(msg.offset + 1)

    async def settle_stage(parsed: list[tuple[Any, BaseModel]]) -> None:
        token = correlation_id.set(f"settle-{parsed[0][0].message.topic}-{parsed[0][0].message.offset}")
        try:
            await process_isolating_poison(parsed, settle, deadletter, runtime.metrics.retries.inc)
        finally:
            correlation_id.reset(token)

    stage = SettleStage[Any, BaseModel](settle_stage, lambda event: event.message.incref(), release)

    @app.agent(topics["items"], name="score-items")
    async def score_items(stream: Any) -> None:
        """Embed and store a batch, then hand it to stage 2 (settle and send) and take the next."""
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            await runtime.ensure_started()
            parsed: list[tuple[Any, BaseModel]] = []
            for event in events:
                runtime.metrics.events_in.labels(event.message.topic).inc()
                try:
                    _, payload = parse_event(event.value)
                    parsed.append((event, payload))
                except InvalidEvent as exc:
                    await deadletter(event, f"invalid event: {exc}")
            kept: list[tuple[Any, BaseModel]] = []
            if parsed:
                token = correlation_id.set(f"items-{events[0].message.topic}-{events[0].message.offset}")
                try:
                    # stage 1; the records dead-lettered there do not go on to stage 2
                    kept = await process_isolating_poison(parsed, ingest, deadletter, runtime.metrics.retries.inc)
                finally:
                    correlation_id.reset(token)
            await stage.hand_over(kept, list(events))
