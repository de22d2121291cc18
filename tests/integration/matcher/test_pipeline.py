"""MatcherService against a real MongoDB: ingest, score, propose, retract, idempotency."""

from __future__ import annotations

from typing import Any

import pytest

from services.matcher.pipeline import MatcherService, SectorOverlapScorer
from services.matcher.state import MatcherState
from ssmatch.events import ItemWithdrawnPayload, MatchProposedPayload, MatchRetractedPayload
from ssmatch.mongo import make_client
from tests.helpers import item_payload

pytestmark = pytest.mark.integration


@pytest.fixture
async def service(make_settings: Any) -> Any:
    settings = make_settings()
    client = make_client(settings.mongodb_uri)
    state = MatcherState(client, settings.matcher_db)
    await state.init()
    yield MatcherService(state, SectorOverlapScorer())
    await client.drop_database(settings.matcher_db)
    await client.close()


async def test_need_and_offer_sharing_a_sector_become_one_proposal(service: MatcherService) -> None:
    need = item_payload("need", sectors=["agriculture", "food_security"])
    offer = item_payload("offer", sectors=["agriculture"])
    unrelated = item_payload("offer", sectors=["energy"])
    changed, _ = await service.ingest([need, offer, unrelated])
    assert set(changed) == {("need", need.id), ("offer", offer.id), ("offer", unrelated.id)}
    events = await service.rescore("need", need.id)
    assert [e.type for e in events] == ["match.proposed"]
    payload = MatchProposedPayload.model_validate(events[0].payload)
    assert (payload.need_id, payload.offer_id) == (need.id, offer.id)
    assert payload.score == pytest.approx(0.5)
    assert payload.explanation["components"] == {"sectors": 0.5}
    assert events[0].entity_id == f"{need.id}.{offer.id}"


async def test_rescoring_the_same_revisions_repeats_the_same_event_id(service: MatcherService) -> None:
    need, offer = item_payload("need"), item_payload("offer")
    await service.ingest([need, offer])
    first = await service.rescore("need", need.id)
    again = await service.rescore("need", need.id)
    from_offer = await service.rescore("offer", offer.id)
    assert first[0].event_id == again[0].event_id == from_offer[0].event_id


async def test_same_organization_is_never_matched(service: MatcherService) -> None:
    need = item_payload("need", organization_id="same-org")
    offer = item_payload("offer", organization_id="same-org")
    await service.ingest([need, offer])
    assert await service.rescore("need", need.id) == []


async def test_stale_revision_is_ignored(service: MatcherService) -> None:
    newer = item_payload("need", revision=3, sectors=["health"])
    older = newer.model_copy(update={"revision": 2, "sectors": ["energy"]})
    await service.ingest([newer])
    changed, outcome = await service.ingest([older])
    assert changed == [] and outcome.stale == 1
    assert service.state.get("need", newer.id)["sectors"] == ["health"]


async def test_withdrawing_an_offer_retracts_its_proposals(service: MatcherService) -> None:
    need, offer = item_payload("need"), item_payload("offer")
    await service.ingest([need, offer])
    await service.rescore("need", need.id)
    changed, _ = await service.ingest([ItemWithdrawnPayload(id=offer.id, kind="offer", organization_id=offer.organization_id, revision=2)])
    assert changed == [("offer", offer.id)]
    events = await service.rescore("offer", offer.id)
    assert [e.type for e in events] == ["match.retracted"]
    assert MatchRetractedPayload.model_validate(events[0].payload).reason == "item withdrawn or closed"
    assert await service.rescore("need", need.id) == []


async def test_state_survives_a_restart(service: MatcherService, make_settings: Any) -> None:
    need = item_payload("need")
    await service.ingest([need])
    fresh = MatcherState(service.state.items_coll.database.client, service.state.db.name)
    await fresh.init()
    assert fresh.get("need", need.id)["title"] == need.title
