"""The matcher's pure core: an index of every item, and the exact top-K lists of the items a worker owns.

Every worker holds the whole index (all needs and offers, fed by every worker's writes), but writes
only the lists of the items it owns (the items on its partitions). When an item Y changes, the lists
it can affect are: Y's own list, the lists that hold Y (it may fall out), and the lists Y now enters
(its score beats their worst entry). `ListBook.affected` finds those among the owned lists and
`ListBook.top_k` recomputes a list from scratch, so a list is always the exact top-K of the index,
whatever order the events came in. No I/O, no clock except `now` for expiry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from services.matcher.scoring import CandidateSet, LanguageCentroids, MatchItem, Prepared, Rules, prepare, score_against

Key = tuple[str, str]  # (kind, id)


def other(kind: str) -> str:
    return "offer" if kind == "need" else "need"


def to_match_item(doc: dict[str, Any]) -> MatchItem:
    return MatchItem.model_validate({**doc, "id": doc.get("_id", doc.get("id"))})


@dataclass(frozen=True)
class Entry:
    """One pair in a list: what a proposal says about it. A change of any field is a new proposal."""

    score: float
    need_revision: int
    offer_revision: int


@dataclass
class ListState:
    version: int = 0
    entries: dict[str, Entry] = field(default_factory=dict)
    stamp: str = ""  # rules and centring versions the entries were scored with


def rank_key(score: float, item_id: str) -> tuple[float, str]:
    """Higher score first, ties broken by id: the order of the oracle."""
    return (-score, item_id)


def is_usable(doc: dict[str, Any] | None, now_ts: float) -> bool:
    if doc is None or doc.get("status") != "open":
        return False
    exp = doc.get("expires_at")
    return exp is None or _ts(exp) > now_ts


def _ts(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


class ItemIndex:
    """Every item the matcher knows, newest revision only; open items of each kind stacked into one
    CandidateSet (contiguous float32 vectors), rebuilt lazily after a change."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.docs: dict[str, dict[str, dict[str, Any]]] = {"need": {}, "offer": {}}
        self._prepared: dict[Key, tuple[int, Prepared]] = {}
        self._sets: dict[str, tuple[list[str], CandidateSet] | None] = {"need": None, "offer": None}
        self._vectors: dict[str, tuple[list[str], np.ndarray] | None] = {"need": None, "offer": None}

    def get(self, kind: str, item_id: str) -> dict[str, Any] | None:
        return self.docs[kind].get(item_id)

    def put(self, doc: dict[str, Any]) -> bool:
        """Keep `doc` if it is newer than what is held (a withdrawal is a newer revision)."""
        kind, item_id = doc["kind"], doc["_id"]
        held = self.docs[kind].get(item_id)
        if held is not None and held["revision"] >= doc["revision"]:
            return False
        if doc.get("status") == "withdrawn" and "title" not in doc and held is not None:
            doc = {**held, "status": "withdrawn", "revision": doc["revision"]}
        self.docs[kind][item_id] = doc
        self._prepared.pop((kind, item_id), None)
        self._sets[kind] = None
        self._vectors[kind] = None
        return True

    def vectors(self, kind: str) -> tuple[list[str], np.ndarray]:
        """Ids and float32 unit vectors (rows aligned) of the open items of `kind` that have one: what a
        search by meaning ranks. Built once per change of that kind."""
        cached = self._vectors[kind]
        if cached is None:
            ids = sorted(i for i, d in self.docs[kind].items() if d.get("status") == "open" and d.get("embedding") is not None)
            rows = [np.asarray(self.docs[kind][i]["embedding"], dtype=np.float32) for i in ids]
            cached = (ids, np.stack(rows) if rows else np.zeros((0, 384), dtype=np.float32))
            self._vectors[kind] = cached
        return cached

    def prepared(self, kind: str, item_id: str) -> Prepared:
        doc = self.docs[kind][item_id]
        held = self._prepared.get((kind, item_id))
        if held is None or held[0] != doc["revision"]:
            # the vector stays one float32 array (no Python list of floats inside the MatchItem)
            vector = doc.get("embedding")
            prepared = prepare(to_match_item({**doc, "embedding": None}), self.rules)
            if vector is not None:
                prepared = replace(prepared, vector=np.asarray(vector, dtype=np.float32))
            held = (doc["revision"], prepared)
            self._prepared[(kind, item_id)] = held
        return held[1]

    def open_set(self, kind: str) -> tuple[list[str], CandidateSet]:
        cached = self._sets[kind]
        if cached is None:
            ids = sorted(i for i, d in self.docs[kind].items() if d.get("status") == "open")
            cached = (ids, CandidateSet.build([self.prepared(kind, i) for i in ids]))
            self._sets[kind] = cached
        return cached

    def expiring(self, now_ts: float) -> list[Key]:
        """Open items whose expiry has passed (their lists and the lists holding them must go)."""
        return [(k, i) for k in ("need", "offer") for i, d in self.docs[k].items()
                if d.get("status") == "open" and d.get("expires_at") is not None and _ts(d["expires_at"]) <= now_ts]


class ListBook:
    """The owned items' top-K lists as last written, and how to recompute them."""

    def __init__(self, index: ItemIndex, rules: Rules, centroids: LanguageCentroids, owns: Callable[[str, str], bool]) -> None:
        self.index = index
        self.rules = rules
        self.centroids = centroids
        self.owns = owns
        self.lists: dict[Key, ListState] = {}
        self._holders: dict[Key, set[Key]] = {}  # (kind, id) → owned lists that hold it

    def set_list(self, key: Key, state: ListState) -> None:
        old = self.lists.get(key)
        for oid in (old.entries if old else {}):
            self._holders.get((other(key[0]), oid), set()).discard(key)
        self.lists[key] = state
        for oid in state.entries:
            self._holders.setdefault((other(key[0]), oid), set()).add(key)

    def forget(self, keys: list[Key]) -> None:
        for key in keys:
            self.set_list(key, ListState())
            del self.lists[key]

    def _scores(self, kind: str, item_id: str, now: datetime) -> tuple[list[str], np.ndarray]:
        """Rounded scores of the item against every open item of the other kind; -1 where excluded
        or not above min_score."""
        ids, cset = self.index.open_set(other(kind))
        if not ids:
            return ids, np.zeros(0, dtype=np.float64)
        batch = score_against(self.index.prepared(kind, item_id), cset, self.rules, self.centroids, now)
        scores = np.round(batch.total.astype(np.float64), 4)
        scores[batch.excluded | (scores <= self.rules.min_score)] = -1.0
        return ids, scores

    def top_k(self, key: Key, now: datetime | None = None) -> dict[str, Entry]:
        """The exact list of one item: its best `top_k` items of the other kind, ties by id."""
        now = now or datetime.now(UTC)
        kind, item_id = key
        if not is_usable(self.index.get(kind, item_id), now.timestamp()):
            return {}
        ids, scores = self._scores(kind, item_id, now)
        passing = np.flatnonzero(scores >= 0)
        ranked = sorted(passing, key=lambda j: rank_key(float(scores[j]), ids[j]))[: self.rules.top_k]
        mine = self.index.get(kind, item_id)["revision"]  # type: ignore[index]
        out: dict[str, Entry] = {}
        for j in ranked:
            theirs = self.index.get(other(kind), ids[j])["revision"]  # type: ignore[index]
            need_rev, offer_rev = (mine, theirs) if kind == "need" else (theirs, mine)
            out[ids[j]] = Entry(float(scores[j]), need_rev, offer_rev)
        return out

    def affected(self, key: Key, now: datetime | None = None) -> set[Key]:
        """Owned lists a change of `key` can alter: its own, those holding it, those it now enters."""
        now = now or datetime.now(UTC)
        kind, item_id = key
        out: set[Key] = set(self._holders.get(key, set()))
        if self.owns(kind, item_id):
            out.add(key)
        if not is_usable(self.index.get(kind, item_id), now.timestamp()):
            return out
        ids, scores = self._scores(kind, item_id, now)
        for j in np.flatnonzero(scores >= 0):
            target = (other(kind), ids[j])
            if target in out or not self.owns(*target):
                continue
            state = self.lists.get(target)
            if state is None or len(state.entries) < self.rules.top_k:
                out.add(target)
                continue
            worst = max(rank_key(e.score, oid) for oid, e in state.entries.items())
            if rank_key(float(scores[j]), item_id) < worst:
                out.add(target)
        return out


def oracle(docs: list[dict[str, Any]], rules: Rules, centroids: LanguageCentroids, now: datetime | None = None) -> set[tuple[str, str]]:
    """The proposed set the stream must converge to: the union of every usable item's top-K."""
    index = ItemIndex(rules)
    for doc in docs:
        index.put(doc)
    book = ListBook(index, rules, centroids, owns=lambda *_: True)
    pairs: set[tuple[str, str]] = set()
    for kind in ("need", "offer"):
        for item_id in list(index.docs[kind]):
            for oid in book.top_k((kind, item_id), now):
                pairs.add((item_id, oid) if kind == "need" else (oid, item_id))
    return pairs
