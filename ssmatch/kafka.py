"""Kafka helpers shared by the services: topic creation, producer and consumer factories, dead letters.

Only aiokafka is used, against whatever KAFKA_BOOTSTRAP_SERVERS names, so the same code runs on
the embedded Tansu broker and on Apache Kafka.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from ssmatch import schemas
from ssmatch.events import DeadLetterPayload, Envelope, make_event
from ssmatch.settings import Settings

log = logging.getLogger(__name__)

DEADLETTER_TOPIC = "ssmatch.deadletter"


class TopicMismatch(RuntimeError):
    """A topic exists with another partition count than schemas/topics.json says: fatal at start-up."""


def required_topics(extra: list[tuple[str, int]] | None = None) -> dict[str, int]:
    wanted = {t["name"]: int(t["partitions"]) for t in schemas.topics()}
    for name, partitions in extra or []:
        wanted[name] = partitions
    return wanted


async def ensure_topics(
    bootstrap: str, extra: list[tuple[str, int]] | None = None, timeout_s: float = 30.0
) -> dict[str, int]:
    """Create every topic with its fixed partition count; verify existing ones.

    Brokers that auto-create unknown topics (Tansu: 4 partitions) would otherwise pick the count
    for us, and partitions cannot be added later there.
    """
    wanted = required_topics(extra)

    async def connected_admin() -> AIOKafkaAdminClient:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        try:
            await admin.start()
        except KafkaConnectionError:
            await admin.close()
            raise
        return admin

    # the broker may still be starting: retry the connection for up to timeout_s
    admin: AIOKafkaAdminClient = await AsyncRetrying(
        retry=retry_if_exception_type(KafkaConnectionError), stop=stop_after_delay(timeout_s), wait=wait_fixed(0.3), reraise=True,
    )(connected_admin)
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, p, 1) for n, p in wanted.items() if n not in existing]
        if missing:
            await admin.create_topics(missing)
            log.info("created topics", extra={"topics": [t.name for t in missing]})
        described = await admin.describe_topics(list(wanted))
        actual = {d["topic"]: len(d["partitions"]) for d in described}
        wrong = {n: (actual.get(n), p) for n, p in wanted.items() if actual.get(n) != p}
        if wrong:
            detail = ", ".join(f"{n} has {a} partitions, needs {p}" for n, (a, p) in wrong.items())
            raise TopicMismatch(f"topic partition counts differ from schemas/topics.json: {detail}")
        return actual
    finally:
        await admin.close()


def make_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """At-least-once producer (acks=all); idempotence is off because Tansu cannot do it."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        max_batch_size=settings.kafka_producer_max_batch_bytes,
        linger_ms=0,
        request_timeout_ms=15000,
    )


def make_consumer(settings: Settings, group_id: str, *topics: str, client_id: str, fetch_max_wait_ms: int | None = None) -> AIOKafkaConsumer:
    """Group consumer with manual commits: offsets move only after the work is durably done.
    `fetch_max_wait_ms` overrides the setting for a consumer off the latency-critical path."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
        heartbeat_interval_ms=max(500, int(settings.kafka_session_timeout_s * 1000) // 3),
        fetch_max_wait_ms=fetch_max_wait_ms or settings.kafka_fetch_max_wait_ms,
        max_poll_records=200,
    )


async def publish(producer: AIOKafkaProducer, event: Envelope) -> None:
    """Send one event keyed by its entity id and wait for the broker's ack."""
    await producer.send_and_wait(event.topic, key=event.entity_id.encode(), value=event.to_bytes())


def deadletter_event(consumer: str, record: ConsumerRecord, reason: str) -> Envelope:
    raw: bytes = record.value or b""
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    key = record.key.decode("utf-8", "replace") if record.key else None
    payload = DeadLetterPayload(
        consumer=consumer,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        source_key=key,
        reason=reason[:2000],
        raw=text,
        raw_encoding=encoding,
    )
    entity_type: Any = "need" if "need" in record.topic else "offer" if "offer" in record.topic else "match"
    return make_event(
        "deadletter.recorded",
        entity_type,
        key or f"{record.topic}-{record.partition}-{record.offset}",
        payload,
        producer=consumer,
    )


async def send_to_deadletter(producer: AIOKafkaProducer, consumer: str, record: ConsumerRecord, reason: str) -> None:
    event = deadletter_event(consumer, record, reason)
    log.warning(
        "dead-lettered record",
        extra={"topic": record.topic, "partition": record.partition, "offset": record.offset, "reason": reason},
    )
    await producer.send_and_wait(DEADLETTER_TOPIC, key=event.entity_id.encode(), value=event.to_bytes())


__all__ = [
    "DEADLETTER_TOPIC",
    "KafkaError",
    "TopicMismatch",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "publish",
    "send_to_deadletter",
]
