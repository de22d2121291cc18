"""Deliveries beyond the inbox: webhook and e-mail, one record per (fact, recipient, channel, target).

The consumer writes delivery records (unique ids) before it commits its offsets, so nothing is
lost; the DeliveryWorker claims due records with a lease (a crashed worker's claims expire and are
retried) that it renews while the work is in flight, runs each delivery as its own task (a slow
receiver holds up no one else, and new claims keep being made while it is busy), and marks them
sent or failed. Every retry, webhook or e-mail, is persisted: one attempt per claim, then the
record goes back to ``pending`` with ``deliver_at`` after a jittered backoff (or the receiver's
``Retry-After``), so a restart or another replica picks it up where it was. A delivery that fails
for good goes to the dead-letter topic with the reason, and the webhook subscription records the
failure.

Every claim carries a fresh ``claim`` token and a record is only marked by the holder of its
current claim: a worker whose lease ran out (and whose records another worker has since taken and
perhaps sent) cannot put them back to pending, so a record marked sent stays sent.

Due e-mail records planned for a digest go out as one message per (organization, address) with the
``digest`` template (see ``digest.py``); each record of it is then marked like a single delivery.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import ASCENDING, AsyncMongoClient, InsertOne
from pymongo.errors import BulkWriteError

from services.notify.channels.email import EmailSendError, SmtpSettings, build_message, delivery_message_id, send_email
from services.notify.channels.webhook import WebhookSender
from services.notify.digest import digest_context, digest_language, digest_message_id, ordered, split_due
from services.notify.subscriptions import SubscriptionStore
from services.notify.templates import render
from ssmatch.events import DeadLetterPayload, make_event
from ssmatch.kafka import DEADLETTER_TOPIC, make_producer
from ssmatch.settings import Settings
from ssmatch.tasks import BackgroundTask

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=60)
EMAIL_MAX_ATTEMPTS = 5
#: A receiver's Retry-After is honoured up to this long; our own backoff is capped lower.
MAX_RETRY_AFTER_S = 3600.0
WEBHOOK_BACKOFF_MAX_S = 300.0
#: Deliveries in flight per worker (each is one task).
MAX_IN_FLIGHT = 64


def now() -> datetime:
    return datetime.now(UTC)


class DeliveryStore:
    def __init__(self, client: AsyncMongoClient, db_name: str) -> None:
        self.coll = client.get_database(db_name)["deliveries"]

    async def init(self) -> None:
        await self.coll.create_index([("status", ASCENDING), ("deliver_at", ASCENDING)])

    async def add_many(self, docs: list[dict[str, Any]]) -> int:
        if not docs:
            return 0
        try:
            return (await self.coll.bulk_write([InsertOne(d) for d in docs], ordered=False)).inserted_count
        except BulkWriteError as exc:
            if not all(e.get("code") == 11000 for e in exc.details.get("writeErrors", [])):
                raise
            return int(exc.details.get("nInserted", 0))

    async def claim_due(self, limit: int, lease: timedelta = LEASE) -> list[dict[str, Any]]:
        """Take due deliveries (and ones whose claimant died) under a lease."""
        t = now()
        due = await self.coll.find(
            {"$or": [{"status": "pending", "deliver_at": {"$lte": t}}, {"status": "sending", "lease_until": {"$lte": t}}]}
        ).sort("deliver_at", ASCENDING).limit(limit).to_list(limit)
        claimed = []
        for doc in due:
            claim = uuid.uuid4().hex
            res = await self.coll.update_one(
                {"_id": doc["_id"], "status": doc["status"], "lease_until": doc.get("lease_until")},
                {"$set": {"status": "sending", "lease_until": t + lease, "claim": claim}},
            )
            if res.modified_count:
                claimed.append({**doc, "status": "sending", "lease_until": t + lease, "claim": claim})
        return claimed

    async def renew(self, delivery_id: str, claim: str, lease: timedelta = LEASE) -> bool:
        """Extend the lease of a claim still held; False when another worker has taken the record."""
        res = await self.coll.update_one({"_id": delivery_id, "claim": claim, "status": "sending"}, {"$set": {"lease_until": now() + lease}})
        if res.matched_count == 1:
            return True
        # not sending any more: lost only if someone else claimed it (our own finish may have just landed)
        return await self.coll.count_documents({"_id": delivery_id, "claim": claim}) == 1

    async def finish(
        self, delivery_id: str, status: str, attempts: int, error: str | None, retry_at: datetime | None = None, claim: str | None = None
    ) -> bool:
        """Mark a delivery; with ``claim``, only while that claim is still the record's current one
        (returns False when another worker has taken it over since)."""
        fields: dict[str, Any] = {"status": status, "attempts": attempts, "last_error": error, "updated_at": now(), "lease_until": None}
        if retry_at is not None:
            fields["deliver_at"] = retry_at
        query: dict[str, Any] = {"_id": delivery_id}
        if claim is not None:
            query.update(claim=claim, status="sending")
        return (await self.coll.update_one(query, {"$set": fields})).matched_count == 1


def webhook_retry_delay(attempt: int, base_s: float, retry_after_s: float | None, rng: random.Random) -> float:
    """Seconds before the next try after the ``attempt``-th failed one: full-jitter exponential backoff
    (capped at WEBHOOK_BACKOFF_MAX_S), never sooner than the receiver's ``Retry-After`` (capped at an hour)."""
    delay = rng.uniform(0, min(WEBHOOK_BACKOFF_MAX_S, base_s * 2 ** (attempt - 1)))
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


class DeliveryWorker(BackgroundTask):
    task_name = "delivery-worker"

    def __init__(self, settings: Settings, deliveries: DeliveryStore, subscriptions: SubscriptionStore, *, rng: random.Random | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.deliveries = deliveries
        self.subscriptions = subscriptions
        self.lease = timedelta(seconds=settings.delivery_lease_s)
        # one attempt per claim: retries are persisted records, not sleeps in memory
        self.sender = WebhookSender(
            timeout_s=settings.webhook_timeout_s,
            max_attempts=1,
            allow_private=settings.webhook_allow_private,
        )
        self.smtp = (
            SmtpSettings(
                host=settings.smtp_host, port=settings.smtp_port, security=settings.smtp_security,  # type: ignore[arg-type]
                username=settings.smtp_username, password=settings.smtp_password, sender=settings.smtp_sender,
            )
            if settings.smtp_host
            else None
        )
        self._rng = rng or random.Random()
        self._producer: AIOKafkaProducer | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.sent_total = 0
        self.failed_total = 0
        self.outcomes: dict[tuple[str, str], int] = {}  # (channel, outcome) -> count, for /metrics

    def _count(self, d: dict[str, Any], outcome: str, n: int = 1) -> None:
        key = (str(d.get("channel")), outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + n

    async def _close(self, grace_s: float = 10.0) -> None:
        """Stop within a bound: a delivery or a broker that does not answer cannot hold a shutdown (what
        was in flight is claimed again once its lease runs out)."""
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()  # their leases expire and the records are claimed again
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        await self.sender.aclose()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout=grace_s)
            except TimeoutError:
                log.warning("the dead-letter producer did not stop in time; leaving it", extra={"grace_s": grace_s})

    async def _run(self) -> None:
        while True:
            claimed_full = False
            try:
                room = MAX_IN_FLIGHT - len(self._inflight)
                if room > 0:
                    due = await self.deliveries.claim_due(min(room, 100), self.lease)
                    claimed_full = len(due) == min(room, 100)
                    single, digests = split_due(due)
                    for d in single:
                        self._spawn(self._leased([d], self._deliver(d)))
                    for group in digests.values():
                        self._spawn(self._leased(group, self._deliver_digest(group)))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery loop error")
            if not claimed_full:
                await self.wait_for_wake(self.settings.delivery_poll_interval_s)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._inflight.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._inflight.discard(t)
            self.wake()  # room for more claims

        task.add_done_callback(done)

    async def _leased(self, records: list[dict[str, Any]], work: Any) -> None:
        """Run ``work`` while renewing the lease of ``records`` every third of it; if a claim is lost
        (another worker took the record), the work is cancelled before it can send again."""
        task = asyncio.ensure_future(work)
        interval = max(0.05, self.lease.total_seconds() / 3)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=interval)
                if done:
                    task.result()
                    return
                held = [await self.deliveries.renew(d["_id"], d["claim"], self.lease) for d in records]
                if not all(held):
                    log.warning("lost the claim of a delivery in flight; abandoning it", extra={"deliveries": [d["_id"] for d in records]})
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    return
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        except Exception:
            log.exception("delivery task failed", extra={"deliveries": [d["_id"] for d in records]})

    async def _deliver(self, d: dict[str, Any]) -> None:
        try:
            if d["channel"] == "webhook":
                await self._deliver_webhook(d)
            elif d["channel"] == "email":
                await self._deliver_email(d)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("delivery failed unexpectedly", extra={"delivery": d["_id"]})
            await self._retry_or_fail(d, d.get("attempts", 0) + 1, type(exc).__name__, True)

    async def _finish(self, d: dict[str, Any], status: str, attempts: int, error: str | None, retry_at: datetime | None = None) -> bool:
        ok = await self.deliveries.finish(d["_id"], status, attempts, error, retry_at, claim=d.get("claim"))
        if not ok:
            log.warning("delivery was taken over by another claim; not marking it %s", status, extra={"delivery": d["_id"]})
        else:
            self._count(d, {"pending": "retried"}.get(status, status))
        return ok

    async def _retry_or_fail(self, d: dict[str, Any], attempts: int, reason: str, transient: bool) -> None:
        if transient and attempts < EMAIL_MAX_ATTEMPTS:
            await self._finish(d, "pending", attempts, reason, now() + timedelta(seconds=30 * 2**attempts))
        else:
            await self._fail(d, attempts, reason)

    async def _deliver_webhook(self, d: dict[str, Any]) -> None:
        hook = await self.subscriptions.webhooks.find_one({"_id": d["target"], "active": True})
        if hook is None or hook["organization_id"] != d["organization_id"]:
            # never deliver to an address the organization did not register (or has removed)
            await self._finish(d, "cancelled", d.get("attempts", 0), "subscription removed")
            return
        result = await self.sender.deliver(hook["url"], hook["secret"], d["payload"], d["_id"], earlier_attempts=d.get("attempts", 0))
        await self.subscriptions.record_result(hook["_id"], result.ok, result.status_code, result.error)
        attempts = d.get("attempts", 0) + max(1, result.attempts)
        if result.ok:
            self.sent_total += 1
            await self._finish(d, "sent", attempts, None)
        elif result.permanent or attempts >= self.settings.webhook_max_attempts:
            await self._fail(d, attempts, f"webhook {hook['url']}: {result.error}")
        else:
            delay = webhook_retry_delay(attempts, self.settings.webhook_backoff_base_s, result.retry_after_s, self._rng)
            await self._finish(d, "pending", attempts, f"webhook: {result.error}", now() + timedelta(seconds=delay))

    async def _deliver_email(self, d: dict[str, Any]) -> None:
        if self.smtp is None:
            await self._finish(d, "cancelled", 0, "e-mail is not configured")
            return
        rendered = render(d["kind"], d.get("language") or "en", d["context"])
        message = build_message(d["target"], rendered.subject, rendered.text, rendered.html, self.smtp.sender,
                                message_id=delivery_message_id(d["_id"]))
        attempts = d.get("attempts", 0) + 1
        try:
            await send_email(self.smtp, message)
        except EmailSendError as exc:
            await self._retry_or_fail(d, attempts, f"e-mail to {d['target']}: {exc}", exc.transient)
            return
        self.sent_total += 1
        await self._finish(d, "sent", attempts, None)

    async def _deliver_digest(self, group: list[dict[str, Any]]) -> None:
        """Due digest records of one (organization, address), as ONE message listing every match.

        Every record is marked only after the send, each under its own claim: a crash in between
        re-sends the digest (at-least-once), and a record marked sent is never in a later digest.
        """
        group = ordered(group)
        if self.smtp is None:
            for d in group:
                await self._finish(d, "cancelled", 0, "e-mail is not configured")
            return
        attempts = max(d.get("attempts", 0) for d in group) + 1
        try:
            rendered = render("digest", digest_language(group), digest_context(group, self.settings.public_catalog_url))
            message = build_message(group[0]["target"], rendered.subject, rendered.text, rendered.html, self.smtp.sender,
                                    message_id=digest_message_id(group))
            await send_email(self.smtp, message)
        except EmailSendError as exc:
            for d in group:
                await self._retry_or_fail(d, attempts, f"digest e-mail to {d['target']}: {exc}", exc.transient)
            return
        except Exception as exc:
            log.exception("digest failed unexpectedly", extra={"deliveries": [d["_id"] for d in group]})
            for d in group:
                await self._retry_or_fail(d, attempts, f"digest e-mail to {d['target']}: {exc!r}", True)
            return
        self.sent_total += len(group)
        log.info("digest sent", extra={"organization_id": group[0]["organization_id"], "matches": len(group)})
        for d in group:
            await self._finish(d, "sent", attempts, None)

    async def _fail(self, d: dict[str, Any], attempts: int, reason: str) -> None:
        if not await self._finish(d, "failed", attempts, reason):
            return  # another worker holds it now and will decide
        self.failed_total += 1
        try:
            if self._producer is None:
                self._producer = make_producer(self.settings, client_id="notify-delivery-dlq")
                await self._producer.start()
            src = d.get("source", {})
            payload = DeadLetterPayload(
                consumer=f"notify-{d['channel']}", source_topic=src.get("topic", "unknown"), source_partition=src.get("partition", 0),
                source_offset=src.get("offset", 0), source_key=d.get("match_id"), reason=reason[:2000],
                raw=str(d["payload"])[:10000],
            )
            event = make_event("deadletter.recorded", "match", d.get("match_id") or d["_id"], payload, producer="notify")
            await self._producer.send_and_wait(DEADLETTER_TOPIC, key=event.entity_id.encode(), value=event.to_bytes())
        except Exception:
            log.exception("could not dead-letter a failed delivery", extra={"delivery": d["_id"]})
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
