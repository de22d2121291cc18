"""faust agents: the thin edge between Kafka and MatcherService."""

from __future__ import annotations

import base64
import logging
from typing import Any

import faust

from services.matcher.app import MatcherRuntime
from ssmatch.events import DeadLetterPayload, InvalidEvent, make_event, parse_event
from ssmatch.logging import correlation_id

log = logging.getLogger(__name__)
BATCH_MAX = 32
BATCH_WITHIN_S = 0.05


def register(app: faust.App, runtime: MatcherRuntime, topics: dict[str, Any]) -> None:
    async def deadletter(event: Any, reason: str) -> None:
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
        await topics["deadletter"].send(key=dead.entity_id.encode(), value=dead.to_bytes())
        runtime.deadlettered_total += 1
        log.warning("dead-lettered record", extra={"topic": msg.topic, "offset": msg.offset, "reason": reason})

    @app.agent(topics["items"], name="score-items")
    async def score_items(stream: Any) -> None:
        """Stage 1 embeds and stores a batch; stage 2 scores each changed item and emits matches."""
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            service = await runtime.ensure_started()
            payloads = []
            for event in events:
                try:
                    _, payload = parse_event(event.value)
                    payloads.append(payload)
                except InvalidEvent as exc:
                    await deadletter(event, f"invalid event: {exc}")
            if not payloads:
                continue
            changed, _ = await service.ingest(payloads)
            token = correlation_id.set(f"rescore-{changed[0][1]}" if changed else "rescore")
            try:
                for out in await service.rescore_batch(changed):
                    await topics["matches"].send(key=out.entity_id.encode(), value=out.to_bytes())
                    runtime.proposed_total += out.type == "match.proposed"
            finally:
                correlation_id.reset(token)
            runtime.processed_total += len(payloads)
