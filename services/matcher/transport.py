"""A faust transport whose consumer uses our fetch wait.

faust's aiokafka driver fixes `fetch_max_wait_ms=1500`; on brokers that do not answer a waiting
fetch early when data arrives (Tansu), that is the delivery latency. We set it from settings.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "ssmatch-kafka"
FETCH_MAX_WAIT_MS = {"value": 25}


class TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS["value"]
        return consumer


class TunedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> TunedConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TunedTransport(faust_aiokafka.Transport):
    Consumer = TunedConsumer


def register(fetch_max_wait_ms: int) -> None:
    FETCH_MAX_WAIT_MS["value"] = fetch_max_wait_ms
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:TunedTransport"


def broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"{SCHEME}://{host.strip()}" for host in bootstrap_servers.split(",") if host.strip()]
