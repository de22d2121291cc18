"""Where the candidates of a list come from: the open items of one kind in contiguous arrays, and an
ANN index over their language-centred vectors. Pure: no I/O, no clock.

A `KindTable` keeps every open item of one kind in slots of preallocated arrays (float32 vectors and
the per-item columns `CandidateSet` needs), grown by doubling, so a change is an O(1) write of one
row, not a rebuild. A list is scored against a `take` of some rows: all of them while the kind is
small (exact, still vectorised), else the `candidates` nearest neighbours of the item in an HNSW
index (usearch, int8) over the *centred* unit vectors — the vectors the semantic component compares
— rescored exactly by the pure scorer. The index is rebuilt when the centring snapshot changes (a
different centring moves every vector) and updated row by row otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from usearch.index import Index

from services.matcher.scoring import CandidateSet, LanguageCentroids, Prepared

# HNSW parameters: 16 links per node, wide construction; int8 quantisation of unit vectors keeps the
# index at ~0.4 KB per item (scores are computed again exactly from the float32 rows anyway).
CONNECTIVITY = 16
EXPANSION_ADD = 128
MIN_EXPANSION_SEARCH = 64


@dataclass(frozen=True)
class CandidateConfig:
    """How many neighbours are rescored per list (`SSMATCH_MATCHER_CANDIDATES`), and below how many
    open items of a kind every item is scored instead (`SSMATCH_MATCHER_EXACT_BELOW`; 0 forces the
    ANN path, a huge number forces exact mode). When fewer than top-K pairs pass among the
    neighbours, the search widens (×4, at most `widen` times) before giving up."""

    candidates: int = 200
    exact_below: int = 2000
    widen: int = 2


class KindTable:
    """The prepared open items of one kind, one slot each, in columns (see the module docstring)."""

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self.items: list[Prepared | None] = []
        self.texts: list[str] = []
        self.slot_of: dict[str, int] = {}
        self._free: list[int] = []
        self.lang_codes: list[str | None] = []
        self._lang_pos: dict[str | None, int] = {}
        self.dims = 0
        self.capacity = 0
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.sq_norms = np.zeros(0, dtype=np.float32)
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
        self._no_vector: set[int] = set()  # open items stored without a vector (not in the ANN index)
        self._ann: Index | None = None
        self._ann_centroids: LanguageCentroids | None = None

    COLUMNS = ("sq_norms", "used", "has_vector", "lang_index", "sectors", "modalities", "sdgs", "languages",
               "expires", "geography", "orgs", "countries", "has_delivery")

    def __len__(self) -> int:
        return len(self.slot_of)

    def _grow(self) -> None:
        """Double every column (and the vector matrix): amortised O(1) per put."""
        new = max(64, self.capacity * 2)
        for name in self.COLUMNS:
            old = getattr(self, name)
            col = np.zeros(new, dtype=old.dtype)
            col[: self.capacity] = old
            setattr(self, name, col)
        matrix = np.zeros((new, self.dims), dtype=np.float32)
        matrix[: self.capacity] = self.vectors
        self.vectors = matrix
        grown = new - self.capacity
        self.ids += [None] * grown
        self.items += [None] * grown
        self.texts += [""] * grown
        self.capacity = new

    def _lang(self, code: str | None) -> int:
        if code not in self._lang_pos:
            self._lang_pos[code] = len(self.lang_codes)
            self.lang_codes.append(code)
        return self._lang_pos[code]

    def put(self, item_id: str, p: Prepared) -> int:
        """Write (or overwrite) the item's row; returns its slot."""
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
        self.ids[slot] = item_id
        self.items[slot] = p
        self.texts[slot] = p.text
        self.used[slot] = True
        if vector is not None:
            self.vectors[slot] = vector
            self.sq_norms[slot] = float(vector @ vector)
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
        if self._ann is not None:
            if self._ann.contains(slot):
                self._ann.remove(slot)
            if vector is not None:
                self._ann.add(slot, self._centred(self.vectors[slot : slot + 1], self.lang_index[slot : slot + 1], self._ann_centroids)[0])
        return slot

    def drop(self, item_id: str) -> None:
        """The item is no longer open: free its slot (reused by the next put)."""
        slot = self.slot_of.pop(item_id, None)
        if slot is None:
            return
        self.used[slot] = False
        self.has_vector[slot] = False
        self._no_vector.discard(slot)
        self.ids[slot] = None
        self.items[slot] = None
        self.texts[slot] = ""
        self.orgs[slot] = None
        self.countries[slot] = None
        self._free.append(slot)
        if self._ann is not None and self._ann.contains(slot):
            self._ann.remove(slot)

    def rows(self) -> np.ndarray:
        """Slots of every open item, ascending."""
        return np.flatnonzero(self.used[: self.capacity])

    def take(self, rows: np.ndarray) -> CandidateSet:
        """The rows as a CandidateSet for the pure scorer: O(len(rows)), no Prepared restacked."""
        items = [self.items[r] for r in rows]
        with_vectors = len(rows) > 0 and bool(self.has_vector[rows].all())
        vectors = self.vectors[rows] if with_vectors else None
        return CandidateSet(
            items=items,  # type: ignore[arg-type]
            texts=[self.texts[r] for r in rows],
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
    def _centred(self, vectors: np.ndarray, lang_index: np.ndarray, centroids: LanguageCentroids | None) -> np.ndarray:
        """Unit vectors after subtracting each row's language centroid: their dot product is the
        centred cosine the scorer's semantic component uses."""
        assert centroids is not None
        means = np.stack([centroids.centroid(code) for code in self.lang_codes]).astype(np.float32)
        out = vectors - means[lang_index]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def _ensure_ann(self, centroids: LanguageCentroids) -> Index:
        """The index for this centring snapshot: built once over every open row, then kept up to date."""
        if self._ann is not None and self._ann_centroids is centroids:
            return self._ann
        index = Index(ndim=self.dims, metric="cos", dtype="i8", connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
                      expansion_search=MIN_EXPANSION_SEARCH)
        rows = self.rows()
        rows = rows[self.has_vector[rows]]
        if len(rows):
            index.add(rows.astype(np.uint64), self._centred(self.vectors[rows], self.lang_index[rows], centroids), threads=0)
        self._ann, self._ann_centroids = index, centroids
        return index

    def neighbours(self, query: Prepared, centroids: LanguageCentroids, count: int) -> np.ndarray:
        """Slots of the `count` open items nearest to `query` by centred cosine (approximate)."""
        if query.vector is None or self.dims == 0:
            return self.rows()
        index = self._ensure_ann(centroids)
        index.expansion_search = max(MIN_EXPANSION_SEARCH, count)
        mean = np.asarray(centroids.centroid(query.item.text_language), dtype=np.float32)
        q = query.vector.astype(np.float32) - mean
        q /= max(float(np.linalg.norm(q)), 1e-12)
        found: Any = index.search(q, count)
        keys = np.asarray(found.keys, dtype=np.int64)
        keys = keys[(keys >= 0) & (keys < self.capacity)]
        keys = keys[self.used[keys]]
        # items without a vector are not in the index: keep them candidates (the scorer says why they fail)
        if self._no_vector:
            return np.concatenate([keys, np.fromiter(sorted(self._no_vector), dtype=np.int64)])
        return keys

    def open_vectors(self) -> tuple[list[str], np.ndarray]:
        """Ids and float32 vectors (rows aligned) of the open items that have a vector."""
        rows = self.rows()
        rows = rows[self.has_vector[rows]]
        return [self.ids[r] for r in rows], self.vectors[rows].copy() if self.dims else np.zeros((0, 0), dtype=np.float32)  # type: ignore[misc]
