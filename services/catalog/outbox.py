"""OutboxRelay: publishes the catalog's outbox to Kafka, in order, at least once.

Writes commit their events to the `outbox` collection in the same transaction; this relay sends
them oldest first and marks them published only after the broker acknowledged them. If Kafka is
down it keeps retrying with backoff; nothing accepted is lost. Consumers deduplicate on event_id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from ssmatch.kafka import make_producer
from ssmatch.settings import Settings
from ssmatch.tasks import BackgroundTask

log = logging.getLogger(__name__)


class OutboxRelay(BackgroundTask):
    task_name = "outbox-relay"

    def __init__(self, outbox: AsyncCollection[dict[str, Any]], settings: Settings, batch_size: int = 200) -> None:
        super().__init__()
        self.outbox = outbox
        self.settings = settings
        self.batch_size = batch_size
        self._producer: AIOKafkaProducer | None = None
        self.published_total = 0
        self.errors_total = 0
        self.last_error: str | None = None

    async def _close(self) -> None:
        await self._close_producer()

    async def _close_producer(self) -> None:
        if self._producer is not None:
            try:
                await self._producer.stop()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
                pass
            self._producer = None

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

    async def lag(self) -> dict[str, Any]:
        pending = await self.outbox.count_documents({"published_at": None})
        oldest = await self.outbox.find_one({"published_at": None}, sort=[("_id", ASCENDING)])
        age = time.time() - oldest["created_at"].timestamp() if oldest else 0.0
        return {"pending": pending, "oldest_age_s": round(age, 3)}

    async def publish_pending(self) -> int:
        """Publish one batch of pending events in outbox order; returns how many were published."""
        docs = await self.outbox.find({"published_at": None}).sort("_id", ASCENDING).limit(self.batch_size).to_list(self.batch_size)
        if not docs:
            return 0
        producer = await self._ensure_producer()
        import json

        futures = []
        for doc in docs:
            value = json.dumps(doc["event"], ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            futures.append(await producer.send(doc["topic"], key=doc["key"].encode(), value=value))
        done_ids = []
        first_error: BaseException | None = None
        for doc, fut in zip(docs, futures, strict=True):
            try:
                await fut
                if first_error is None:
                    done_ids.append(doc["_id"])
            except Exception as exc:  # noqa: BLE001 - retried from this record on the next pass
                first_error = first_error or exc
        if done_ids:
            from ssmatch.events import utcnow

            await self.outbox.update_many({"_id": {"$in": done_ids}}, {"$set": {"published_at": utcnow()}})
            self.published_total += len(done_ids)
        if first_error is not None:
            raise first_error
        return len(done_ids)

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                while await self.publish_pending():
                    pass
                backoff = 0.2
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the relay must outlive broker outages
                self.errors_total += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("outbox relay error; retrying", extra={"error": self.last_error, "backoff_s": backoff})
                await self._close_producer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            # woken right after a commit that added events, else polls
            await self.wait_for_wake(self.settings.outbox_poll_interval_s)
