"""The catalog's match projection: upsert by pair; decisions are never overwritten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.catalog import service
from services.catalog.models import DecisionIn
from ssmatch.auth import Principal
from ssmatch.events import MatchProposedPayload, MatchRetractedPayload

pytestmark = pytest.mark.integration


def proposal(score: float = 0.6, **kw: Any) -> MatchProposedPayload:
    base = dict(match_id="n1.f1", need_id="n1", offer_id="f1", need_organization_id="o1", offer_organization_id="o2",
                score=score, explanation={"components": {"text": score}}, rules_version="1", need_revision=1, offer_revision=1)
    base.update(kw)
    return MatchProposedPayload(**base)


async def test_late_proposal_never_overwrites_a_decision(api: Any) -> None:
    store = api.app.state.store
    t0 = datetime.now(UTC)
    assert await store.apply_match_proposed(proposal(0.6), t0)
    assert await store.apply_match_proposed(proposal(0.7), t0 + timedelta(seconds=1))
    assert not await store.apply_match_proposed(proposal(0.1), t0)  # older event arriving late
    assert (await store.get_match("n1.f1"))["score"] == 0.7
    decided = await service.decide(api.app.state.catalog, Principal(role="broker", organization_id="b1"), "n1.f1", DecisionIn(decision="reject"))
    assert decided["status"] == "rejected"
    assert not await store.apply_match_proposed(proposal(0.9), t0 + timedelta(seconds=5))
    assert not await store.apply_match_retracted(MatchRetractedPayload(match_id="n1.f1", need_id="n1", offer_id="f1", reason="x"), t0 + timedelta(seconds=6))
    doc = await store.get_match("n1.f1")
    assert doc["status"] == "rejected" and doc["score"] == 0.7
    event = await store.outbox.find_one({"key": "n1.f1"})
    assert event["event"]["type"] == "match.decided" and event["event"]["payload"]["decided_by"] == "b1"


async def test_retraction_then_new_proposal_reopens(api: Any) -> None:
    store = api.app.state.store
    t0 = datetime.now(UTC)
    await store.apply_match_proposed(proposal(), t0)
    assert await store.apply_match_retracted(MatchRetractedPayload(match_id="n1.f1", need_id="n1", offer_id="f1", reason="withdrawn"), t0 + timedelta(seconds=1))
    assert (await store.get_match("n1.f1"))["status"] == "retracted"
    assert await store.apply_match_proposed(proposal(), t0 + timedelta(seconds=2))
    assert (await store.get_match("n1.f1"))["status"] == "proposed"


def sided(kind: str, need: str, offer: str, side: str, version: int, score: float = 0.6) -> MatchProposedPayload | MatchRetractedPayload:
    if kind == "retracted":
        return MatchRetractedPayload(match_id=f"{need}.{offer}", need_id=need, offer_id=offer, reason="r", side=side, list_version=version)  # type: ignore[arg-type]
    return proposal(score, match_id=f"{need}.{offer}", need_id=need, offer_id=offer, side=side, list_version=version)


async def test_a_batch_of_events_ends_where_the_same_events_one_by_one_end(api: Any) -> None:
    """The batched projection (one read, one bulk write) against the one-event-at-a-time path, on two
    sets of matches fed the same random events; decided matches stay untouched in both."""
    import random

    store = api.app.state.store
    rng = random.Random(11)
    t0 = datetime.now(UTC)
    for prefix in ("a", "b"):  # the same decided match in both worlds
        await store.apply_match_proposed(sided("proposed", f"{prefix}n0", "f0", "need", 1), t0)  # type: ignore[arg-type]
        await service.decide(api.app.state.catalog, Principal(role="broker", organization_id="b1"), f"{prefix}n0.f0", DecisionIn(decision="reject"))
    events = []
    for i in range(200):
        n, f = rng.randrange(6), rng.randrange(3)
        events.append((rng.choice(["proposed", "proposed", "retracted"]), n, f, rng.choice(["need", "offer"]), rng.randint(1, 6), round(rng.random(), 3), i))
    for start in range(0, len(events), 37):  # batches of several events per match
        await store.apply_match_events([(sided(k, f"an{n}", f"f{f}", side, v, s), t0 + timedelta(seconds=i))
                                        for k, n, f, side, v, s, i in events[start:start + 37]])
    for k, n, f, side, v, s, i in events:
        payload = sided(k, f"bn{n}", f"f{f}", side, v, s)
        apply = store.apply_match_proposed if k == "proposed" else store.apply_match_retracted
        await apply(payload, t0 + timedelta(seconds=i))
    fields = ("status", "sides", "score", "proposed_at", "retracted_at", "retracted_reason")

    def view(doc: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(doc.get(f) for f in fields)

    batched = {d["_id"][1:]: view(d) async for d in store.matches.find({"_id": {"$regex": "^an"}})}
    single = {d["_id"][1:]: view(d) async for d in store.matches.find({"_id": {"$regex": "^bn"}})}
    assert batched == single
    assert batched["n0.f0"][0] == "rejected" and len(batched) > 10


async def test_a_match_decided_between_the_batch_read_and_its_write_is_redone_and_stays_decided(api: Any) -> None:
    store = api.app.state.store
    t0 = datetime.now(UTC)
    await store.apply_match_events([(sided("proposed", "cn1", "f1", "need", 1), t0), (sided("proposed", "cn2", "f1", "need", 1), t0)])
    real_find = store.matches.find

    class DecideAfterRead:
        """The collection, except that a broker approves cn1.f1 right after the batch has read it."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real_collection, name)

        def find(self, *args: Any, **kwargs: Any) -> Any:
            cursor = real_find(*args, **kwargs)

            async def rows() -> Any:
                docs = [d async for d in cursor]
                await service.decide(api.app.state.catalog, Principal(role="broker", organization_id="b1"), "cn1.f1", DecisionIn(decision="reject"))
                for d in docs:
                    yield d

            return rows()

    real_collection = store.matches
    store.matches = DecideAfterRead()
    try:
        written = await store.apply_match_events([(sided("retracted", "cn1", "f1", "need", 2), t0 + timedelta(seconds=1)),
                                                  (sided("retracted", "cn2", "f1", "need", 2), t0 + timedelta(seconds=1))])
    finally:
        store.matches = real_collection
    assert written == 2
    assert (await store.get_match("cn1.f1"))["status"] == "rejected"
    assert (await store.get_match("cn2.f1"))["status"] == "retracted"


async def test_a_batch_writes_new_matches_with_their_facets_so_the_enricher_has_nothing_left(api: Any) -> None:
    from tests.integration.catalog.conftest import NEED, OFFER, post

    _, need_headers = await api.org("country_office", "SEN")
    _, offer_headers = await api.org("solution_provider", "BRA")
    need = await post(api, "/v1/needs", NEED, need_headers)
    offer = await post(api, "/v1/offers", OFFER, offer_headers)
    store = api.app.state.store
    written = await store.apply_match_events([(sided("proposed", need["id"], offer["id"], "need", 1), datetime.now(UTC))])
    assert written == 1
    doc = await store.get_match(f"{need['id']}.{offer['id']}")
    assert doc["facets_v"] is not None and doc["sectors"] == ["food_security", "nutrition"] and doc["need_country"] == "SEN"
    assert doc["sdgs"] == [2, 4] and doc["offer_languages"] == ["en", "fr", "pt"]
    assert await store.matches.count_documents({"facets_v": None}) == 0
