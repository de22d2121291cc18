"""EventConsumer: the one consume loop every non-faust service uses.

Guarantees: a record's offset is committed only after its handler finished (so durable work is
never skipped); a record that is not a valid event of a known type/version, or that its handler
rejects as permanently bad, goes to the dead-letter topic with the reason and the loop carries
on; transient failures (store or broker down) are retried with backoff, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, retry_if_not_exception_type, wait_exponential

from ssmatch.events import Envelope, InvalidEvent, parse_event
from ssmatch.kafka import make_consumer, make_producer, send_to_deadletter
from ssmatch.logging import correlation_id
from ssmatch.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, BaseModel, ConsumerRecord], Awaitable[None]]
Parsed = tuple[Envelope, BaseModel, ConsumerRecord]
BatchHandler = Callable[[list[Parsed]], Awaitable[None]]


class PermanentEventError(Exception):
    """The handler can never process this event (e.g. it contradicts stored state): dead-letter it."""


def forever(message: str, max_wait_s: float, **context: object) -> AsyncRetrying:
    """Retry a transient failure (store or broker down) until it works, backing off from 0.2 s to
    `max_wait_s`; a `PermanentEventError` or a cancellation goes through at once."""

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else None
        log.warning(message, extra={**context, "error": repr(error), "backoff_s": wait, "attempt": state.attempt_number})

    return AsyncRetrying(
        retry=retry_if_exception_type(Exception) & retry_if_not_exception_type(PermanentEventError),
        wait=wait_exponential(multiplier=0.1, min=0.2, max=max_wait_s),
        before_sleep=log_retry,
        reraise=True,
    )


class EventConsumer:
    def __init__(
        self,
        settings: Settings,
        group_id: str,
        topics: list[str],
        handler: Handler | None,
        name: str,
        batch_handler: BatchHandler | None = None,
        fetch_max_wait_ms: int | None = None,
    ) -> None:
        """Give `handler` (one event at a time) or `batch_handler` (all valid events of one fetch,
        in order; it must be idempotent, since a failed batch is retried whole). `fetch_max_wait_ms`
        overrides the setting (a consumer off the latency-critical path can poll the broker less)."""
        self.fetch_max_wait_ms = fetch_max_wait_ms
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        self.batch_handler = batch_handler
        self._stopping = False
        self.settings = settings
        self.group_id = group_id
        self.topics = topics
        self.handler = handler
        self.name = name
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.processed_total = 0
        self.deadlettered_total = 0
        self.assigned = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.name}")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let the current batch finish and its offsets be committed, then close."""
        self._stopping = True
        if self._task:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=grace_s)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self._close()

    async def _close(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self._consumer = self._producer = None

    async def _connect(self) -> None:
        async for attempt in forever("consumer cannot connect; retrying", 5.0, consumer=self.name):  # broker not up yet
            with attempt:
                consumer = make_consumer(self.settings, self.group_id, *self.topics, client_id=self.name, fetch_max_wait_ms=self.fetch_max_wait_ms)
                producer = make_producer(self.settings, client_id=f"{self.name}-dlq")
                try:
                    await consumer.start()
                    await producer.start()
                except BaseException:
                    for client in (consumer, producer):
                        with contextlib.suppress(Exception):
                            await client.stop()
                    raise
                self._consumer, self._producer = consumer, producer

    async def _parse(self, record: ConsumerRecord) -> tuple[Envelope, BaseModel] | None:
        assert self._producer is not None
        try:
            return parse_event(record.value or b"")
        except InvalidEvent as exc:
            await send_to_deadletter(self._producer, self.name, record, f"invalid event: {exc}")
            self.deadlettered_total += 1
            return None

    async def _handle_batch(self, records: list[ConsumerRecord]) -> None:
        assert self.batch_handler is not None
        parsed: list[Parsed] = []
        for record in records:
            result = await self._parse(record)
            if result is not None:
                parsed.append((result[0], result[1], record))
        if not parsed:
            return
        # transient: retry the whole (idempotent) batch
        async for attempt in forever("batch handler failed; retrying", 10.0, consumer=self.name):
            with attempt:
                await self.batch_handler(parsed)
        self.processed_total += len(parsed)

    async def _handle(self, record: ConsumerRecord) -> None:
        assert self.handler is not None
        parsed = await self._parse(record)
        if parsed is None:
            return
        envelope, payload = parsed
        token = correlation_id.set(envelope.correlation_id)
        try:
            # transient failures: retry the same record, never skip it
            async for attempt in forever("handler failed; retrying", 10.0, consumer=self.name, event_id=envelope.event_id):
                with attempt:
                    await self.handler(envelope, payload, record)
            self.processed_total += 1
        except PermanentEventError as exc:
            await send_to_deadletter(self._producer, self.name, record, f"rejected by handler: {exc}")
            self.deadlettered_total += 1
        finally:
            correlation_id.reset(token)

    async def _run(self) -> None:
        while True:
            await self._connect()
            assert self._consumer is not None
            try:
                while not self._stopping:
                    batches = await self._consumer.getmany(timeout_ms=200, max_records=500)
                    if self._consumer.assignment():
                        self.assigned.set()
                    if not batches:
                        continue
                    if self.batch_handler is not None:
                        await self._handle_batch([r for records in batches.values() for r in records])
                    else:
                        for records in batches.values():
                            for record in records:
                                await self._handle(record)
                    await self._consumer.commit(
                        {TopicPartition(tp.topic, tp.partition): records[-1].offset + 1 for tp, records in batches.items()}
                    )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect and resume from committed offsets
                log.warning("consumer loop error; reconnecting", extra={"consumer": self.name, "error": repr(exc)})
                await self._close()
                await asyncio.sleep(1.0)
