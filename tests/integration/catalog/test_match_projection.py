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
