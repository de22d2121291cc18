"""The reports summary's arithmetic and the queue cursor, pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.catalog.domain.errors import Invalid
from services.catalog.domain.queue import decode_cursor, encode_cursor, match_facets
from services.catalog.domain.reports import summarize

T0 = datetime(2026, 1, 15, tzinfo=UTC)


def test_summary_of_nothing_has_every_key() -> None:
    s = summarize([], [], [])
    assert s["totals"] == {"needs": 0, "offers": 0, "matches": 0, "partnerships": 0}
    assert s["shares"]["LDC"] is None and s["median_days"]["posting_to_first_match"] is None and s["time_series"] == []
    assert len(s["by_sdg"]) == 17


def test_medians_funnel_and_money_by_currency() -> None:
    needs = [{"_id": f"n{i}", "sdgs": [1], "sectors": ["health"], "country": "MWI", "status": "open", "created_at": T0} for i in range(3)]
    matches = [
        {"_id": "n0.o", "need_id": "n0", "status": "approved", "lifecycle": "completed", "created_at": T0 + timedelta(days=1),
         "decided_at": T0 + timedelta(days=3), "groups": ["LDC"], "outcome": {"resources_mobilised": {"amount": 10, "currency": "USD"}, "people_trained": 2},
         "lifecycle_history": [{"event": "completed", "at": T0 + timedelta(days=40)}]},
        {"_id": "n1.o", "need_id": "n1", "status": "approved", "lifecycle": "completed", "created_at": T0 + timedelta(days=3),
         "decided_at": T0 + timedelta(days=5), "outcome": {"resources_mobilised": {"amount": 5, "currency": "BRL"}, "people_trained": 3}},
        {"_id": "n1.p", "need_id": "n1", "status": "retracted", "created_at": T0 + timedelta(days=2)},
    ]
    s = summarize(needs, [], matches)
    assert s["funnel"] == {"posted": 3, "matched": 2, "approved": 2, "agreement": 2, "completed": 2}
    assert s["median_days"] == {"posting_to_first_match": 1.5, "posting_to_introduction": 4.0}  # a later-retracted proposal still was the first match
    assert s["outcomes"]["resources_mobilised"] == [{"currency": "BRL", "amount": 5.0}, {"currency": "USD", "amount": 10.0}]
    assert s["outcomes"]["people_trained"] == 5 and s["shares"]["LDC"] == 0.5
    months = {r["month"]: r for r in s["time_series"]}
    assert months["2026-01"]["needs"] == 3 and months["2026-02"]["completed"] == 1


def test_cursor_round_trip_and_refusals() -> None:
    assert decode_cursor(encode_cursor("score", 0.5, "a.b"), "score") == (0.5, "a.b")
    assert decode_cursor(encode_cursor("age", T0, "a.b"), "age") == (T0, "a.b")
    for bad in ("", "!!!", encode_cursor("score", 0.5, "a.b")):
        with pytest.raises(Invalid):
            decode_cursor(bad, "age")


def test_facets_union_and_groups_of_either_side() -> None:
    f = match_facets({"sdgs": [2], "sectors": ["health"], "country": "MWI", "languages": ["fr"]}, {"sdgs": [3], "country": "FJI", "languages": ["en"]})
    assert f["sdgs"] == [2, 3] and set(f["groups"]) == {"LDC", "LLDC", "SIDS"} and "eastern africa" in f["regions"]
    assert f["need_languages"] == ["fr"] and f["offer_languages"] == ["en"]
    assert match_facets(None, None)["sdgs"] == []
