"""Who hears what (pure rules)."""

from __future__ import annotations

from services.notify.rules import alerts_for
from ssmatch.events import MatchDecidedPayload, MatchProposedPayload, MatchRetractedPayload, make_event


def proposed() -> tuple:
    p = MatchProposedPayload(match_id="n.f", need_id="n", offer_id="f", need_organization_id="o1", offer_organization_id="o2",
                             score=0.7, explanation={}, rules_version="1", need_revision=1, offer_revision=1)
    return make_event("match.proposed", "match", "n.f", p, producer="t"), p


def test_proposals_alert_every_broker_once_keyed_by_pair() -> None:
    env, p = proposed()
    alerts = alerts_for(env, p, ["b1", "b2"])
    assert [(a.organization_id, a.kind) for a in alerts] == [("b1", "match_proposed"), ("b2", "match_proposed")]
    env2 = make_event("match.proposed", "match", "n.f", p, producer="t")  # same pair, new event id
    assert {a.dedup_key for a in alerts_for(env2, p, ["b1"])} == {alerts[0].dedup_key}


def test_approval_alerts_both_parties_and_rejection_is_its_own_kind() -> None:
    for decision, kind in (("approve", "match_approved"), ("reject", "match_rejected")):
        p = MatchDecidedPayload(match_id="n.f", need_id="n", offer_id="f", decision=decision, decided_by="b1",
                                need_organization_id="o1", offer_organization_id="o2", score=0.7, need_title="N", offer_title="F")
        alerts = alerts_for(make_event("match.decided", "match", "n.f", p, producer="t"), p, ["b1"])
        assert [(a.organization_id, a.kind) for a in alerts] == [("o1", kind), ("o2", kind)]
        assert alerts[0].data["offer_title"] == "F"


def test_retractions_alert_nobody_yet() -> None:
    p = MatchRetractedPayload(match_id="n.f", need_id="n", offer_id="f", reason="x")
    assert alerts_for(make_event("match.retracted", "match", "n.f", p, producer="t"), p, ["b1"]) == []


def test_lifecycle_steps_reach_the_other_side_and_brokers_not_the_reporter() -> None:
    from ssmatch.events import MatchLifecyclePayload

    p = MatchLifecyclePayload(match_id="n.f", need_id="n", offer_id="f", event="agreement_reached", reported_by="o1",
                              need_organization_id="o1", offer_organization_id="o2")
    alerts = alerts_for(make_event("match.lifecycle", "match", "n.f", p, producer="t"), p, ["b1"])
    assert [(a.organization_id, a.kind) for a in alerts] == [("o2", "match_lifecycle"), ("b1", "match_lifecycle")]
    assert alerts[0].data["event"] == "agreement_reached"
    done = p.model_copy(update={"event": "completed", "reported_by": "b1"})
    keys = {a.dedup_key for a in alerts_for(make_event("match.lifecycle", "match", "n.f", done, producer="t"), done, ["b1"])}
    assert keys == {"match_lifecycle:n.f:completed"}


def test_email_language_is_the_preference_else_the_organizations_own() -> None:
    from datetime import UTC, datetime

    from services.notify.agents import plan_deliveries
    from services.notify.preferences import Preferences
    from services.notify.rules import Alert

    alert = Alert("o1", "match_rejected", "n.f", "match_decided:n.f", {"need_title": "N", "offer_title": "F"})
    orgs = {"o1": {"_id": "o1", "name": "Ministère", "language": "fr", "contact": {"name": "Awa", "email": "awa@x.sn"}}}
    now = datetime.now(UTC)

    def lang(prefs: Preferences) -> str:
        (record,) = plan_deliveries([(alert, "e1", None)], {"o1": prefs}, {}, orgs, "http://c", now)
        return record["language"]

    assert lang(Preferences(channels=["inbox", "email"])) == "fr"
    assert lang(Preferences(channels=["inbox", "email"], language="es")) == "es"
    orgs["o1"].pop("language")
    assert lang(Preferences(channels=["inbox", "email"])) == "en"
