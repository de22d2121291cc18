"""The catalog's projection of sided match events (services/catalog/projection.py: `project`)."""

from __future__ import annotations

from typing import Any

from services.catalog.projection import project
from ssmatch.events import MatchProposedPayload, MatchRetractedPayload


def proposed(side: str, v: int, score: float = 0.5) -> MatchProposedPayload:
    return MatchProposedPayload(match_id="n.o", need_id="n", offer_id="o", need_organization_id="a", offer_organization_id="b",
                                score=score, explanation={}, rules_version="1", need_revision=1, offer_revision=1,
                                side=side, list_version=v)  # type: ignore[arg-type]


def retracted(side: str, v: int) -> MatchRetractedPayload:
    return MatchRetractedPayload(match_id="n.o", need_id="n", offer_id="o", reason="r", side=side, list_version=v)  # type: ignore[arg-type]


def run(events: list[Any], start: dict[str, Any] | None = None) -> dict[str, Any] | None:
    doc = start
    for e in events:
        d = project(doc, e)
        if d is not None:
            doc = {**(doc or {}), **d.fields, "status": d.status, "sides": d.sides}
    return doc


def test_a_pair_is_proposed_while_either_side_holds_it() -> None:
    doc = run([proposed("need", 1), proposed("offer", 1), retracted("need", 2)])
    assert doc is not None and doc["status"] == "proposed"
    doc = run([retracted("offer", 2)], doc)
    assert doc is not None and doc["status"] == "retracted"
    doc = run([proposed("offer", 3, score=0.7)], doc)
    assert doc is not None and doc["status"] == "proposed" and doc["score"] == 0.7


def test_an_older_version_of_a_side_is_ignored_whatever_the_arrival_order() -> None:
    doc = run([proposed("need", 1), retracted("need", 3), proposed("need", 2)])
    assert doc is not None and doc["status"] == "retracted" and doc["sides"]["need"] == {"v": 3, "in": False}
    assert project(doc, retracted("need", 3)) is None  # a redelivery


def test_decided_matches_are_never_touched() -> None:
    for status in ("approved", "rejected", "in_progress", "completed"):
        assert project({"status": status, "sides": {"need": {"v": 1, "in": True}}}, retracted("need", 2)) is None
        assert project({"status": status}, proposed("offer", 5)) is None


def test_a_retraction_of_an_unknown_pair_creates_nothing() -> None:
    assert project(None, retracted("need", 1)) is None


def test_a_sided_event_takes_over_a_proposal_of_an_older_matcher() -> None:
    legacy = {"status": "proposed", "score": 0.4}
    decision = project(legacy, retracted("need", 1))
    assert decision is not None and decision.status == "retracted"
    decision = project(legacy, proposed("offer", 1, score=0.6))
    assert decision is not None and decision.status == "proposed" and decision.fields["score"] == 0.6


def test_a_batch_folded_into_one_update_equals_its_events_applied_one_by_one() -> None:
    """`fold_updates` is what the batched projection writes: for random sequences of sided events,
    starting from nothing, from an open match and from a decided one, the folded `$set` applied once
    equals applying each event's update in order."""
    import random
    from datetime import UTC, datetime, timedelta

    from services.catalog.projection import fold_updates, sided_update

    rng = random.Random(7)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    starts: list[dict[str, Any] | None] = [None, {"_id": "n.o", "status": "proposed", "sides": {"need": {"v": 2, "in": True}}, "score": 0.3},
                                           {"_id": "n.o", "status": "approved", "sides": {"offer": {"v": 1, "in": True}}}]
    for trial in range(300):
        start = starts[trial % 3]
        events: list[tuple[Any, datetime]] = []
        for i in range(rng.randint(1, 8)):
            side, v = rng.choice(["need", "offer"]), rng.randint(1, 5)
            event = proposed(side, v, score=rng.random()) if rng.random() < 0.6 else retracted(side, v)
            events.append((event, t0 + timedelta(seconds=i)))
        one_by_one = start
        for payload, at in events:
            update = sided_update(one_by_one, payload, at)
            if update is not None:
                one_by_one = {**(one_by_one or {"_id": "n.o"}), **update}
        folded = fold_updates(start, events)
        assert (start if folded is None else {**(start or {"_id": "n.o"}), **folded}) == one_by_one
        if start is not None and start["status"] == "approved":
            assert folded is None
