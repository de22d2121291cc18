"""The match state machine and who may do what, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.catalog.domain import matches as rules
from services.catalog.domain.errors import Conflict, Forbidden
from ssmatch.auth import Principal

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
BROKER_A = Principal(role="broker", organization_id="ba")
BROKER_B = Principal(role="broker", organization_id="bb")
ADMIN = Principal(role="admin", organization_id=None)
SEEKER = Principal(role="seeker", organization_id="so")
PROVIDER = Principal(role="provider", organization_id="po")
OUTSIDER = Principal(role="seeker", organization_id="xx")


def match(**kw: Any) -> dict[str, Any]:
    return {"_id": "n.o", "need_id": "n", "offer_id": "o", "need_organization_id": "so", "offer_organization_id": "po", "status": "proposed", **kw}


def test_claims_expire_and_block_only_other_brokers() -> None:
    held = match(claimed_by="ba", claimed_until=NOW + timedelta(minutes=3))
    rules.check_claimable(held, BROKER_A, NOW)
    rules.check_decidable(held, BROKER_A, NOW)
    with pytest.raises(Conflict) as exc:
        rules.check_claimable(held, BROKER_B, NOW)
    assert exc.value.code == "claimed" and exc.value.details["claimed_by"] == "ba"
    with pytest.raises(Conflict):
        rules.check_decidable(held, BROKER_B, NOW)
    with pytest.raises(Conflict):
        rules.check_releasable(held, BROKER_B, NOW)
    rules.check_releasable(held, ADMIN, NOW)
    later = NOW + timedelta(minutes=4)
    rules.check_claimable(held, BROKER_B, later)
    assert rules.claim_view(held, later) == {"claimed_by": None, "claimed_until": None}
    assert rules.claim_view(held, NOW)["claimed_by"] == "ba"


@pytest.mark.parametrize("status,code", [("approved", "already_decided"), ("rejected", "already_decided"), ("retracted", "not_proposed")])
def test_only_proposed_matches_are_decided(status: str, code: str) -> None:
    with pytest.raises(Conflict) as exc:
        rules.check_decidable(match(status=status), BROKER_A, NOW)
    assert exc.value.code == code


@pytest.mark.parametrize("need,offer,code", [
    ({"status": "withdrawn"}, {"status": "open"}, "need_not_open"),
    ({"status": "open"}, {"status": "closed"}, "offer_not_open"),
    (None, {"status": "open"}, "need_not_open"),
    ({"status": "draft"}, {"status": "open"}, "need_not_open"),
])
def test_approval_needs_both_items_open(need: Any, offer: Any, code: str) -> None:
    with pytest.raises(Conflict) as exc:
        rules.check_items_open(match(), need, offer)
    assert exc.value.code == code
    rules.check_items_open(match(), {"status": "open"}, {"status": "matched"})


PATHS = [
    ["agreement_reached", "completed"],  # the short path of before
    ["declined"],
    ["interested", "interested", "agreement_reached", "in_progress", "completed"],
    ["interested", "not_interested"],
    ["agreement_reached", "in_progress", "declined"],
]


@pytest.mark.parametrize("path", PATHS)
def test_valid_paths(path: list[str]) -> None:
    state: dict[str, Any] = match(status="approved", lifecycle=None, responses={})
    parties = iter(["need", "offer"])
    for event in path:
        party = next(parties) if event in rules.RESPONSES else None
        rules.check_transition(state, event, party)
        state["lifecycle"] = rules.next_lifecycle(state, event)
        if party:
            state["responses"][party] = {"response": event}


@pytest.mark.parametrize("lifecycle,event", [
    (None, "completed"), (None, "in_progress"), ("interested", "completed"), ("agreement_reached", "interested"),
    ("completed", "declined"), ("declined", "agreement_reached"), ("not_interested", "interested"), ("in_progress", "agreement_reached"),
])
def test_invalid_transitions_conflict(lifecycle: str | None, event: str) -> None:
    with pytest.raises(Conflict) as exc:
        rules.check_transition(match(status="approved", lifecycle=lifecycle), event, None)
    assert exc.value.code == "invalid_transition"


@pytest.mark.parametrize("status", ["proposed", "rejected", "retracted"])
def test_nothing_follows_an_unapproved_match(status: str) -> None:
    with pytest.raises(Conflict) as exc:
        rules.check_transition(match(status=status), "completed", None)
    assert exc.value.code == "not_approved"


def test_a_party_answers_once_and_for_its_own_side() -> None:
    m = match(status="approved", lifecycle="interested", responses={"need": {"response": "interested"}})
    assert rules.responding_party(SEEKER, m, None) == "need"
    assert rules.responding_party(PROVIDER, m, "offer") == "offer"
    with pytest.raises(Forbidden):
        rules.responding_party(SEEKER, m, "offer")
    with pytest.raises(Forbidden):
        rules.responding_party(OUTSIDER, m, None)
    with pytest.raises(Conflict) as exc:
        rules.responding_party(BROKER_A, m, None)
    assert exc.value.code == "party_required"
    assert rules.responding_party(BROKER_A, m, "need") == "need"
    with pytest.raises(Conflict) as exc:
        rules.check_transition(m, "not_interested", "need")
    assert exc.value.code == "already_responded"
    rules.check_transition(m, "interested", "offer")
