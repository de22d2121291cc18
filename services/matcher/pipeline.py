"""MatcherService: what the matcher does with each need/offer event, independent of faust.

Stage 1 (`ingest`): a batch of item events is validated, new text versions are embedded once,
in one batch, and the items are stored with their vectors. Stage 2 (`rescore`): each changed item
is scored against the open items of the other kind; the top pairs become match.proposed events
and earlier proposals that no longer hold become match.retracted. Event ids are derived from
(pair, revisions, rules version), so reprocessing an input yields events consumers already saw.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pydantic import BaseModel

from services.matcher.state import MatcherState
from ssmatch.events import (
    Envelope,
    ItemPayload,
    ItemWithdrawnPayload,
    MatchProposedPayload,
    MatchRetractedPayload,
    deterministic_event_id,
    make_event,
    match_id_for,
)

log = logging.getLogger(__name__)
PRODUCER = "matcher"


class ScoredCandidates(Protocol):
    """Scores of one item against candidates: arrays, with explanations built only on demand."""

    total: np.ndarray
    excluded: np.ndarray

    def explanation(self, i: int) -> dict[str, Any]: ...


class Scorer(Protocol):
    """Scores one item against many candidates of the other kind (pure; no I/O)."""

    rules_version: str
    top_k: int
    min_score: float

    def embed(self, texts: list[str]) -> list[list[float]] | None: ...

    def item_text(self, item: dict[str, Any]) -> str: ...

    def score_against(self, item: dict[str, Any], candidates: list[dict[str, Any]], centroids: Any = None) -> ScoredCandidates: ...


@dataclass
class SimpleScores:
    total: np.ndarray
    excluded: np.ndarray
    explanations: list[dict[str, Any]]

    def explanation(self, i: int) -> dict[str, Any]:
        return self.explanations[i]


class SectorOverlapScorer:
    """The walking skeleton's rule: pairs that share a sector, scored by sector overlap (Jaccard)."""

    rules_version = "skeleton-1"
    top_k = 10
    min_score = 0.0

    def embed(self, texts: list[str]) -> list[list[float]] | None:
        return None

    def item_text(self, item: dict[str, Any]) -> str:
        return " ".join([item["title"], item["description"], " ".join(item.get("keywords", []))])

    def score_against(self, item: dict[str, Any], candidates: list[dict[str, Any]], centroids: Any = None) -> SimpleScores:
        mine = set(item["sectors"])
        totals, excluded, explanations = [], [], []
        for other in candidates:
            theirs = set(other["sectors"])
            shared = mine & theirs
            total = 0.0 if not shared or other["organization_id"] == item["organization_id"] else len(shared) / len(mine | theirs)
            totals.append(round(total, 4))
            excluded.append(not shared or other["organization_id"] == item["organization_id"])
            explanations.append({
                "rules_version": self.rules_version,
                "components": {"sectors": round(total, 4)},
                "reasons": [f"shared sectors: {', '.join(sorted(shared))}"] if shared else ["no shared sector"],
            })
        return SimpleScores(np.array(totals, dtype=np.float32), np.array(excluded, dtype=bool), explanations)


@dataclass
class Outcome:
    events: list[Envelope] = field(default_factory=list)
    stale: int = 0


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class MatcherService:
    def __init__(self, state: MatcherState, scorer: Scorer) -> None:
        self.state = state
        self.scorer = scorer

    async def ingest(self, payloads: list[BaseModel]) -> tuple[list[tuple[str, str]], Outcome]:
        """Store a batch of item events; returns the (kind, id) of items that changed."""
        outcome = Outcome()
        changed: list[tuple[str, str]] = []
        snapshots = [p for p in payloads if isinstance(p, ItemPayload)]
        to_embed: list[tuple[dict[str, Any], str]] = []
        docs: list[dict[str, Any]] = []
        for snap in snapshots:
            held = self.state.get(snap.kind, snap.id)
            if held is not None and held["revision"] >= snap.revision:
                outcome.stale += 1
                continue
            doc = snap.model_dump(mode="python")
            doc["_id"] = doc.pop("id")
            text = self.scorer.item_text(doc)
            doc["text_hash"] = text_hash(text)
            if held is not None and held.get("text_hash") == doc["text_hash"] and held.get("embedding") is not None:
                doc["embedding"] = held["embedding"]  # same text version: keep its vector
            else:
                to_embed.append((doc, text))
            docs.append(doc)
        if to_embed:
            # Embedding is CPU-bound (~90 ms per text here): keep it off the event loop.
            vectors = await asyncio.to_thread(self.scorer.embed, [t for _, t in to_embed])
            if vectors is not None:
                for (doc, _), vec in zip(to_embed, vectors, strict=True):
                    doc["embedding"] = vec
        for doc in docs:
            if await self.state.upsert_item(doc):
                changed.append((doc["kind"], doc["_id"]))
            else:
                outcome.stale += 1
        for p in payloads:
            if isinstance(p, ItemWithdrawnPayload):
                await self.state.withdraw_item(p.kind, p.id, p.revision)
                changed.append((p.kind, p.id))
        return changed, outcome

    async def rescore(self, kind: str, item_id: str) -> list[Envelope]:
        """Propose the best pairs for one item and retract its proposals that no longer hold."""
        return await self.rescore_batch([(kind, item_id)])

    async def rescore_batch(self, changed: list[tuple[str, str]]) -> list[Envelope]:
        """Rescore the items a batch changed: one state refresh and one candidate list per kind for
        the whole batch (the scorer builds its candidate matrix once per list), not per item."""
        await self.state.refresh()
        candidates = {kind: self.state.candidates(kind) for kind in ("need", "offer")}
        events: list[Envelope] = []
        for kind, item_id in dict.fromkeys(changed):
            events += await self._rescore(kind, item_id, candidates["offer" if kind == "need" else "need"])
        return events

    async def _rescore(self, kind: str, item_id: str, candidates: list[dict[str, Any]]) -> list[Envelope]:
        item = self.state.get(kind, item_id)
        previous = {p["_id"]: p for p in await self.state.active_proposals(kind, item_id)}
        events: list[Envelope] = []
        proposals: list[dict[str, Any]] = []
        eligible: set[str] = set()
        if item is not None and item.get("status") == "open":
            passing: list[tuple[int, dict[str, Any]]] = []
            result = None
            if candidates:
                result = self.scorer.score_against(item, candidates, self.state.centroids)
                passing = [(j, c) for j, c in enumerate(candidates) if not result.excluded[j] and result.total[j] > self.scorer.min_score]
            for _, cand in passing:
                eligible.add(match_id_for(*((item["_id"], cand["_id"]) if kind == "need" else (cand["_id"], item["_id"]))))
            ranked = sorted(passing, key=lambda jc: (-float(result.total[jc[0]]), jc[1]["_id"]))[: self.scorer.top_k]  # type: ignore[union-attr]
            for j, cand in ranked:
                assert result is not None
                need, offer = (item, cand) if kind == "need" else (cand, item)
                mid = match_id_for(need["_id"], offer["_id"])
                payload = MatchProposedPayload(
                    match_id=mid,
                    need_id=need["_id"],
                    offer_id=offer["_id"],
                    need_organization_id=need["organization_id"],
                    offer_organization_id=offer["organization_id"],
                    need_title=need["title"][:300],
                    offer_title=offer["title"][:300],
                    score=min(1.0, max(0.0, round(float(result.total[j]), 4))),
                    explanation=result.explanation(j),
                    rules_version=self.scorer.rules_version,
                    need_revision=need["revision"],
                    offer_revision=offer["revision"],
                )
                event_id = deterministic_event_id("proposed", mid, need["revision"], offer["revision"], self.scorer.rules_version)
                events.append(make_event("match.proposed", "match", mid, payload, producer=PRODUCER, event_id=event_id))
                proposals.append({"match_id": mid, "need_id": need["_id"], "offer_id": offer["_id"], "score": payload.score})
        # Only pairs that fail the rules are retracted; falling out of this item's top-K is not
        # enough, since the pair may still be in the other item's top-K.
        retracted = [mid for mid in previous if mid not in eligible]
        for mid in retracted:
            prev = previous[mid]
            reason = "item withdrawn or closed" if item is None or item.get("status") != "open" else "the pair no longer passes the rules"
            payload_r = MatchRetractedPayload(match_id=mid, need_id=prev["need_id"], offer_id=prev["offer_id"], reason=reason)
            revision = item["revision"] if item else 0
            event_id = deterministic_event_id("retracted", mid, kind, item_id, revision)
            events.append(make_event("match.retracted", "match", mid, payload_r, producer=PRODUCER, event_id=event_id))
        await self.state.record_proposals(proposals, retracted)
        return events
