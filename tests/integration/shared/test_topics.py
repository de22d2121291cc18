"""Every topic exists with the partition count in schemas/topics.json; a mismatch is fatal."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ssmatch import schemas
from ssmatch.kafka import TopicMismatch, ensure_topics
from tests.helpers import uid

pytestmark = pytest.mark.integration


async def test_topics_have_the_partition_counts_of_the_contract(servers: Any) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers.kafka_bootstrap)
    await admin.start()
    try:
        described = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics([t["name"] for t in schemas.topics()])}
    finally:
        await admin.close()
    assert described == {t["name"]: t["partitions"] for t in schemas.topics()}
    assert await ensure_topics(servers.kafka_bootstrap) == described  # idempotent


async def test_an_existing_topic_with_another_count_is_refused(servers: Any) -> None:
    name = uid("t-")
    admin = AIOKafkaAdminClient(bootstrap_servers=servers.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1)])
    finally:
        await admin.close()
    with pytest.raises(TopicMismatch, match=f"{name} has 3 partitions, needs 2"):
        await ensure_topics(servers.kafka_bootstrap, extra=[(name, 2)])
