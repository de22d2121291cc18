"""Where the candidates of a list come from: the open items of one kind in contiguous arrays, and an
ANN index over their language-centred vectors, blocked by working language. Pure: no I/O, no clock.

A `KindTable` keeps every open item of one kind in slots of preallocated arrays (float32 vectors and
the per-item columns `CandidateSet` needs), grown by doubling, so a change is an O(1) write of one
row, not a rebuild. A list is scored against a `take` of some rows: all of them while the kind is
small (exact, still vectorised), else the `candidates` nearest neighbours of the item in HNSW
indexes (usearch, int8) over the *centred* unit vectors — the vectors the semantic component compares
— one per working language (the scorer's hard language filter: neighbours it could never be matched
with would crowd out the ones it can), rescored exactly by the pure scorer. The index is rebuilt when the centring snapshot changes (a
different centring moves every vector) and updated row by row otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from usearch.index import Index

from services.matcher.scoring import CandidateSet, LanguageCentroids, Prepared, Rules

# HNSW parameters: 16 links per node, a wide construction (256), int8 unit vectors. Measured on the
# bench's 25k offers (bench/matcher_data.py: ~700 near copies of each text, the hard case for HNSW),
# recall of the cosine top 20 among 200 neighbours: construction 128 → 0.87, 256 → 0.94, 512 → 0.99
# (4× the build time); int8 equals half precision there and searches ~2× faster in half the memory.
# Scores are computed again exactly from the float32 rows anyway.
CONNECTIVITY = 16
EXPANSION_ADD = 256
MIN_EXPANSION_SEARCH = 64
# A search explores 4× the neighbours it returns: list recall at 50k synthetic items 0.982 with 2×,
# 0.997 with 4×, for a list ~60% slower (measured; the missed pairs were near items HNSW left out)
SEARCH_EXPANSION_FACTOR = 4
ANN_BUILD_CHUNK = 8192  # rows centred and added at a time when an index is built in one batch
SCAN_BATCH = 32  # queries scanned by one matrix product (`KindTable._scan_cosines`)
SCAN_KEPT = 64  # scans a table keeps for the lists that will ask for them (a settle's batch)
PARALLEL_BUILD_FROM = 4096  # below this many rows a block is built on one thread: the same graph every time


ALL = "*all"  # every item: searched by an item that accepts interpretation (it may meet anyone)
INTERPRETING = "*interpreting"  # items that accept interpretation: anyone may meet them


def item_blocks(p: Prepared) -> tuple[str, ...]:
    """The ANN indexes an item is in: one per working language, plus the two above. Blocking follows
    the scorer's hard language filter (a common language, or either side accepts interpretation), so
    the neighbours of an item are items it may actually be matched with, not excluded ones."""
    return (*p.item.languages, ALL, *((INTERPRETING,) if p.item.accepts_interpretation else ()))


def query_blocks(p: Prepared) -> tuple[str, ...]:
    """The indexes searched for an item's candidates (merged by distance)."""
    return (ALL,) if p.item.accepts_interpretation else (*p.item.languages, INTERPRETING)


@dataclass(frozen=True)
class CandidateConfig:
    """How many neighbours are rescored per list (`SSMATCH_MATCHER_CANDIDATES`), and below how many
    open items of a kind every item is scored instead (`SSMATCH_MATCHER_EXACT_BELOW`; 0 forces the
    ANN path, a huge number forces exact mode). When an item farther than the neighbours could still
    beat the list's K-th pair (`score_bound`), the search widens (×4, at most `widen` times).
    `scan_below` (`SSMATCH_MATCHER_SCAN_BELOW`): below this many open items of a kind, the neighbours
    are found by a scan (`KindTable.scan`: one matrix-vector product, exact) instead of the HNSW indexes.
    `reserve`: how many pairs past the K-th each list keeps in memory, so that a member leaving is
    replaced from them instead of by a recomputation (see `ListBook.updated`)."""

    candidates: int = 200
    exact_below: int = 2000
    widen: int = 2
    reserve: int = 5
    scan_below: int = 150_000


def score_bound(rules: Rules, cosine: float) -> float:
    """The highest total any pair with this centred cosine can reach under `rules`: full credit on
    every component but the semantic one, code credit gated by the semantic agreement as the scorer
    gates it. An item outside the candidates is no nearer than the farthest candidate, so when this
    bound at the farthest candidate's cosine cannot beat the list's K-th score, widening is useless."""
    return float(score_bounds(rules, np.array([cosine]))[0])


def score_bounds(rules: Rules, cosines: np.ndarray) -> np.ndarray:
    """`score_bound` of many cosines at once."""
    weights = rules.weights.normalised()
    sem = rules.semantic
    semantic = np.clip((cosines - sem.floor) / (sem.ceiling - sem.floor), 0.0, 1.0)
    gate = np.minimum(1.0, semantic / rules.codes.semantic_gate) if rules.codes.semantic_gate > 0 else np.ones_like(semantic)
    codes = (weights["sectors"] + weights["modalities"] + weights["sdgs"]) * gate
    bounds: np.ndarray = np.minimum(1.0, weights["semantic"] * semantic + weights["text"] + codes + weights["geography"])
    return bounds


def cosine_floor(rules: Rules, score: float) -> float:
    """The lowest centred cosine at which `score_bound` reaches `score` (it never decreases with the
    cosine): an item less similar than this cannot reach `score`. 2.0 when no cosine can."""
    if score_bound(rules, 1.0) < score:
        return 2.0
    low, high = -1.0, 1.0
    if score_bound(rules, low) >= score:
        return low
    for _ in range(50):  # bisection to ~1e-15
        middle = (low + high) / 2
        if score_bound(rules, middle) >= score:
            high = middle
        else:
            low = middle
    return high


COSINE_MARGIN = 1e-3  # a scan's float32 cosines against the scorer's float64 ones (they differ by ~1e-6)


class KindTable:
    """The prepared open items of one kind, one slot each, in columns (see the module docstring)."""

    def __init__(self) -> None:
        # per slot, as object arrays: a take is one fancy index, not a Python loop over the rows
        self.ids = np.empty(0, dtype=object)  # str, None in a free slot
        self.items = np.empty(0, dtype=object)  # Prepared, None in a free slot
        self.texts = np.empty(0, dtype=object)  # the prepared (normalised) text compared by wording
        self.blocks: list[tuple[str, ...]] = []
        self._block_sets: dict[tuple[str, ...], tuple[str, ...]] = {}  # ANN blocks each slot is in (see item_blocks)
        self.slot_of: dict[str, int] = {}
        self._free: list[int] = []
        self.lang_codes: list[str | None] = []
        self._lang_pos: dict[str | None, int] = {}
        self.dims = 0
        self.capacity = 0
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.sq_norms = np.zeros(0, dtype=np.float64)  # float64: see _centred_cosines
        self.used = np.zeros(0, dtype=bool)
        self.has_vector = np.zeros(0, dtype=bool)
        self.lang_index = np.zeros(0, dtype=np.int64)
        self.sectors = np.zeros(0, dtype=np.int64)
        self.modalities = np.zeros(0, dtype=np.int64)
        self.sdgs = np.zeros(0, dtype=np.int64)
        self.languages = np.zeros(0, dtype=np.int64)
        self.expires = np.zeros(0, dtype=np.float64)
        self.geography = np.zeros(0, dtype=np.float32)
        self.orgs = np.zeros(0, dtype=object)
        self.countries = np.zeros(0, dtype=object)
        self.has_delivery = np.zeros(0, dtype=bool)
        self.interprets = np.zeros(0, dtype=bool)  # accepts interpretation: any item may meet it
        self.centred_norms = np.zeros(0, dtype=np.float32)  # |vector - its language's centroid|, under _scan_centroids
        # the score a pair needs to enter this row's list, as the worker's ListBook keeps it (inf: no list here)
        self.entry_floor = np.zeros(0, dtype=np.float64)
        self._scan_centroids: LanguageCentroids | None = None
        # scans already made (query, rows, cosines by id of the query), and the rows each set of languages
        # may meet (see _scan_cosines): both valid for one table version and centring (`_scan_stamp`)
        self._scan_memo: dict[int, tuple[Prepared, np.ndarray, np.ndarray]] = {}
        self._admitted: dict[int | None, np.ndarray] = {}
        self._scan_stamp: tuple[int, LanguageCentroids | None] = (-1, None)
        self._no_vector: set[int] = set()  # open items stored without a vector (not in the ANN index)
        self._ann: dict[str, Index] | None = None
        self._ann_centroids: LanguageCentroids | None = None
        self.version = 0  # bumped by every put and drop: a reader's snapshot is stale once it moved

    COLUMNS = ("ids", "items", "texts", "sq_norms", "used", "has_vector", "lang_index", "sectors", "modalities", "sdgs", "languages",
               "expires", "geography", "orgs", "countries", "has_delivery", "interprets", "centred_norms", "entry_floor")

    def __len__(self) -> int:
        return len(self.slot_of)

    def _grow(self) -> None:
        """Grow every column (and the vector matrix) by half: amortised O(1) per put, and at most a
        third of the rows idle (doubling left up to half of a 100k-item matrix unused)."""
        new = max(64, self.capacity * 3 // 2)
        for name in self.COLUMNS:
            old = getattr(self, name)
            col = np.empty(new, dtype=object) if old.dtype == object else np.zeros(new, dtype=old.dtype)
            col[: self.capacity] = old
            setattr(self, name, col)
        matrix = np.zeros((new, self.dims), dtype=np.float32)
        matrix[: self.capacity] = self.vectors
        self.vectors = matrix
        self.blocks += [()] * (new - self.capacity)
        self.capacity = new

    def _lang(self, code: str | None) -> int:
        if code not in self._lang_pos:
            self._lang_pos[code] = len(self.lang_codes)
            self.lang_codes.append(code)
        return self._lang_pos[code]

    def put(self, item_id: str, p: Prepared) -> int:
        """Write (or overwrite) the item's row; returns its slot."""
        self.version += 1
        vector = p.vector
        if vector is not None:
            if self.dims == 0:  # the first vector sizes the matrix
                self.dims = vector.shape[0]
                self.vectors = np.zeros((self.capacity, self.dims), dtype=np.float32)
            elif vector.shape[0] != self.dims:
                raise ValueError(f"item {item_id} has a {vector.shape[0]}-dimensional vector, the table holds {self.dims}")
        slot = self.slot_of.get(item_id)
        if slot is None:
            slot = self._free.pop() if self._free else len(self.slot_of)
            if slot >= self.capacity:
                self._grow()
            self.slot_of[item_id] = slot
            self.entry_floor[slot] = np.inf
        self.ids[slot] = item_id
        self.items[slot] = p
        self.texts[slot] = p.text
        self.used[slot] = True
        if vector is not None:
            self.vectors[slot] = vector
            stored = self.vectors[slot].astype(np.float64)  # as scored: the float32 row
            self.sq_norms[slot] = float(stored @ stored)
            self.has_vector[slot] = True
            self._no_vector.discard(slot)
        else:
            self.vectors[slot] = 0.0
            self.sq_norms[slot] = 0.0
            self.has_vector[slot] = False
            self._no_vector.add(slot)
        self.lang_index[slot] = self._lang(p.item.text_language)
        self.sectors[slot], self.modalities[slot], self.sdgs[slot], self.languages[slot] = p.sectors, p.modalities, p.sdgs, p.languages
        self.expires[slot] = p.expires_ts
        self.geography[slot] = p.geography
        self.orgs[slot] = p.item.organization_id
        self.countries[slot] = p.item.country
        self.has_delivery[slot] = bool(p.delivery)
        self.interprets[slot] = p.item.accepts_interpretation
        if self._scan_centroids is not None:
            self._centre_norms(np.array([slot]), self._scan_centroids)
        blocks = item_blocks(p)
        old_blocks, self.blocks[slot] = self.blocks[slot], self._block_sets.setdefault(blocks, blocks)  # shared tuples
        self._ann_put(slot, old_blocks)
        return slot

    def drop(self, item_id: str) -> None:
        """The item is no longer open: free its slot (reused by the next put)."""
        self.version += 1
        slot = self.slot_of.pop(item_id, None)
        if slot is None:
            return
        self.used[slot] = False
        self.has_vector[slot] = False
        self.entry_floor[slot] = np.inf
        self._no_vector.discard(slot)
        self.ids[slot] = None
        self.items[slot] = None
        self.texts[slot] = None
        self.orgs[slot] = None
        self.countries[slot] = None
        self._free.append(slot)
        if self._ann is not None:
            for block in self.blocks[slot]:
                if block in self._ann and self._ann[block].contains(slot):
                    self._ann[block].remove(slot)
        self.blocks[slot] = ()

    def rows(self) -> np.ndarray:
        """Slots of every open item, ascending."""
        return np.flatnonzero(self.used[: self.capacity])

    def take(self, rows: np.ndarray) -> CandidateSet:
        """The rows as a CandidateSet for the pure scorer: O(len(rows)), no Prepared restacked."""
        items = self.items[rows].tolist()
        with_vectors = len(rows) > 0 and bool(self.has_vector[rows].all())
        vectors = self.vectors[rows] if with_vectors else None
        return CandidateSet(
            items=items,
            texts=self.texts[rows].tolist(),
            vectors=vectors,
            sq_norms=self.sq_norms[rows] if with_vectors else None,
            lang_codes=list(self.lang_codes),
            lang_index=self.lang_index[rows],
            sectors=self.sectors[rows], modalities=self.modalities[rows], sdgs=self.sdgs[rows], languages=self.languages[rows],
            open=np.ones(len(rows), dtype=bool),
            expires=self.expires[rows],
            geography=self.geography[rows],
            orgs=self.orgs[rows],
            countries=self.countries[rows],
            has_delivery=self.has_delivery[rows],
        )

    # ---- approximate nearest neighbours ------------------------------------------------------------
    def _means(self, centroids: LanguageCentroids) -> np.ndarray:
        """The centroid of each language the table knows, rows in `lang_codes` order (a row's
        `lang_index` picks its own)."""
        return np.stack([centroids.centroid(code) for code in self.lang_codes]).astype(np.float32)

    @staticmethod
    def _centred_query(query: Prepared, centroids: LanguageCentroids) -> np.ndarray:
        """The query's unit vector after subtracting its language's centroid."""
        assert query.vector is not None
        q: np.ndarray = query.vector.astype(np.float32) - np.asarray(centroids.centroid(query.item.text_language), dtype=np.float32)
        q /= max(float(np.linalg.norm(q)), 1e-12)
        return q

    def _centred(self, vectors: np.ndarray, lang_index: np.ndarray, centroids: LanguageCentroids | None) -> np.ndarray:
        """Unit vectors after subtracting each row's language centroid: their dot product is the
        centred cosine the scorer's semantic component uses."""
        assert centroids is not None
        out = vectors - self._means(centroids)[lang_index]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        centred: np.ndarray = (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        return centred

    def _new_index(self) -> Index:
        return Index(ndim=self.dims, metric="cos", dtype="i8", connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
                     expansion_search=MIN_EXPANSION_SEARCH)

    def _ensure_ann(self, centroids: LanguageCentroids) -> dict[str, Index]:
        """The block indexes for this centring snapshot: built once over every open row, then kept up to date."""
        if self._ann is not None and self._ann_centroids is centroids:
            return self._ann
        rows = self.rows()
        rows = rows[self.has_vector[rows]]
        indexes: dict[str, Index] = {}
        for start in range(0, len(rows), ANN_BUILD_CHUNK):  # chunks: no second full copy of the vectors
            chunk = rows[start:start + ANN_BUILD_CHUNK]
            unit = self._centred(self.vectors[chunk], self.lang_index[chunk], centroids)
            members: dict[str, list[int]] = {}
            for pos, slot in enumerate(chunk):
                for block in self.blocks[slot]:
                    members.setdefault(block, []).append(pos)
            for block, positions in members.items():
                if block not in indexes:
                    indexes[block] = self._new_index()
                threads = 0 if len(positions) >= PARALLEL_BUILD_FROM else 1  # 0: every core
                indexes[block].add(chunk[positions].astype(np.uint64), unit[positions], threads=threads)
        self._ann, self._ann_centroids = indexes, centroids
        return indexes

    def _ann_put(self, slot: int, old_blocks: tuple[str, ...]) -> None:
        if self._ann is None:
            return
        for block in old_blocks:
            if block in self._ann and self._ann[block].contains(slot):
                self._ann[block].remove(slot)
        if not self.has_vector[slot]:
            return
        unit = self._centred(self.vectors[slot : slot + 1], self.lang_index[slot : slot + 1], self._ann_centroids)[0]
        for block in self.blocks[slot]:
            if block not in self._ann:
                self._ann[block] = self._new_index()
            self._ann[block].add(slot, unit)

    def neighbours(self, query: Prepared, centroids: LanguageCentroids, count: int, scan_below: int = 0) -> np.ndarray:
        """Slots of the `count` open items nearest to `query` by centred cosine among those the
        language filter lets it meet: exactly by a scan while the kind has fewer than `scan_below`
        open items, else approximately from the HNSW indexes."""
        if query.vector is None or self.dims == 0:
            return self.rows()
        if len(self) < scan_below:
            return self.scan(query, centroids, count)
        indexes = self._ensure_ann(centroids)
        q = self._centred_query(query, centroids)
        keys: list[np.ndarray] = []
        distances: list[np.ndarray] = []
        for block in query_blocks(query):
            index = indexes.get(block)
            if index is None or len(index) == 0:
                continue
            index.expansion_search = max(MIN_EXPANSION_SEARCH, SEARCH_EXPANSION_FACTOR * count)  # type: ignore[misc]  # settable; the stub says read-only
            found: Any = index.search(q, count)
            keys.append(np.asarray(found.keys, dtype=np.int64))
            distances.append(np.asarray(found.distances, dtype=np.float32))
        if keys:
            k, d = np.concatenate(keys), np.concatenate(distances)
            k = k[np.argsort(d, kind="stable")]
            _, first = np.unique(k, return_index=True)
            k = k[np.sort(first)][:count]
            k = k[(k >= 0) & (k < self.capacity)]
            found_rows: np.ndarray = k[self.used[k]]
        else:
            found_rows = np.zeros(0, dtype=np.int64)
        # items without a vector are not in the index: keep them candidates (the scorer says why they fail)
        if self._no_vector:
            with_unvectored: np.ndarray = np.concatenate([found_rows, np.fromiter(sorted(self._no_vector), dtype=np.int64)])
            return with_unvectored
        return found_rows

    # ---- exact neighbours by a scan -----------------------------------------------------------------
    def _centre_norms(self, slots: np.ndarray, centroids: LanguageCentroids) -> None:
        """`centred_norms` of these slots: |v - m|² = |v|² - 2 v·m + |m|², m the row's language centroid."""
        means = self._means(centroids)
        for start in range(0, len(slots), ANN_BUILD_CHUNK):  # chunks: no full copy of the means per row
            chunk = slots[start:start + ANN_BUILD_CHUNK]
            m = means[self.lang_index[chunk]]
            vm = np.einsum("ij,ij->i", self.vectors[chunk], m, dtype=np.float64)
            sq = self.sq_norms[chunk] - 2 * vm + np.einsum("ij,ij->i", m, m, dtype=np.float64)
            self.centred_norms[chunk] = np.sqrt(np.maximum(sq, 0.0))

    def _scan_cosines(self, queries: list[Prepared], centroids: LanguageCentroids) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query, the rows the language filter lets it meet and their centred cosines with it,
        from products of the whole (viewed, not copied) matrix with up to SCAN_BATCH centred queries at
        once: the matrix is read once a batch, not once a query (at 50,000 rows one query 1.2 ms, 32
        together 0.3 ms each, measured)."""
        if self._scan_centroids is not centroids:
            self._centre_norms(self._rows_with_vectors(), centroids)
            self._scan_centroids = centroids
        cap = self.capacity
        usable = self.used[:cap] & self.has_vector[:cap]
        norms = self.centred_norms[:cap]
        inverse = (1.0 / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        means = self._means(centroids)
        lang_index = self.lang_index[:cap]
        out: list[tuple[np.ndarray, np.ndarray]] = []
        # the rows each query may meet: one array for every query that accepts interpretation, one per
        # set of languages for the others (kept scans share them: ~0.4 MB each at 50,000 rows)
        self._valid_scans(centroids)
        admitted = self._admitted

        def rows_for(query: Prepared) -> np.ndarray:
            languages = None if query.item.accepts_interpretation else query.languages
            if languages not in admitted:
                allowed = usable if languages is None else usable & (((self.languages[:cap] & languages) != 0) | self.interprets[:cap])
                admitted[languages] = np.flatnonzero(allowed)
            return admitted[languages]

        for start in range(0, len(queries), SCAN_BATCH):
            batch = queries[start:start + SCAN_BATCH]
            q = np.stack([self._centred_query(query, centroids) for query in batch], axis=1)  # dims × b
            cosines = self.vectors[:cap] @ q  # cap × b
            cosines -= (means @ q)[lang_index]
            cosines *= inverse[:, None]
            for j, query in enumerate(batch):  # the scorer's hard language filter, as the blocks
                rows = rows_for(query)
                out.append((rows, cosines[rows, j]))
        return out

    def prefetch_scans(self, queries: list[Prepared], centroids: LanguageCentroids) -> None:
        """Scan for several queries at once (`_scan_cosines`) and keep the results for their `scan`s:
        what a settle does with the items of a batch before finding each one's candidates."""
        self._valid_scans(centroids)
        todo = list({id(q): q for q in queries if q.vector is not None and self._kept_scan(q) is None}.values())
        if self.dims == 0 or not todo:
            return
        for query, (rows, cosines) in zip(todo, self._scan_cosines(todo, centroids), strict=True):
            self._keep_scan(query, rows, cosines)

    def _kept_scan(self, query: Prepared) -> tuple[np.ndarray, np.ndarray] | None:
        memo = self._scan_memo.get(id(query))
        return (memo[1], memo[2]) if memo is not None and memo[0] is query else None

    def _keep_scan(self, query: Prepared, rows: np.ndarray, cosines: np.ndarray) -> None:
        """Keep a scan (the oldest kept one goes beyond SCAN_KEPT: ~0.2 MB each at 50,000 rows)."""
        self._scan_memo.pop(id(query), None)
        while len(self._scan_memo) >= SCAN_KEPT:
            del self._scan_memo[next(iter(self._scan_memo))]
        self._scan_memo[id(query)] = (query, rows, cosines)

    def _valid_scans(self, centroids: LanguageCentroids) -> None:
        """Forget what scans kept once a write or a new centring has made it stale."""
        if self._scan_stamp[0] != self.version or self._scan_stamp[1] is not centroids:
            self.forget_scans()
            self._scan_stamp = (self.version, centroids)

    def forget_scans(self) -> None:
        self._scan_memo.clear()
        self._admitted.clear()

    def scans(self, scan_below: int) -> bool:
        """Whether `neighbours` finds this table's rows by a scan (else by the HNSW indexes)."""
        return self.dims > 0 and len(self) < scan_below

    def scan_from(self, query: Prepared, centroids: LanguageCentroids, min_cosine: float, limit: int,
                  rules: Rules | None = None) -> tuple[np.ndarray, bool]:
        """Slots of the open items at a centred cosine of at least `min_cosine` from `query` (the
        language filter applied) and, given `rules`, of those near enough that their pair with
        `query` may reach their `entry_floor`; nearest first, at most `limit` of them, and, as `scan`
        does, the items without a vector. Also whether that is all of them (not cut at `limit`)."""
        if query.vector is None or self.dims == 0:
            return self.rows(), True
        rows, cosines = self._cosines(query, centroids)
        needed = cosines >= min_cosine
        if rules is not None:
            needed |= score_bounds(rules, cosines + COSINE_MARGIN) >= self.entry_floor[rows]
        count = int(np.count_nonzero(needed))
        if count == 0:
            return self._unvectored(), True
        if count > limit:
            return self.scan(query, centroids, limit), False
        picked = rows[needed]
        order = np.lexsort((picked, -cosines[needed]))
        found: np.ndarray = picked[order]
        if self._no_vector:
            found = np.concatenate([found, self._unvectored()])
        return found, True

    def _unvectored(self) -> np.ndarray:
        return np.fromiter(sorted(self._no_vector), dtype=np.int64)

    def _cosines(self, query: Prepared, centroids: LanguageCentroids) -> tuple[np.ndarray, np.ndarray]:
        """The query's scan (rows, centred cosines): kept from before at this version, else made."""
        self._valid_scans(centroids)
        kept = self._kept_scan(query)
        if kept is None:
            kept = self._scan_cosines([query], centroids)[0]
            self._keep_scan(query, *kept)
        return kept

    def scan(self, query: Prepared, centroids: LanguageCentroids, count: int) -> np.ndarray:
        """Slots of the `count` open items nearest to `query` by centred cosine (exact, ties by slot)
        among those the language filter lets it meet, from one product of the vector matrix with the
        centred query: (v - m_v)·q̂ = v·q̂ - m_v·q̂, so the centred rows are never stored. At 50,000
        rows ~1.3 ms (one core, measured) where an HNSW search with its widenings took 2-20 ms and,
        on the bench's catalogue of near copies, left out items it could not reach (list recall 0.93
        at 100,000 items). A widening list, or a query of a batch scanned together (`prefetch_scans`),
        finds its cosines kept."""
        rows, cosines = self._cosines(query, centroids)
        if len(rows) > count:
            top = np.argpartition(-cosines, count - 1)[:count]
            rows, cosines = rows[top], cosines[top]
        rows = rows[np.lexsort((rows, -cosines))]
        if self._no_vector:  # not comparable by meaning: kept candidates (the scorer says why they fail)
            with_unvectored: np.ndarray = np.concatenate([rows, self._unvectored()])
            return with_unvectored
        return rows

    def _rows_with_vectors(self) -> np.ndarray:
        rows = self.rows()
        return np.asarray(rows[self.has_vector[rows]])

    def _ids_and_vectors(self, rows: np.ndarray) -> tuple[list[str], np.ndarray]:
        return self.ids[rows].tolist(), self.vectors[rows].copy() if self.dims else np.zeros((0, 0), dtype=np.float32)

    def open_vectors(self) -> tuple[list[str], np.ndarray]:
        """Ids and float32 vectors (rows aligned) of the open items that have a vector (copies)."""
        return self._ids_and_vectors(self._rows_with_vectors())

    def open_view(self) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
        """`open_vectors` and, rows aligned, the filter fields a search may carry: the bitmask columns
        (sectors, modalities, sdgs, languages, as the scorer sets its bits) and the country and
        organization of each row (copies: the snapshot never changes under its reader)."""
        rows = self._rows_with_vectors()
        ids, matrix = self._ids_and_vectors(rows)
        columns = {"sectors": self.sectors[rows], "modalities": self.modalities[rows], "sdgs": self.sdgs[rows],
                   "languages": self.languages[rows], "country": self.countries[rows], "organization_id": self.orgs[rows]}
        return ids, matrix, columns
