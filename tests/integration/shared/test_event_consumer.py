"""EventConsumer on the real broker: bad records go to the dead-letter topic, good ones are handled."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from ssmatch.consumer import EventConsumer, PermanentEventError
from ssmatch.events import MatchRetractedPayload, make_event
from tests.helpers import eventually, read_topic, uid

pytestmark = pytest.mark.integration

TOPIC = "ssmatch.matches"


async def test_invalid_and_rejected_events_are_dead_lettered_and_the_loop_carries_on(make_settings: Any, servers: Any) -> None:
    settings = make_settings()
    handled: list[str] = []
    poison = uid("poison")

    async def handler(envelope: Any, payload: Any, record: Any) -> None:
        if payload.match_id.startswith(poison):
            raise PermanentEventError("contradicts stored state")
        handled.append(payload.match_id)

    consumer = EventConsumer(settings, uid("group-"), [TOPIC], handler, name="test-consumer")
    consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap)
    await producer.start()
    bad_key = uid("bad")
    good = [uid("n") + ".f" for _ in range(3)]
    try:
        await producer.send_and_wait(TOPIC, key=bad_key.encode(), value=b"{not json")
        await producer.send_and_wait(TOPIC, key=bad_key.encode(), value=json.dumps({"type": "match.proposed", "version": 7}).encode())
        p = MatchRetractedPayload(match_id=poison + ".x", need_id="n", offer_id="f", reason="r")
        await producer.send_and_wait(TOPIC, key=bad_key.encode(), value=make_event("match.retracted", "match", bad_key, p, producer="t").to_bytes())
        for mid in good:
            p = MatchRetractedPayload(match_id=mid, need_id="n", offer_id="f", reason="r")
            await producer.send_and_wait(TOPIC, key=mid.encode(), value=make_event("match.retracted", "match", mid, p, producer="t").to_bytes())

        async def all_handled() -> bool:
            return all(m in handled for m in good)

        await eventually(all_handled, timeout=30)
        # Other consumers of the shared topic (e.g. the e2e services) dead-letter these too: keep ours.
        dead = await read_topic(
            servers.kafka_bootstrap, "ssmatch.deadletter",
            lambda r: r.key.decode() == bad_key and json.loads(r.value)["payload"]["consumer"] == "test-consumer", want=3,
        )
        reasons = sorted(json.loads(r.value)["payload"]["reason"] for r in dead)
        assert len(reasons) == 3
        assert reasons[0].startswith("invalid event: not JSON")
        assert reasons[1].startswith("invalid event: unknown event type/version")
        assert reasons[2] == "rejected by handler: contradicts stored state"
        assert json.loads(dead[0].value)["payload"]["raw"] in ("{not json", json.dumps({"type": "match.proposed", "version": 7}))
    finally:
        await producer.stop()
        await consumer.stop()
