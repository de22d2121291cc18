"""Builders for the matcher's service-layer unit tests: items with hand-made vectors, workers
sharing an in-memory store, and the catalog projection applied to what they send."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from services.catalog.projection import project
from services.matcher.candidates import CandidateConfig
from services.matcher.centring import priors_only
from services.matcher.lists import ItemIndex, ListBook
from services.matcher.runtime import partition_for
from services.matcher.scoring import Rules, load_rules
from services.matcher.service import MatcherService
from ssmatch.events import MatchProposedPayload, MatchRetractedPayload, parse_event
from tests.unit.matcher.fakes import MemoryStore

DIMS = 384


def make_rules(top_k: int = 2, min_score: float = 0.0) -> Rules:
    rules = load_rules()
    return rules.model_copy(update={"proposals": rules.proposals.model_copy(update={"top_k": top_k, "min_score": min_score})})


CENTRING = priors_only(make_rules().semantic.language_prior_weight)


def direction(weights: dict[int, float]) -> np.ndarray:
    """A vector whose language-centred direction has the given coordinates: centring with the
    snapshot in force removes the language mean and leaves exactly these."""
    d = np.zeros(DIMS)
    for axis, w in weights.items():
        d[axis] = w
    return (CENTRING.centroids.centroid("en") + 0.05 * d / np.linalg.norm(d)).astype(np.float32)


@dataclass
class Catalog:
    """The catalog's projection, applied with the same pure function the catalog uses."""

    matches: dict[str, dict[str, Any]] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)

    def apply(self, records: list[tuple[bytes, bytes]]) -> None:
        for _, value in records:
            envelope, payload = parse_event(value)
            self.event_ids.append(envelope.event_id)
            assert isinstance(payload, MatchProposedPayload | MatchRetractedPayload)
            current = self.matches.get(payload.match_id)
            decision = project(current, payload)
            if decision is not None:
                self.matches[payload.match_id] = {**(current or {}), **decision.fields, "status": decision.status, "sides": decision.sides,
                                                  "need_id": payload.need_id, "offer_id": payload.offer_id}

    def proposed(self) -> set[tuple[str, str]]:
        return {(m["need_id"], m["offer_id"]) for m in self.matches.values() if m["status"] == "proposed"}


@dataclass
class Cluster:
    """`n` workers over one store; each worker owns the items on its share of 4 partitions.
    `follow` stands for the change stream: what one worker stores reaches the others."""

    rules: Rules
    vectors: dict[str, np.ndarray]
    store: MemoryStore = field(default_factory=MemoryStore)
    catalog: Catalog = field(default_factory=Catalog)
    workers: list[MatcherService] = field(default_factory=list)
    fail_next_send: list[int] = field(default_factory=list)
    config: CandidateConfig | None = None

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[t.split(".")[0]] for t in texts])

    def add_worker(self, owns: Callable[[str, str], bool]) -> MatcherService:
        async def send(records: list[tuple[bytes, bytes]]) -> None:
            if self.fail_next_send:
                self.fail_next_send.pop()
                raise ConnectionError("broker unavailable")
            self.catalog.apply(records)

        book = ListBook(ItemIndex(self.rules), self.rules, CENTRING.centroids, owns, self.config)
        service = MatcherService(self.store, book, self.embed, send, self.rules.version, CENTRING.version)  # type: ignore[arg-type]
        self.workers.append(service)
        return service

    @staticmethod
    def share(worker: int, workers: int) -> Callable[[str, str], bool]:
        return lambda kind, item_id: partition_for(item_id, 4) % workers == worker

    def owner_of(self, item_id: str) -> MatcherService:
        return next(w for w in self.workers if w.book.owns("need", item_id))

    async def deliver(self, payload: Any) -> None:
        """The item event reaches its owner (ingest, settle); the store's change reaches the rest."""
        owner = self.owner_of(payload.id)
        keys = await owner.ingest([payload])
        await owner.settle(keys)
        await self.follow(payload.id)

    async def deliver_batch(self, payloads: list[Any]) -> None:
        """A batch of item events: each owner ingests and settles its share at once (as a worker does
        with what one poll brings), then the store's changes reach the rest."""
        for worker in list(self.workers):
            mine = [p for p in payloads if self.owner_of(p.id) is worker]
            if mine:
                await worker.settle(await worker.ingest(mine))
        for item_id in dict.fromkeys(p.id for p in payloads):
            await self.follow(item_id)

    async def follow(self, item_id: str) -> None:
        doc = await self.store.get_item(item_id)
        for w in self.workers:
            await w.on_stored(dict(doc))  # type: ignore[arg-type]

    def final_docs(self) -> list[dict[str, Any]]:
        return [dict(d) for d in self.store.items.values()]


@pytest.fixture
def cluster_factory() -> Callable[..., Cluster]:
    def make(workers: int = 1, rules: Rules | None = None, vectors: dict[str, np.ndarray] | None = None,
             config: CandidateConfig | None = None) -> Cluster:
        c = Cluster(rules or make_rules(), vectors or {}, config=config)
        for w in range(workers):
            c.add_worker(Cluster.share(w, workers))
        return c

    return make


def dumps(x: Any) -> str:
    return json.dumps(x, default=str)
