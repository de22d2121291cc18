"""The matcher's faust consumer never acks a message no stream took in: faust's stream skips the
messages fetched before a rebalance and acks them, so the revocation committed past items nobody
processed (needs posted while a worker was killed never got a proposal). Refused, the commit stays
below them and the seek after the rebalance fetches them again."""

from __future__ import annotations

import faust
from faust.types.tuples import TP, ConsumerMessage

from services.matcher import transport

TOPIC = "ssmatch.needs"


def message(offset: int, *, taken_in: bool) -> ConsumerMessage:
    m = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, None, b"key", b"value", None, None, tp=TP(TOPIC, 0))
    m.tracked = taken_in  # what a stream sets when it hands the message on (faust's `Stream._py_aiter`)
    return m


def test_a_message_no_stream_took_in_is_not_acked_and_one_it_took_in_is() -> None:
    transport.register(25)
    app = faust.App("ack-guard", broker=transport.broker_urls("127.0.0.1:9"))
    consumer = app.consumer
    assert isinstance(consumer, transport.TunedConsumer)
    app.topics._acking_topics.add(TOPIC)  # as the conductor marks a topic an acking agent reads
    skipped, processed = message(5, taken_in=False), message(6, taken_in=True)
    assert skipped.ack(consumer) is False and not skipped.acked
    assert processed.ack(consumer) is True and processed.acked
    assert list(consumer._acked[TP(TOPIC, 0)]) == [6]  # only what a stream processed may be committed
