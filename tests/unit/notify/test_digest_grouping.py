"""Which due delivery records share a digest e-mail, and what that e-mail lists (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.notify.digest import digest_context, digest_language, digest_message_id, is_digest_record, ordered, split_due
from services.notify.templates import render

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def rec(rid: str, org: str = "brk1", target: str = "desk@brokers.example", *, score: float | None = 0.7, digest: bool = True,
        channel: str = "email", kind: str = "match_proposed", language: str = "en", minutes: int = 0, title: str | None = None) -> dict[str, Any]:
    return {
        "_id": rid, "organization_id": org, "target": target, "channel": channel, "kind": kind, "digest": digest, "language": language,
        "created_at": T0 + timedelta(minutes=minutes),
        "context": {"score": score, "need_title": title or f"Need {rid}", "offer_title": f"Offer {rid}",
                    "explanation": {"components": {"semantic": 0.5}}, "url": f"http://cat/v1/matches/{rid}", "recipient_name": "Desk"},
    }


def test_digest_records_are_grouped_per_organization_and_address_and_the_rest_go_alone() -> None:
    due = [
        rec("a"), rec("b", target="DESK@brokers.example "), rec("c", org="brk2"), rec("d", target="other@brokers.example"),
        rec("e", digest=False), rec("f", channel="webhook"), rec("g", kind="match_approved"),
    ]
    single, groups = split_due(due)
    assert {k: [d["_id"] for d in v] for k, v in groups.items()} == {
        ("brk1", "desk@brokers.example"): ["a", "b"],
        ("brk2", "desk@brokers.example"): ["c"],
        ("brk1", "other@brokers.example"): ["d"],
    }
    assert [d["_id"] for d in single] == ["e", "f", "g"]  # not digest, webhook, a kind the digest cannot list


def test_a_record_the_digest_cannot_list_is_not_put_in_one() -> None:
    broken = rec("x")
    del broken["context"]
    assert not is_digest_record(broken)
    assert not is_digest_record(rec("z", score=None))  # it would fail the whole digest's rendering
    assert not is_digest_record({**rec("t"), "context": {**rec("t")["context"], "score": True}})
    assert is_digest_record(rec("y")) and is_digest_record(rec("w", score=1))


def test_context_lists_every_match_best_first_and_renders_every_title() -> None:
    group = [rec("low", score=0.41, title="Semences"), rec("high", score=0.93, title="Irrigation"), rec("zero", score=0.0, title="Cartes")]
    ctx = digest_context(group, "http://catalog.example/")
    assert [m["need_title"] for m in ctx["matches"]] == ["Irrigation", "Semences", "Cartes"]
    assert set(ctx["matches"][0]) == {"score", "need_title", "offer_title", "explanation", "url"}
    assert ctx["url"] == "http://catalog.example/v1/matches?status=proposed"
    assert ctx["recipient_name"] == "Desk"
    out = render("digest", "fr", ctx)
    assert "3 mises en relation proposées" in out.subject
    for title in ("Irrigation", "Semences", "Cartes", "Offer low", "Offer high", "Offer zero"):
        assert title in out.text and title in out.html
    assert out.text.index("Irrigation") < out.text.index("Semences") < out.text.index("Cartes")


def test_language_is_that_of_the_latest_record() -> None:
    assert digest_language([rec("a", language="en", minutes=0), rec("b", language="es", minutes=5)]) == "es"
    assert digest_language([rec("a", language="", minutes=0)]) == "en"


def test_message_id_depends_on_the_set_of_records_only_and_stays_short() -> None:
    long_ids = [f"match_proposed:{'n' * 40}{i}.{'f' * 40}{i}:brk1:email" for i in range(50)]
    group = [rec(i) for i in long_ids]
    same = digest_message_id(group)
    assert same == digest_message_id(list(reversed(group)))  # a re-send after a crash keeps its id
    assert digest_message_id(group[:-1]) != same  # no truncation collision between different digests
    assert digest_message_id(group[1:]) != same
    assert len(same) < 80 and "@" in same


def test_ordering_is_stable_for_ties() -> None:
    group = [rec("b", score=0.5, minutes=1), rec("a", score=0.5, minutes=1), rec("c", score=0.5, minutes=0)]
    assert [d["_id"] for d in ordered(group)] == ["c", "a", "b"]
