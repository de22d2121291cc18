"""The matcher's pure core: an index of every item, and the exact top-K lists of the items a worker owns.

Every worker holds the whole index (all needs and offers, fed by every worker's writes), but writes
only the lists of the items it owns (the items on its partitions). When an item Y changes, the lists
it can affect are: Y's own list, the lists that hold Y (it may fall out), and the lists Y now enters
(its score beats their worst entry). `ListBook.affected` finds those among the owned lists, scoring
the changed item against its candidates once; `ListBook.updated` then derives each affected list from
the list as it was and those fresh scores, falling back to `ListBook.top_k` (a recomputation from
scratch) only when the old list cannot say what fills a freed slot. Either way a list is the top-K of
the index, whatever order the events came in: exactly while a kind has fewer than `exact_below` open
items, else among the item's ANN neighbours rescored exactly (`candidates.py`; recall measured, not
assumed). No I/O, no clock except `now` for expiry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from services.matcher.candidates import COSINE_MARGIN, CandidateConfig, KindTable, cosine_floor, score_bound
from services.matcher.scoring import LanguageCentroids, MatchItem, Prepared, Rules, TextWhere, prepare, score_against

Key = tuple[str, str]  # (kind, id)
FloorOf = Callable[[list[str], np.ndarray], np.ndarray]  # (candidate ids, rows) → the score each row must reach to matter


def other(kind: str) -> str:
    return "offer" if kind == "need" else "need"


_ALL_FIELDS = frozenset(MatchItem.model_fields)


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

    def worst(self) -> tuple[float, str]:
        """The rank key of the last entry (entries are not mutated after a state is made: cached)."""
        cached: tuple[float, str] | None = self.__dict__.get("_worst")
        if cached is None:
            cached = self.__dict__["_worst"] = max(rank_key(e.score, oid) for oid, e in self.entries.items())
        return cached


def rank_key(score: float, item_id: str) -> tuple[float, str]:
    """Higher score first, ties broken by id: the order of the oracle."""
    return (-score, item_id)


@dataclass(frozen=True)
class Pool:
    """What a worker knows of one owned list beyond what it sent: the best pairs down to `bound`
    (the top_k entries and up to `reserve` more), so that a member leaving can be replaced from the
    pool instead of by a recomputation. Every passing item ranking at least as well as `bound`
    (a `rank_key`) is in `scores`; `bound` None: every passing candidate is."""

    scores: dict[str, float]
    bound: tuple[float, str] | None

    @classmethod
    def of(cls, state: ListState, top_k: int) -> Pool:
        """The pool a list's sent state alone implies (a list taken over, or written by another path)."""
        return cls({oid: e.score for oid, e in state.entries.items()}, state.worst() if len(state.entries) >= top_k else None)


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
    """Every item the matcher knows, newest revision only. The open ones of each kind are also rows of
    a `KindTable` (contiguous float32 vectors and feature columns, an ANN index over them), updated
    in place on every put, so a change costs one row write, not a rebuild."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.docs: dict[str, dict[str, dict[str, Any]]] = {"need": {}, "offer": {}}
        self.tables: dict[str, KindTable] = {"need": KindTable(), "offer": KindTable()}

    def get(self, kind: str, item_id: str) -> dict[str, Any] | None:
        """The item's newest revision; an open item's vector is not in it (see `embedding`)."""
        return self.docs[kind].get(item_id)

    def embedding(self, kind: str, item_id: str) -> np.ndarray | None:
        """The item's float32 vector: an open item's table row (a copy), else the document's."""
        table = self.tables[kind]
        slot = table.slot_of.get(item_id)
        if slot is not None:
            return table.vectors[slot].copy() if table.has_vector[slot] else None
        doc = self.docs[kind].get(item_id)
        return None if doc is None else doc.get("embedding")

    def put(self, doc: dict[str, Any]) -> bool:
        """Keep `doc` if it is newer than what is held (a withdrawal is a newer revision). An open
        item's vector is kept once, in its table row, not also in the document (1.5 KB an item)."""
        kind, item_id = doc["kind"], doc["_id"]
        held = self.docs[kind].get(item_id)
        if held is not None and held["revision"] >= doc["revision"]:
            return False
        if doc.get("status") == "withdrawn" and "title" not in doc and held is not None:
            doc = {**held, "embedding": self.embedding(kind, item_id), "status": "withdrawn", "revision": doc["revision"]}
        if doc.get("status") == "open":
            prepared = self._prepare(doc)
            self.tables[kind].put(item_id, prepared)
            # the document's lists that equal the prepared item's are that same list object, not a
            # second copy (read-only on both sides; ~0.4 KB an item)
            item = prepared.item.__dict__
            doc = {k: (item[k] if isinstance(v, list) and item.get(k) == v else v) for k, v in doc.items() if k != "embedding"}
        else:
            self.tables[kind].drop(item_id)
        self.docs[kind][item_id] = doc
        return True

    def _prepare(self, doc: dict[str, Any]) -> Prepared:
        # the vector stays one float32 array (no Python list of floats inside the MatchItem)
        vector = doc.get("embedding")
        item = to_match_item({**doc, "embedding": None})
        # which fields the document set is never asked of an indexed item: one shared record of it
        # instead of a set per item (~0.7 KB each, 70 MB at 100k items)
        object.__setattr__(item, "__pydantic_fields_set__", _ALL_FIELDS)
        prepared = prepare(item, self.rules)
        if vector is not None:
            prepared = replace(prepared, vector=np.asarray(vector, dtype=np.float32))
        return prepared

    def prepared(self, kind: str, item_id: str) -> Prepared:
        table = self.tables[kind]
        slot = table.slot_of.get(item_id)
        if slot is not None:
            prepared: Prepared = table.items[slot]
            return prepared
        return self._prepare(self.docs[kind][item_id])  # not open: prepared on demand (rare)

    def open_count(self, kind: str) -> int:
        return len(self.tables[kind])

    def vectors(self, kind: str) -> tuple[list[str], np.ndarray]:
        """Ids and float32 vectors (rows aligned) of the open items of `kind` that have an embedding."""
        return self.tables[kind].open_vectors()

    def search_view(self, kind: str) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
        """`vectors` with the rows' filter columns (`KindTable.open_view`)."""
        return self.tables[kind].open_view()

    def version(self, kind: str) -> int:
        """Moves whenever an open item of `kind` is written or dropped."""
        return self.tables[kind].version

    def candidate_rows(self, kind: str, query: Prepared, centroids: LanguageCentroids, count: int | None,
                       scan_below: int = 0) -> np.ndarray:
        """Slots of the open items of `kind` to score `query` against: all of them (`count` None: exact),
        else its `count` nearest neighbours by centred cosine (found by a scan below `scan_below` open items)."""
        table = self.tables[kind]
        rows: np.ndarray = table.rows() if count is None or count >= len(table) else table.neighbours(query, centroids, count, scan_below)
        return rows

    def expiring(self, now_ts: float) -> list[Key]:
        """Open items whose expiry has passed (their lists and the lists holding them must go)."""
        return [(k, i) for k in ("need", "offer") for i, d in self.docs[k].items()
                if d.get("status") == "open" and d.get("expires_at") is not None and _ts(d["expires_at"]) <= now_ts]


class ListBook:
    """The owned items' top-K lists as last written, and how to recompute them."""

    def __init__(self, index: ItemIndex, rules: Rules, centroids: LanguageCentroids, owns: Callable[[str, str], bool],
                 config: CandidateConfig | None = None) -> None:
        self.index = index
        self.config = config or CandidateConfig()
        self.rules = rules
        self.centroids = centroids
        self.owns = owns
        self.lists: dict[Key, ListState] = {}
        self._pools: dict[Key, Pool] = {}  # owned list → what is known of it (see Pool)
        self._holders: dict[Key, set[Key]] = {}  # (kind, id) → owned lists whose pool holds it
        self.keep = rules.top_k + self.config.reserve  # pairs a pool keeps
        # scores of the items changed in the current settle against their candidates, from `affected`
        # (ids, rounded scores, -1 where failing): reused by their own lists and by `updated`
        self._fresh: dict[Key, tuple[dict[str, int], list[str], np.ndarray, float]] = {}
        self.recomputed = self.derived = 0  # how lists were settled (the bench and tests read them)

    def forget_scores(self) -> None:
        """Drop the changed items' scores: they are valid only for the index state they were taken in."""
        self._fresh.clear()
        for table in self.index.tables.values():
            table.forget_scans()

    def prefetch(self, keys: list[Key], now: datetime | None = None) -> None:
        """Find the candidates of all the changed items `keys` together, before `affected` asks for
        each: the items whose candidates come from a scan are scanned in batches (one matrix
        product for up to 32 of them, `KindTable.prefetch_scans`). Changes nothing else."""
        now_ts = (now or datetime.now(UTC)).timestamp()
        queries: dict[str, list[Prepared]] = {}
        for kind, item_id in keys:
            them = other(kind)
            exact = self.index.open_count(them) < self.config.exact_below
            if exact or not self.index.tables[them].scans(self.config.scan_below) or not is_usable(self.index.get(kind, item_id), now_ts):
                continue
            queries.setdefault(them, []).append(self.index.prepared(kind, item_id))
        for them, batch in queries.items():
            if len(batch) > 1:
                self.index.tables[them].prefetch_scans(batch, self.centroids)

    def set_list(self, key: Key, state: ListState) -> None:
        """The list as sent. Its pool is kept when it leads with exactly these entries (the pool this
        book derived the state from), else it is what the state alone implies."""
        self.lists[key] = state
        pool = self._pools.get(key)
        if pool is None or self._head(pool) != set(state.entries):
            self._set_pool(key, Pool.of(state, self.rules.top_k))

    def _head(self, pool: Pool) -> set[str]:
        return set(sorted(pool.scores, key=lambda oid: rank_key(pool.scores[oid], oid))[: self.rules.top_k])

    def _set_pool(self, key: Key, pool: Pool | None) -> None:
        """Set (None: drop) an owned list's pool; its table row learns the score an item needs to enter it."""
        them = other(key[0])
        table = self.index.tables[key[0]]
        slot = table.slot_of.get(key[1])
        if slot is not None:
            table.entry_floor[slot] = np.inf if pool is None else (-pool.bound[0] if pool.bound is not None else self.rules.min_score)
        old = self._pools.pop(key, None)
        for oid in (old.scores if old else {}):
            self._holders.get((them, oid), set()).discard(key)
        if pool is not None:
            self._pools[key] = pool
            for oid in pool.scores:
                self._holders.setdefault((them, oid), set()).add(key)

    def forget(self, keys: list[Key]) -> None:
        for key in keys:
            self._set_pool(key, None)
            self.lists.pop(key, None)

    def _scores(self, kind: str, item_id: str, now: datetime, floor_of: FloorOf | None = None,
                entering: bool = False) -> tuple[list[str], np.ndarray, float]:
        """Rounded scores of the item against its candidates of the other kind; -1 where excluded, not
        above min_score, or unable to matter. Candidates are every open item below `exact_below`, else the
        item's nearest neighbours, more of them while an item beyond could still enter the top_k
        (`score_bound`): from a scan, in one step, every item near enough to reach the K-th score
        (`cosine_floor`); from the HNSW indexes, ×4 at a time. Candidates scored once keep their scores.

        A score matters if it can be among the item's own top_k, or reach the floor `floor_of` gives a
        candidate (what it takes to enter or stay in that candidate's list). Only those pairs are
        compared by wording (see `text_where`): the others are known to fall short from their bounds.

        `entering` (a changed item, `affected`): from a scan, the candidates also include every item
        whose list here the changed item may enter: near enough that the pair's bound reaches what
        that list asks (`KindTable.entry_floor`). Otherwise an owned list farther than the changed
        item's own candidates would never be offered it (the HNSW path still has that limit).

        Also returns the score above which every passing item is among the candidates: -inf when
        all were scored, else the bound beyond the farthest candidate."""
        them = other(kind)
        n = self.index.open_count(them)
        count = None if n < self.config.exact_below else self.config.candidates
        query = self.index.prepared(kind, item_id)
        table = self.index.tables[them]
        ids: list[str] = []
        parts: list[np.ndarray] = []
        farthest = np.inf  # the lowest centred cosine among the scored candidates

        def score(rows: np.ndarray) -> None:
            nonlocal farthest
            found = table.ids[rows].tolist()
            if ids:  # only the candidates not scored yet
                seen = set(ids)
                added = [j for j, oid in enumerate(found) if oid not in seen]
                rows, found = rows[added], [found[j] for j in added]
            if not found:
                return
            batch = score_against(query, table.take(rows), self.rules, self.centroids, now, self._text_where(found, floor_of))
            scores = np.round(batch.total.astype(np.float64), 4)
            unresolved = ~batch.resolved if batch.resolved is not None else False
            scores[batch.excluded | unresolved | (scores <= self.rules.min_score)] = -1.0
            ids.extend(found)
            parts.append(scores)
            farthest = min(farthest, float(batch.cosine.min()))

        def kth() -> float:
            scores = np.concatenate(parts) if parts else np.zeros(0)
            passing = np.sort(scores[scores >= 0])[::-1]
            return float(passing[self.rules.top_k - 1]) if len(passing) >= self.rules.top_k else self.rules.min_score

        def result(beyond: float) -> tuple[list[str], np.ndarray, float]:
            return ids, (np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)), beyond

        score(self.index.candidate_rows(them, query, self.centroids, count, self.config.scan_below))
        if count is None or count >= n or not ids:
            return result(-np.inf)
        limit = count * 4 ** self.config.widen
        if table.scans(self.config.scan_below):
            beyond, reach = score_bound(self.rules, farthest), kth()
            if beyond < reach and not entering:
                return result(beyond)
            # every item whose cosine still lets it reach the K-th score (at a tie it may win on its id)
            # and, for a changed item, every one whose list here it may enter (their `entry_floor`)
            floor = cosine_floor(self.rules, reach) - COSINE_MARGIN
            rows, complete = table.scan_from(query, self.centroids, floor, limit, self.rules if entering else None)
            score(rows)
            beyond = score_bound(self.rules, farthest)
            return result(min(beyond, score_bound(self.rules, floor)) if complete else beyond)  # else as the widening's last step
        for attempt in range(self.config.widen + 1):
            beyond = score_bound(self.rules, farthest)
            if beyond < kth() or attempt == self.config.widen:  # at a tie, an item beyond may win on its id
                return result(beyond)
            count *= 4
            score(self.index.candidate_rows(them, query, self.centroids, count, self.config.scan_below))
        raise AssertionError("unreachable")

    def _text_where(self, ids: list[str], floor_of: FloorOf | None) -> TextWhere:
        """Which pairs `_scores` needs exactly, from their bounds: those that could pass min_score and
        either rank among the pool's best (above its `keep`-th best lower bound) or reach their floor.
        A margin of one rounding step keeps the comparison safe after scores are rounded to 4 places."""
        top_k, min_score, margin = self.keep, self.rules.min_score, 1e-4  # the pool's pairs, not only the sent ones

        def where(lower: np.ndarray, upper: np.ndarray, excluded: np.ndarray) -> np.ndarray:
            live = ~excluded & (upper > min_score - margin)
            lows = lower[live]
            threshold = max(float(np.partition(lows, -top_k)[-top_k]), min_score) if len(lows) > top_k else min_score
            need = live & (upper >= threshold - margin)
            if floor_of is not None:
                rest = np.flatnonzero(live & ~need)
                if len(rest):
                    need[rest] = upper[rest] >= floor_of(ids, rest) - margin
            return need

        return where

    def top_k(self, key: Key, now: datetime | None = None) -> dict[str, Entry]:
        """The exact list of one item: its best `top_k` items of the other kind, ties by id."""
        now = now or datetime.now(UTC)
        kind, item_id = key
        if not is_usable(self.index.get(kind, item_id), now.timestamp()):
            return {}
        self.recomputed += 1
        fresh = self._fresh.get(key)
        ids, scores, beyond = (fresh[1], fresh[2], fresh[3]) if fresh is not None else self._scores(kind, item_id, now)
        passing = np.flatnonzero(scores >= 0)
        ranked = sorted(passing, key=lambda j: rank_key(float(scores[j]), ids[j]))
        kept = ranked[: self.keep]
        known = [rank_key(float(scores[j]), ids[j]) for j in kept]
        # the pool is known down to its last pair if more pass, and (ANN) down to what no item beyond
        # the candidates can reach; never above the K-th pair, which is what is sent either way
        bound = known[-1] if len(ranked) > self.keep else None
        if beyond > -np.inf and known:
            certified = max((-(beyond + 1e-4), ""), known[min(self.rules.top_k, len(known)) - 1])  # + a rounding step
            bound = certified if bound is None else min(bound, certified)
        if self.owns(*key):  # only owned lists keep a pool
            self._set_pool(key, Pool({ids[j]: float(scores[j]) for j in kept}, bound))
        return {ids[j]: self._entry(key, ids[j], float(scores[j])) for j in kept[: self.rules.top_k]}

    def _entry(self, key: Key, oid: str, score: float) -> Entry:
        kind, item_id = key
        mine = self.index.get(kind, item_id)["revision"]  # type: ignore[index]
        theirs = self.index.get(other(kind), oid)["revision"]  # type: ignore[index]
        return Entry(score, mine, theirs) if kind == "need" else Entry(score, theirs, mine)

    def updated(self, key: Key, changed: list[Key], now: datetime | None = None) -> dict[str, Entry]:
        """`key`'s list after the items `changed` changed (the index already holds them, and `affected`
        scored each against its candidates). Derived from the list's pool when that is exact:

        - every other item keeps its score with `key` (it did not change), so only the changed items
          move: each leaves the pool and re-enters at its fresh score if it passes;
        - every passing item ranking at least as well as the pool's bound was in the pool, so after the
          moves the pool's entries down to that bound are still exactly the best ones, in order. When
          at least `top_k` of them remain, the list is their head: a member that left is replaced
          from the reserve. When the pool held every passing candidate, it is exact as it is.

        Otherwise (fewer than `top_k` known) only a recomputation can say what fills the slot: `top_k`.
        So is the item's own change."""
        now = now or datetime.now(UTC)
        kind, item_id = key
        state = self.lists.get(key)
        pool = self._pools.get(key)
        if state is None or pool is None or key in changed:
            return self.top_k(key, now)
        if not is_usable(self.index.get(kind, item_id), now.timestamp()):
            self._set_pool(key, Pool({}, None))
            return {}
        them = other(kind)
        scores = dict(pool.scores)
        moved: set[str] = set()
        for ck, cid in changed:
            if ck != them:
                continue
            was_member = scores.pop(cid, None) is not None
            score = self._pair_score((ck, cid), key, now, was_member)
            if score is not None and score >= 0:
                scores[cid] = score
                moved.add(cid)
        ranked = sorted(scores, key=lambda oid: rank_key(scores[oid], oid))
        bound = pool.bound
        if bound is not None:
            ranked = [oid for oid in ranked if rank_key(scores[oid], oid) <= bound]  # what is still known
            if len(ranked) < self.rules.top_k:
                return self.top_k(key, now)
        if len(ranked) > self.keep:
            cut = ranked[self.keep - 1]
            bound = rank_key(scores[cut], cut) if bound is None else min(bound, rank_key(scores[cut], cut))
            ranked = ranked[: self.keep]
        self._set_pool(key, Pool({oid: scores[oid] for oid in ranked}, bound))
        self.derived += 1
        head = ranked[: self.rules.top_k]
        return {oid: (state.entries[oid] if oid in state.entries and oid not in moved else self._entry(key, oid, scores[oid]))
                for oid in head}

    def _pair_score(self, changed: Key, key: Key, now: datetime, was_member: bool) -> float | None:
        """The changed item's fresh score with `key` (-1 failing), None when it cannot be in `key`'s list.
        From `affected`'s scores when `key` was among its candidates; scored alone if it was a member but
        is no longer a candidate; else it does not enter (as `affected` decided)."""
        fresh = self._fresh.get(changed)
        if fresh is None:  # not usable any more (withdrawn, expired) or never seen
            return None
        slot = fresh[0].get(key[1])
        if slot is not None:
            return float(fresh[2][slot])
        if not was_member:
            return None
        query = self.index.prepared(*changed)
        cset = self.index.tables[key[0]].take(np.asarray([self.index.tables[key[0]].slot_of[key[1]]]))
        batch = score_against(query, cset, self.rules, self.centroids, now)
        score = round(float(batch.total[0]), 4)
        return -1.0 if bool(batch.excluded[0]) or score <= self.rules.min_score else score

    def affected(self, key: Key, now: datetime | None = None) -> set[Key]:
        """Owned lists a change of `key` can alter: its own, those whose pool holds it, those it now enters."""
        now = now or datetime.now(UTC)
        kind, item_id = key
        out: set[Key] = set(self._holders.get(key, set()))
        if self.owns(kind, item_id):
            out.add(key)
        if not is_usable(self.index.get(kind, item_id), now.timestamp()):
            return out
        ids, scores, beyond = self._scores(kind, item_id, now, self._floors(kind, out), entering=True)
        self._fresh[key] = ({oid: j for j, oid in enumerate(ids)}, ids, scores, beyond)
        for j in np.flatnonzero(scores >= 0):
            target = (other(kind), ids[j])
            if target in out or not self.owns(*target):
                continue
            pool = self._pools.get(target)
            if pool is None or pool.bound is None or rank_key(float(scores[j]), item_id) <= pool.bound:
                out.add(target)
        return out


    def _floors(self, kind: str, holders: set[Key]) -> FloorOf:
        """For candidates of a changed item of `kind`: the lowest score at which its pair with each one
        can change that candidate's pool. A pool that holds the item needs its new score whatever it
        is; a complete one (or an owned list without a pool yet) any passing score; any other one a
        score reaching its bound; a list this worker does not own is not its business."""
        them, min_score = other(kind), self.rules.min_score

        def floor_of(ids: list[str], rows: np.ndarray) -> np.ndarray:
            out = np.full(len(rows), np.inf)
            for pos, j in enumerate(rows):
                target = (them, ids[j])
                pool = self._pools.get(target)
                if target in holders:
                    out[pos] = -np.inf
                elif pool is not None and pool.bound is not None:
                    out[pos] = -pool.bound[0]
                elif pool is not None or self.owns(*target):
                    out[pos] = min_score
            return out

        return floor_of


EXACT = CandidateConfig(exact_below=2**62)


def oracle(docs: list[dict[str, Any]], rules: Rules, centroids: LanguageCentroids, now: datetime | None = None,
           config: CandidateConfig = EXACT) -> set[tuple[str, str]]:
    """The proposed set the stream must converge to: the union of every usable item's top-K (exact
    candidate generation unless another `config` is given, e.g. to measure the ANN path's recall)."""
    index = ItemIndex(rules)
    for doc in docs:
        index.put(doc)
    book = ListBook(index, rules, centroids, owns=lambda *_: True, config=config)
    pairs: set[tuple[str, str]] = set()
    for kind in ("need", "offer"):
        for item_id in list(index.docs[kind]):
            for oid in book.top_k((kind, item_id), now):
                pairs.add((item_id, oid) if kind == "need" else (oid, item_id))
    return pairs
