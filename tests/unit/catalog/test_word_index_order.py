"""Newest-first pages of the word index are ordered on the ObjectId's two u64 halves (a fast field each)
instead of the id's text, and must come out exactly as ordering by the id would: the ids one process
makes within one second share their high half, so the page's edge often falls inside such a group."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from services.catalog.adapters.word_index import WordIndex
from services.catalog.domain.search import analyse_query

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def object_ids(rng: random.Random) -> list[str]:
    """ObjectIds as several processes make them: 4-byte second, 5-byte process value, 3-byte counter."""
    out = []
    for second in range(1_764_000_000, 1_764_000_006):
        for process in (rng.randbytes(5).hex() for _ in range(3)):
            start = rng.randrange(1 << 20)
            out += [f"{second:08x}{process}{start + n:06x}" for n in range(rng.randrange(1, 120))]
    return out


def item(item_id: str, rng: random.Random) -> dict[str, Any]:
    return {"_id": item_id, "kind": "need", "title": rng.choice(["seed systems", "solar pumps", "school meals"]), "description": "", "keywords": [],
            "sectors": [rng.choice(["agriculture", "energy"])], "sdgs": [rng.choice([2, 7])], "status": rng.choice(["open", "open", "withdrawn"]),
            "organization_id": "org", "country": "MWI", "languages": ["en"], "modalities": [], "revision": 1, "created_at": NOW, "updated_at": NOW}


def pages(index: WordIndex, filters: dict[str, Any], limit: int, q: str | None = None) -> list[str]:
    """Every id, page by page through the keyset cursor, as the list endpoint walks them."""
    out: list[str] = []
    before = None
    while True:
        hits = index.search("need", analyse_query(q) if q else None, filters, mode="all", limit=limit + 1, before_id=before, with_entries=True)
        out += [h.id for h in hits[:limit]]
        assert all(h.entry is not None and h.entry.id == h.id for h in hits)
        if len(hits) <= limit:
            return out
        before = out[-1]


@pytest.mark.parametrize("limit", [1, 7, 21, 100])
def test_newest_first_pages_are_the_ids_in_descending_order(limit: int) -> None:
    rng = random.Random(limit)
    docs = [item(i, rng) for i in object_ids(rng)]
    index = WordIndex(None)
    index.apply(docs, None)
    for filters, q in (({}, None), ({"sectors": "agriculture"}, None), ({"status": {"$in": ["open"]}, "sdgs": "7"}, None), ({"sectors": "energy"}, "solar")):
        want = sorted((d["_id"] for d in docs if all(_holds(d, k, v) for k, v in filters.items()) and (q is None or q in d["title"])), reverse=True)
        assert pages(index, filters, limit, q) == want


def test_a_page_inside_a_group_larger_than_the_fetch_is_read_by_the_low_half() -> None:
    """One process writing 500 items in one second (an import): every id shares one high half, so a
    newest-first page must rank that whole group by the low half, past what the first search fetched;
    the statuses as a union of terms and as exclusions select the same items as the store would."""
    rng = random.Random(11)
    process = rng.randbytes(5).hex()
    ids = [f"{1_764_000_000:08x}{process}{n:06x}" for n in rng.sample(range(1 << 20), 500)]
    ids += [f"{1_764_000_001:08x}{process}{n:06x}" for n in range(30)]  # a newer second, fewer than a page's fetch
    docs = [item(i, rng) for i in ids]
    index = WordIndex(None)
    index.apply(docs, None)
    open_ones = sorted((d["_id"] for d in docs if d["status"] == "open"), reverse=True)
    for filters in ({"status": {"$in": ["open", "matched", "closed"]}}, {"status": {"$nin": ["draft", "withdrawn"]}}, {"status": {"$ne": "withdrawn"}}):
        for limit in (21, 100):
            assert pages(index, filters, limit) == open_ones


def test_an_id_that_is_not_an_object_id_is_ordered_by_its_text_as_before() -> None:
    rng = random.Random(3)
    docs = [item(i, rng) for i in object_ids(rng)[:50]] + [item("zz-imported-1", rng), item("00-imported-2", rng)]
    index = WordIndex(None)
    index.apply(docs, None)
    hits = index.search("need", None, {}, mode="all", limit=len(docs))
    assert [h.id for h in hits] == sorted((d["_id"] for d in docs), reverse=True)


def _holds(doc: dict[str, Any], name: str, cond: Any) -> bool:
    values = [str(v) for v in doc[name]] if isinstance(doc[name], list) else [str(doc[name])]
    wanted = cond["$in"] if isinstance(cond, dict) else [cond]
    return any(str(w) in values for w in wanted)
