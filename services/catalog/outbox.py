"""OutboxRelay: publishes the catalog's outbox to Kafka, in commit order, at least once, one relay at a time.

Writes commit their events to the `outbox` collection in the same transaction; this relay sends
them oldest first and marks them published only after the broker acknowledged them. If Kafka is
down it keeps retrying with backoff (tenacity); nothing accepted is lost. Consumers deduplicate on
event_id, entity revisions and unique keys.

Three guarantees beyond that, each needed once the catalog runs more than one process or the broker
can forget:

- **One publisher (lease with fencing).** A lease document (`outbox_relay`, `_id: "lease"`) names the
  holder and carries a fencing token that grows by one at every takeover. Only the holder publishes;
  it renews the lease before every batch and sends a batch only within the lease's remaining time.
  Marking rows published is a transaction that also rewrites the lease *with the holder's token*: a
  relay that lost its lease (paused, partitioned) cannot mark anything, and its successor publishes
  from the first unmarked row. So a takeover may repeat at most the one batch in flight when the old
  holder lost the lease; without a takeover nothing is published twice.
- **Commit order per entity.** Rows are published in `_id` order. Every write that emits an event for
  an entity also writes that entity's document in the same transaction, so two writers of one entity
  conflict and the retried one takes a later `_id`: `_id` order is commit order per entity, and Kafka
  keeps it per key (one partition per entity).
- **Broker loss recovery.** Published rows are kept for `SSMATCH_OUTBOX_RETENTION_S` (pruned after),
  and the lease records, per partition, the highest offset the broker acknowledged. The holder checks
  the broker when it takes the lease and every `SSMATCH_OUTBOX_CHECK_INTERVAL_S`: when a topic is
  missing, or a partition it wrote to is now empty or shorter than what it acknowledged (the in-memory
  embedded broker after a restart; a recreated topic), the broker has forgotten published events, and
  the relay marks every retained row unpublished again so they are re-relayed in order. Consumer-group
  offsets were lost with the broker, so consumers read them again; being idempotent, they absorb what
  they had already seen. `outbox_recoveries_total` / `outbox_recovered_events_total` and a warning log
  line show each recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError
from tenacity import AsyncRetrying, RetryCallState, retry_if_not_exception_type, wait_exponential_jitter

from ssmatch.events import utcnow
from ssmatch.kafka import ensure_topics, make_producer
from ssmatch.settings import Settings
from ssmatch.tasks import BackgroundTask

log = logging.getLogger(__name__)

LEASE_ID = "lease"
PASS_TIMEOUT_S = 120.0


class LeaseLost(RuntimeError):
    """Another relay holds the lease (or took it over): stop publishing at once."""


def _mark_key(topic: str, partition: int) -> str:
    # Field names in the lease document: Mongo paths cannot contain '.', topic names do.
    return f"{topic.replace('.', '~')}:{partition}"


def _mark_tp(key: str) -> TopicPartition:
    topic, partition = key.rsplit(":", 1)
    return TopicPartition(topic.replace("~", "."), int(partition))


class OutboxRelay(BackgroundTask):
    task_name = "outbox-relay"

    def __init__(
        self, outbox: AsyncCollection[dict[str, Any]], settings: Settings, batch_size: int = 200, owner: str | None = None
    ) -> None:
        super().__init__()
        self.outbox = outbox
        self.leases: AsyncCollection[dict[str, Any]] = outbox.database["outbox_relay"]
        self.settings = settings
        self.batch_size = batch_size
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.token: int | None = None  # fencing token while this relay holds the lease
        self._producer: AIOKafkaProducer | None = None
        self._probe: AIOKafkaConsumer | None = None
        self._next_check = 0.0
        self._next_prune = 0.0
        self.published_total = 0
        self.errors_total = 0
        self.last_error: str | None = None
        self.takeovers_total = 0
        self.lease_lost_total = 0
        self.recoveries_total = 0
        self.recovered_events_total = 0
        self.pruned_total = 0
        self.last_recovery: dict[str, Any] | None = None

    # ---- Kafka clients ---------------------------------------------------------------------------
    async def _close(self) -> None:
        await self._close_clients()
        if self.token is not None:
            # Hand the lease over now rather than after it expires (a clean stop, not a crash).
            # the store may be gone at shutdown; the lease then simply expires
            with contextlib.suppress(Exception):
                await self.leases.update_one(
                    {"_id": LEASE_ID, "owner": self.owner, "token": self.token}, {"$set": {"expires_at": utcnow()}}
                )
            self.token = None

    async def _close_clients(self) -> None:
        for client in (self._producer, self._probe):
            if client is not None:
                try:
                    async with asyncio.timeout(5):  # a producer flushing to a dead broker must not hold the relay
                        await client.stop()
                except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
                    pass
        self._producer = self._probe = None

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = make_producer(self.settings, client_id="catalog-outbox")
            try:
                await producer.start()
            except Exception:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _ensure_probe(self) -> AIOKafkaConsumer:
        if self._probe is None:
            probe = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers, client_id="catalog-outbox-probe", enable_auto_commit=False
            )
            try:
                await probe.start()
            except Exception:
                await probe.stop()
                raise
            self._probe = probe
        return self._probe

    # ---- lease -----------------------------------------------------------------------------------
    @property
    def holds_lease(self) -> bool:
        return self.token is not None

    def _expiry(self) -> datetime:
        return utcnow() + timedelta(seconds=self.settings.outbox_lease_s)

    async def acquire(self) -> bool:
        """Renew our lease, or take it over when it has expired; returns whether we hold it."""
        now = utcnow()
        if self.token is not None:
            renewed = await self.leases.update_one(
                {"_id": LEASE_ID, "owner": self.owner, "token": self.token}, {"$set": {"expires_at": self._expiry()}}
            )
            if renewed.matched_count:
                return True
            self._lose_lease("renewal refused")
        taken = await self.leases.find_one_and_update(
            {"_id": LEASE_ID, "expires_at": {"$lt": now}},
            {"$set": {"owner": self.owner, "expires_at": self._expiry(), "taken_at": now}, "$inc": {"token": 1}},
            return_document=True,
        )
        if taken is None:
            try:
                await self.leases.insert_one(
                    {"_id": LEASE_ID, "owner": self.owner, "token": 1, "expires_at": self._expiry(), "taken_at": now, "marks": {}}
                )
                taken = {"token": 1}
            except DuplicateKeyError:
                return False  # someone else holds a live lease
        self.token = int(taken["token"])
        self.takeovers_total += 1
        self._next_check = 0.0  # a new holder checks the broker before publishing anything
        log.info("outbox relay took the lease", extra={"owner": self.owner, "token": self.token})
        return True

    def _lose_lease(self, why: str) -> None:
        if self.token is not None:
            self.lease_lost_total += 1
            log.warning("outbox relay lost its lease", extra={"owner": self.owner, "token": self.token, "why": why})
        self.token = None

    async def _fenced(self, session: AsyncClientSession, extra: dict[str, Any] | None = None) -> None:
        """Inside a transaction: rewrite the lease with our token (a takeover makes this conflict or miss)."""
        update: dict[str, Any] = {"$set": {"expires_at": self._expiry()}}
        if extra:
            update.update(extra)
        done = await self.leases.update_one({"_id": LEASE_ID, "owner": self.owner, "token": self.token}, update, session=session)
        if not done.matched_count:
            raise LeaseLost("the lease was taken over")

    async def _remaining_s(self) -> float:
        doc = await self.leases.find_one({"_id": LEASE_ID, "owner": self.owner, "token": self.token})
        if doc is None:
            raise LeaseLost("the lease was taken over")
        return float((doc["expires_at"] - utcnow()).total_seconds())

    # ---- metrics -----------------------------------------------------------------------------------
    async def lag(self) -> dict[str, Any]:
        pending = await self.outbox.count_documents({"published_at": None})
        oldest = await self.outbox.find_one({"published_at": None}, sort=[("_id", ASCENDING)])
        age = time.time() - oldest["created_at"].timestamp() if oldest else 0.0
        return {"pending": pending, "oldest_age_s": round(age, 3)}

    def stats(self) -> dict[str, Any]:
        return {
            "outbox_relay_holds_lease": self.holds_lease,
            "outbox_relay_lease_token": self.token,
            "outbox_relay_takeovers_total": self.takeovers_total,
            "outbox_relay_lease_lost_total": self.lease_lost_total,
            "outbox_recoveries_total": self.recoveries_total,
            "outbox_recovered_events_total": self.recovered_events_total,
            "outbox_last_recovery": self.last_recovery,
            "outbox_pruned_total": self.pruned_total,
        }

    # ---- publishing ----------------------------------------------------------------------------------
    async def publish_pending(self) -> int:
        """Publish one batch of pending events in outbox order; returns how many were published.

        Only the lease holder publishes; the batch is sent within the lease's remaining time and
        marked in a transaction fenced by our token."""
        if not await self.acquire():
            return 0
        docs = await self.outbox.find({"published_at": None}).sort("_id", ASCENDING).limit(self.batch_size).to_list(self.batch_size)
        if not docs:
            return 0
        producer = await self._ensure_producer()
        budget = await self._remaining_s() - 1.0
        if budget <= 0:
            raise LeaseLost("too little lease time left to publish a batch")
        done_ids: list[Any] = []
        marks: dict[str, int] = {}
        first_error: BaseException | None = None
        try:
            async with asyncio.timeout(budget):
                futures = []
                for doc in docs:
                    value = json.dumps(doc["event"], ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                    futures.append(await producer.send(doc["topic"], key=doc["key"].encode(), value=value))
                for doc, fut in zip(docs, futures, strict=True):
                    try:
                        meta = await fut
                    except Exception as exc:  # noqa: BLE001 - retried from this record on the next pass
                        first_error = first_error or exc
                        continue
                    if first_error is None:
                        done_ids.append(doc["_id"])
                        key = _mark_key(meta.topic, meta.partition)
                        marks[key] = max(marks.get(key, 0), meta.offset + 1)
        except TimeoutError as exc:
            first_error = first_error or exc
        if done_ids:
            await self._mark_published(done_ids, marks)
        if first_error is not None:
            raise first_error
        return len(done_ids)

    async def _mark_published(self, ids: list[Any], marks: dict[str, int]) -> None:
        at = utcnow()
        token = self.token

        async def work(session: AsyncClientSession) -> None:
            await self._fenced(session, {"$max": {f"marks.{k}": v for k, v in marks.items()}} if marks else None)
            await self.outbox.update_many(
                {"_id": {"$in": ids}, "published_at": None}, {"$set": {"published_at": at, "published_by": token}}, session=session
            )

        async with self.outbox.database.client.start_session() as session:
            await session.with_transaction(work)
        self.published_total += len(ids)

    # ---- broker loss recovery --------------------------------------------------------------------------
    async def forgotten_partitions(self) -> list[str]:
        """Partitions the broker has forgotten: missing, or shorter than what it acknowledged to us."""
        lease = await self.leases.find_one({"_id": LEASE_ID})
        marks: dict[str, int] = dict((lease or {}).get("marks") or {})
        if not marks:
            return []
        probe = await self._ensure_probe()
        await probe._client.force_metadata_update()
        tps = [_mark_tp(k) for k in marks]
        known = [tp for tp in tps if tp.partition in (probe.partitions_for_topic(tp.topic) or set())]
        lost = [f"{tp.topic}[{tp.partition}] is missing" for tp in tps if tp not in known]
        ends = await probe.end_offsets(known) if known else {}
        for tp in known:
            mark = marks[_mark_key(tp.topic, tp.partition)]
            if ends[tp] < mark:
                lost.append(f"{tp.topic}[{tp.partition}] ends at {ends[tp]}, acknowledged up to {mark}")
        return lost

    async def check_broker(self) -> int:
        """Re-relay every retained row when the broker forgot published events; returns how many."""
        lost = await self.forgotten_partitions()
        if not lost:
            return 0
        await ensure_topics(self.settings.kafka_bootstrap_servers)
        at = utcnow()
        count = 0

        async def work(session: AsyncClientSession) -> None:
            nonlocal count
            # Forget the marks with the rows: the re-relay writes them again from the broker's acks.
            await self._fenced(session, {"$set": {"marks": {}, "expires_at": self._expiry()}})
            result = await self.outbox.update_many(
                {"published_at": {"$ne": None}},
                {"$set": {"published_at": None, "recovered_at": at}, "$inc": {"relayed_times": 1}},
                session=session,
            )
            count = result.modified_count

        async with self.outbox.database.client.start_session() as session:
            await session.with_transaction(work)
        self.recoveries_total += 1
        self.recovered_events_total += count
        self.last_recovery = {"at": at.isoformat(), "events": count, "lost": lost[:20]}
        log.warning(
            "the broker lost published events; re-relaying every retained outbox row",
            extra={"events": count, "lost_partitions": lost[:20]},
        )
        return count

    async def prune(self) -> int:
        """Delete rows published longer ago than the retention period (recovery cannot reach further back)."""
        cutoff = utcnow() - timedelta(seconds=self.settings.outbox_retention_s)
        result = await self.outbox.delete_many({"published_at": {"$ne": None, "$lt": cutoff}})
        self.pruned_total += result.deleted_count
        return result.deleted_count

    # ---- loop ------------------------------------------------------------------------------------------
    async def run_once(self) -> None:
        """One pass: hold the lease, check the broker when due, drain the outbox, prune when due."""
        if not await self.acquire():
            return
        clock = time.monotonic()
        if clock >= self._next_check:
            await self.check_broker()
            self._next_check = clock + self.settings.outbox_check_interval_s
        while await self.publish_pending():
            pass
        if clock >= self._next_prune:
            await self.prune()
            self._next_prune = clock + min(3600.0, max(1.0, self.settings.outbox_retention_s / 10))

    def _on_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.errors_total += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, LeaseLost):
            self._lose_lease(str(exc))
        log.warning("outbox relay error; retrying", extra={"error": self.last_error, "attempt": state.attempt_number})

    async def _run(self) -> None:
        interval = min(self.settings.outbox_poll_interval_s, self.settings.outbox_lease_s / 3)
        while True:
            # The relay must outlive broker and store outages: retry every pass with jittered backoff.
            async for attempt in AsyncRetrying(
                retry=retry_if_not_exception_type(asyncio.CancelledError),
                wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
                before_sleep=self._before_sleep,
                reraise=True,
            ):
                with attempt:
                    # Bounded: a pass stuck on a half-dead connection is abandoned and retried with new clients.
                    async with asyncio.timeout(PASS_TIMEOUT_S):
                        await self.run_once()
            self.last_error = None
            # woken right after a commit that added events, else polls (and renews the lease)
            await self.wait_for_wake(interval)

    async def _before_sleep(self, state: RetryCallState) -> None:
        self._on_retry(state)
        await self._close_clients()
