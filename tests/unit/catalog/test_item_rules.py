"""Item rules: If-Match parsing, visibility of private items, list scopes, contact privacy."""

from __future__ import annotations

import pytest

from services.catalog.domain import items as rules
from services.catalog.domain.errors import NotFound, PreconditionRequired
from ssmatch.auth import Principal

OWNER = Principal(role="seeker", organization_id="o1")
OTHER = Principal(role="seeker", organization_id="o2")
BROKER = Principal(role="broker", organization_id="b")


@pytest.mark.parametrize("header,revision", [('"3"', 3), ('W/"3"', 3), (" 12 ", 12), ('"²"', -1), ('"١"', -1), ("*", -1), ('"3a"', -1), ('"' + "9" * 30 + '"', -1), ("", -1)])
def test_if_match_names_a_revision_or_none(header: str, revision: int) -> None:
    assert rules.parse_if_match(header) == revision


def test_missing_if_match_is_a_precondition_required() -> None:
    with pytest.raises(PreconditionRequired):
        rules.parse_if_match(None)


@pytest.mark.parametrize("status", ["draft", "withdrawn"])
def test_private_items_are_unknown_to_others(status: str) -> None:
    item = {"_id": "n1", "organization_id": "o1", "status": status}
    assert rules.check_visible("need", item, OWNER, "n1") is item
    assert rules.check_visible("need", item, BROKER, "n1") is item
    with pytest.raises(NotFound):
        rules.check_visible("need", item, OTHER, "n1")
    assert rules.check_visible("need", {**item, "status": "open"}, OTHER, "n1")


def test_list_scopes() -> None:
    assert rules.list_scope(BROKER, None) == {"status": {"$ne": "withdrawn"}}
    assert rules.list_scope(OTHER, None) == {"status": {"$in": ["open", "matched", "closed"]}}
    assert rules.list_scope(OTHER, "draft") == {"status": "draft", "organization_id": "o2"}
    assert rules.list_scope(OTHER, "open") == {"status": "open"}


def test_contact_rule() -> None:
    assert rules.may_see_contact(OWNER, "o1", False)
    assert rules.may_see_contact(BROKER, "o1", False)
    assert not rules.may_see_contact(OTHER, "o1", False)
    assert rules.may_see_contact(OTHER, "o1", True)
