"""Prometheus metrics of one matcher worker (prometheus-client, own registry)."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("ssmatch_matcher_events_in", "Item events consumed", ["topic"], registry=r)
        self.deadlettered = Counter("ssmatch_matcher_events_deadlettered", "Records sent to the dead-letter topic", registry=r)
        self.retries = Counter("ssmatch_matcher_batch_retries", "Failed batch attempts that were retried", registry=r)
        self.matches_out = Counter("ssmatch_matcher_matches_proposed", "match.proposed events sent", registry=r)
        self.retractions = Counter("ssmatch_matcher_matches_retracted", "match.retracted events sent", registry=r)
        self.stage_seconds = Histogram("ssmatch_matcher_stage_seconds", "Latency per stage", ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.lag = Gauge("ssmatch_matcher_consumer_lag", "Records behind the end of each assigned partition", ["topic", "partition"], registry=r)
        self.processed_offset = Gauge("ssmatch_matcher_processed_offset", "Next offset after the last item record this worker processed and sent output for",
                                      ["topic", "partition"], registry=r)
        self.owned_partitions = Gauge("ssmatch_matcher_owned_partitions", "Item partitions this worker owns", registry=r)
        self.items = Gauge("ssmatch_matcher_items_indexed", "Items in the index", ["kind"], registry=r)

    def stage(self, name: str, seconds: float) -> None:
        self.stage_seconds.labels(name).observe(seconds)

    def emitted(self, value: bytes) -> None:
        kind = json.loads(value).get("type")
        (self.matches_out if kind == "match.proposed" else self.retractions).inc()

    def set_owned(self, n: int) -> None:
        self.owned_partitions.set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
