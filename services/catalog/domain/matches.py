"""The match state machine, pure.

    proposed ──approve──▶ approved ──▶ (each party) interested / not_interested
        │                    │            │
        └──reject──▶ rejected│            ▼
                             └──▶ agreement_reached ──▶ in_progress ──▶ completed
                     declined: from any step after approval that is not final

`status` is the broker's side (proposed, approved, rejected, retracted); `lifecycle` is what happened
after approval: the last step recorded (None right after approval). Steps that existed before the
responses were added keep working: approved → agreement_reached → completed, approved → declined.

A party's response is per side: the need's organization answers for the need, the offer's for the
offer; `not_interested` from either side ends the introduction (the lifecycle becomes
`not_interested`, final). `agreement_reached` may follow approval directly or a response of interest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from services.catalog.domain.errors import Conflict, Forbidden
from ssmatch.auth import Principal

MatchStatus = Literal["proposed", "approved", "rejected", "retracted"]
LifecycleEvent = Literal["interested", "not_interested", "agreement_reached", "in_progress", "completed", "declined"]
Party = Literal["need", "offer"]
Decision = Literal["approve", "reject"]

LIFECYCLE_EVENTS: tuple[str, ...] = ("interested", "not_interested", "agreement_reached", "in_progress", "completed", "declined")
RESPONSES = frozenset({"interested", "not_interested"})
FINAL = frozenset({"completed", "declined", "not_interested"})
#: lifecycle (None = just approved) → the steps that may follow it
NEXT: dict[str | None, frozenset[str]] = {
    None: frozenset({"interested", "not_interested", "agreement_reached", "declined"}),
    "interested": frozenset({"interested", "not_interested", "agreement_reached", "declined"}),
    "agreement_reached": frozenset({"in_progress", "completed", "declined"}),
    "in_progress": frozenset({"completed", "declined"}),
    "completed": frozenset(),
    "declined": frozenset(),
    "not_interested": frozenset(),
}
#: lifecycle steps that count as a partnership (an agreement was reached)
PARTNERSHIP = frozenset({"agreement_reached", "in_progress", "completed"})
CLAIM_SECONDS = 300


def actor_of(principal: Principal) -> str:
    """The id recorded as the actor of a change: the organization, or `admin` for the admin token."""
    return principal.organization_id or "admin"


def is_staff(principal: Principal) -> bool:
    return principal.role in ("admin", "broker")


def party_of(principal: Principal, match: Mapping[str, Any]) -> Party | None:
    """Which side of the match the caller's organization is, if any."""
    if principal.organization_id and principal.organization_id == match.get("need_organization_id"):
        return "need"
    if principal.organization_id and principal.organization_id == match.get("offer_organization_id"):
        return "offer"
    return None


def may_see(principal: Principal, match: Mapping[str, Any]) -> bool:
    return is_staff(principal) or party_of(principal, match) is not None


def active_claim(match: Mapping[str, Any], at: datetime) -> tuple[str, datetime] | None:
    """(holder, until) when a claim is still running at `at`, else None (expired claims are no claims)."""
    holder, until = match.get("claimed_by"), match.get("claimed_until")
    if holder and until is not None and _aware(until) > at:
        return holder, _aware(until)
    return None


def check_claimable(match: Mapping[str, Any], principal: Principal, at: datetime) -> None:
    """A broker may claim (or renew its claim on) a proposed match nobody else holds."""
    if match["status"] != "proposed":
        raise Conflict(f"match {match['_id']} is {match['status']}; only proposed matches can be claimed",
                       code="not_proposed", details={"status": match["status"]})
    claim = active_claim(match, at)
    if claim and claim[0] != actor_of(principal):
        raise Conflict(f"match {match['_id']} is claimed by {claim[0]} until {claim[1].isoformat()}",
                       code="claimed", details={"claimed_by": claim[0], "claimed_until": claim[1].isoformat()})


def check_releasable(match: Mapping[str, Any], principal: Principal, at: datetime) -> None:
    """Only the holder (or an admin) releases a running claim; releasing nothing is fine."""
    claim = active_claim(match, at)
    if claim and claim[0] != actor_of(principal) and not principal.is_admin:
        raise Conflict(f"match {match['_id']} is claimed by {claim[0]}, not by you",
                       code="claimed", details={"claimed_by": claim[0], "claimed_until": claim[1].isoformat()})


def check_decidable(match: Mapping[str, Any], principal: Principal, at: datetime) -> None:
    """Only a proposed match that no other broker holds can be decided."""
    if match["status"] != "proposed":
        raise Conflict(
            f"match {match['_id']} is {match['status']}; only proposed matches can be decided",
            code="already_decided" if match["status"] in ("approved", "rejected") else "not_proposed",
            details={"status": match["status"]},
        )
    claim = active_claim(match, at)
    if claim and claim[0] != actor_of(principal):
        raise Conflict(f"match {match['_id']} is claimed by {claim[0]} until {claim[1].isoformat()}",
                       code="claimed", details={"claimed_by": claim[0], "claimed_until": claim[1].isoformat()})


OPEN_ITEM_STATUSES = frozenset({"open", "matched"})


def check_items_open(match: Mapping[str, Any], need: Mapping[str, Any] | None, offer: Mapping[str, Any] | None) -> None:
    """An introduction is approved only between a need and an offer that are both still open."""
    for kind, item in (("need", need), ("offer", offer)):
        status = item.get("status") if item else "missing"
        if status not in OPEN_ITEM_STATUSES:
            raise Conflict(
                f"the {kind} {match[f'{kind}_id']} of match {match['_id']} is {status}, no longer open",
                code=f"{kind}_not_open",
                details={"kind": kind, "id": match[f"{kind}_id"], "status": status},
            )


def responding_party(principal: Principal, match: Mapping[str, Any], party: Party | None) -> Party:
    """Whose response this is: a party answers for its own side; staff must name the side."""
    own = party_of(principal, match)
    if own is not None:
        if party is not None and party != own:
            raise Forbidden(f"your organization is the {own} side of this match; it cannot answer for the {party}")
        return own
    if is_staff(principal):
        if party is None:
            raise Conflict("a broker or admin recording a response must name the party (need or offer)",
                           code="party_required", details={"allowed": ["need", "offer"]})
        return party
    raise Forbidden("only the parties, a broker or an admin may record a step of this match")


def check_transition(match: Mapping[str, Any], event: str, party: Party | None) -> None:
    """Raise Conflict unless `event` may follow the match's current state."""
    if match["status"] != "approved":
        raise Conflict(f"match {match['_id']} is {match['status']}; only approved introductions move on",
                       code="not_approved", details={"status": match["status"]})
    state = match.get("lifecycle")
    allowed = NEXT.get(state, frozenset())
    if event not in allowed:
        raise Conflict(f"match {match['_id']} is at {state or 'approved'}; {event} cannot follow",
                       code="invalid_transition", details={"lifecycle": state, "allowed": sorted(allowed)})
    if event in RESPONSES and party is not None:
        prior = (match.get("responses") or {}).get(party)
        if prior:
            raise Conflict(f"the {party} side already answered {prior['response']}",
                           code="already_responded", details={"party": party, "response": prior["response"]})


def next_lifecycle(match: Mapping[str, Any], event: str) -> str:
    """The lifecycle value after `event` (responses of interest keep `interested`)."""
    return event


def claim_view(match: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    claim = active_claim(match, at)
    return {"claimed_by": claim[0] if claim else None, "claimed_until": claim[1].isoformat() if claim else None}


def _aware(ts: datetime) -> datetime:
    from datetime import UTC

    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
