"""Search by meaning: the open items nearest to a query vector, by cosine.

The matcher already holds every open item's unit-length multilingual vector (`ItemIndex.vectors`),
so one matrix product ranks them all (memory-bound: ~20 ms alone at 100,000 × 384 here), or, for a
selective filter, one over that filter's rows (`Corpus.selection`); filters are masks over the rows'
columns (`Columns`). The query's similarity to the whole corpus (mean, standard deviation) comes back
too (`Corpus.statistics`): e5's cosines are compressed (~0.78–0.91), so whether a neighbour stands out
can only be judged against them, never by a fixed threshold.

`Searcher` serves concurrent searches in batches on one thread: the queries of a batch are embedded
in one call (the model runs one text per core) and ranked by one matrix product (one pass over the
vectors for the whole batch), with BLAS on one thread. Measured at 20,000 items, one search at a time:
~70 ms of CPU a search in the meaning server, ~44 ms of it OpenBLAS's second thread spinning after
each product; under 16 clients at 100,000 items the per-query product (~20 ms) and embedding (~15 ms)
were the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.matcher.http_models import SEARCH_FILTER_FIELDS as FILTER_FIELDS  # noqa: F401 - the list filters a search may carry
from services.matcher.scoring.score import LANGUAGE_BITS, MODALITY_BIT, OTHER_LANGUAGES_BIT, SECTOR_BIT, lang_bit
from ssmatch.http import SEARCH_BUDGET_HEADER


@dataclass(frozen=True)
class Nearest:
    hits: list[tuple[str, float]]
    corpus_mean: float
    corpus_std: float
    corpus_size: int

    def view(self) -> dict[str, Any]:
        return {"items": [{"id": i, "similarity": round(s, 6)} for i, s in self.hits],
                "corpus": {"mean": round(self.corpus_mean, 6), "std": round(self.corpus_std, 6), "size": self.corpus_size}}


def passes(doc: Mapping[str, Any] | None, filters: Mapping[str, list[Any]]) -> bool:
    """Every filter holds: the item's value (or one of its values) is among the allowed ones."""
    if doc is None:
        return False
    for name, allowed in filters.items():
        value = doc.get(name)
        values = value if isinstance(value, list) else [value]
        if not any(v in allowed for v in values):
            return False
    return True


#: filter fields held as bitmasks (the scorer's own bits), and how a filter's value maps to its bit
def _sdg_bit(value: Any) -> int | None:
    try:
        sdg = int(value)
    except (TypeError, ValueError):
        return None
    return sdg - 1 if 1 <= sdg <= 17 else None


def _code_bit(table: Mapping[Any, int]) -> Callable[[Any], int | None]:
    return lambda value: table.get(value)


def _language_bit(value: Any) -> int | None:
    bit = LANGUAGE_BITS.get(value)
    return None if bit is None or bit >= OTHER_LANGUAGES_BIT else bit  # a shared bit cannot say which language


BIT_FIELDS: dict[str, Callable[[Any], int | None]] = {
    "sectors": _code_bit(SECTOR_BIT), "modalities": _code_bit(MODALITY_BIT), "sdgs": _sdg_bit, "languages": _language_bit,
}
SCALAR_FIELDS = ("country", "organization_id")


class Columns:
    """The filter fields of a corpus's rows as arrays, so that a filter is one vectorised mask instead
    of a Python test per row (~8 ms a search with a sector filter at 100,000 items, measured): list
    fields as the scorer's int64 bitmasks, single values as object arrays, indexed by value on first
    use. `mask` returns None when a filter cannot be said with them (a value without a bit of its own):
    the caller tests those rows one by one, as before."""

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        """`columns`: field → one value per row (`KindTable.open_view`'s, or `of_docs`')."""
        self.bits = {name: columns[name] for name in BIT_FIELDS}
        self.scalars = {name: columns[name] for name in SCALAR_FIELDS}
        self._rows_of: dict[str, dict[Any, np.ndarray]] = {}
        self._lock = threading.Lock()

    @classmethod
    def of_docs(cls, ids: list[str], docs: Mapping[str, Mapping[str, Any]]) -> Columns:
        """Columns from documents (rows in `ids` order): for a corpus not taken from the matcher's tables."""
        columns: dict[str, np.ndarray] = {name: np.zeros(len(ids), dtype=np.int64) for name in BIT_FIELDS}
        columns |= {name: np.empty(len(ids), dtype=object) for name in SCALAR_FIELDS}
        bit_makers = {**BIT_FIELDS, "languages": _assigned_language_bit}
        for row, item_id in enumerate(ids):
            doc = docs.get(item_id) or {}
            for name, bit_of in bit_makers.items():
                columns[name][row] = sum({1 << bit for v in doc.get(name) or [] if (bit := bit_of(v)) is not None})
            for name in SCALAR_FIELDS:
                columns[name][row] = doc.get(name)
        return cls(columns)

    def mask(self, filters: Mapping[str, list[Any]]) -> np.ndarray | None:
        """Rows passing every filter (as `passes` says), or None when a filter is beyond the columns."""
        out: np.ndarray | None = None
        for name, allowed in filters.items():
            if name in BIT_FIELDS:
                wanted = 0
                for value in allowed:
                    bit = BIT_FIELDS[name](value)
                    if bit is None:
                        return None
                    wanted |= 1 << bit
                passing = (self.bits[name] & np.int64(wanted)) != 0
            elif name in SCALAR_FIELDS:
                rows_of = self._index(name)
                passing = np.zeros(len(self.scalars[name]), dtype=bool)
                for value in allowed:
                    if (rows := rows_of.get(value)) is not None:
                        passing[rows] = True
            else:
                return None
            out = passing if out is None else out & passing
        return out

    def _index(self, name: str) -> dict[Any, np.ndarray]:
        with self._lock:
            held = self._rows_of.get(name)
            if held is None:
                groups: dict[Any, list[int]] = {}
                for row, value in enumerate(self.scalars[name].tolist()):
                    groups.setdefault(value, []).append(row)
                held = self._rows_of[name] = {v: np.asarray(r, dtype=np.int64) for v, r in groups.items()}
            return held


def _assigned_language_bit(value: Any) -> int | None:
    """The scorer's bit of a language, assigned if new (as preparing an item would)."""
    lang_bit(value)
    return _language_bit(value)


def nearest(ids: list[str], matrix: np.ndarray, query: np.ndarray, k: int, allowed: Callable[[str], bool] | None = None) -> Nearest:
    """The `k` rows most similar to `query` (cosine: rows and query are unit length) that `allowed`
    accepts, best first, ties by id order.

    Only the best rows are ordered (a partition, then a sort of that window, widened while the filter
    leaves fewer than `k`): sorting all 100,000 similarities cost ~15 ms a query, the window ~1 ms."""
    if not ids:
        return Nearest([], 0.0, 0.0, 0)
    with one_blas_thread():
        sims = matrix @ np.asarray(query, dtype=np.float32)
    return ranked(ids, sims, k, allowed)


def ranked(ids: list[str], sims: np.ndarray, k: int, allowed: Callable[[str], bool] | None = None,
           stats: tuple[float, float] | None = None) -> Nearest:
    """`nearest` from the similarities of every row (`sims[j]` is row `j`'s); `stats` (mean, standard
    deviation) when known, else computed from `sims`."""
    if not ids:
        return Nearest([], 0.0, 0.0, 0)
    window = min(len(ids), max(WINDOW, 4 * k))
    checked = 0
    hits: list[tuple[str, float]] = []
    while True:
        order = _best(sims, window)
        for j in order[checked:]:
            if allowed is None or allowed(ids[j]):
                hits.append((ids[j], float(sims[j])))
                if len(hits) == k:
                    break
        if len(hits) == k or window == len(ids):
            break
        checked, window = window, min(len(ids), window * 4)
    mean, std = stats if stats is not None else (float(sims.mean()), float(sims.std()))
    return Nearest(hits, mean, std, len(ids))


def ranked_among(ids: list[str], rows: np.ndarray, sims: np.ndarray, k: int, stats: tuple[float, float]) -> Nearest:
    """The best `k` of `rows` (ascending row numbers) by their similarities `sims` (aligned with
    `rows`), ties by row, in a few vectorised passes (no Python test per row)."""
    order = _best(sims, min(len(rows), k)) if len(rows) else np.zeros(0, dtype=np.int64)
    hits = [(ids[rows[j]], float(sims[j])) for j in order[:k].tolist()]
    return Nearest(hits, stats[0], stats[1], len(ids))


#: the first window of best rows ordered by `nearest`
WINDOW = 1024


def _best(sims: np.ndarray, window: int) -> np.ndarray:
    """Indices of the `window` largest values, best first, ties by index (as a stable full sort)."""
    if window >= len(sims):
        return np.argsort(-sims, kind="stable")
    top = np.argpartition(-sims, window - 1)[:window]
    cut = sims[top].min()
    top = np.flatnonzero(sims >= cut)  # every row tied with the last one, so that ties break by index alike
    return top[np.lexsort((top, -sims[top]))][:window]


#: the caller's time budget for a search, in ms (optional): past it, the query is not embedded
BUDGET_HEADER = SEARCH_BUDGET_HEADER


class Expired(RuntimeError):
    """The caller's budget ran out while the query waited for the embedder: it no longer waits for the
    answer, and embedding it anyway would only delay the queries behind it (measured at 100k items
    under overload: the backlog of abandoned queries kept the CPU busy after their callers left)."""


def deadline_of(budget_ms: str | None) -> float | None:
    """The monotonic deadline of a request that arrives now with this budget header (None: no budget)."""
    try:
        return time.monotonic() + max(0.0, float(budget_ms)) / 1000 if budget_ms else None
    except ValueError:
        return None


class QueryVectors:
    """The vectors of recent queries: embedding a short query costs ~15 ms (more on a busy machine),
    and people search the same words again (paging, refining filters, a shared link)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], size: int = 2048) -> None:
        self._embed = embed
        self._size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits_total = 0
        self.misses_total = 0
        self.batches_total = 0

    def __call__(self, q: str, deadline: float | None = None) -> np.ndarray:
        """The query's vector; `Expired` instead of embedding it once `deadline` (monotonic) has passed."""
        vector = self.many({q: deadline})[q]
        if vector is None:
            raise Expired(q)
        return vector

    def many(self, asked: Mapping[str, float | None]) -> dict[str, np.ndarray | None]:
        """The vectors of several queries (query → the deadline of its caller, None: none): known ones
        from memory, the others embedded in one call; None for a query not known whose deadline has
        passed (it is not embedded)."""
        out: dict[str, np.ndarray | None] = {}
        with self._lock:
            for q in asked:
                vector = self._cache.get(q)
                if vector is not None:
                    self._cache.move_to_end(q)
                    self.hits_total += 1
                out[q] = vector
        now = time.monotonic()
        missing = [q for q, v in out.items() if v is None and not _passed(asked[q], now)]
        if not missing:
            return out
        vectors = np.asarray(self._embed(missing), dtype=np.float32)
        with self._lock:
            self.batches_total += 1
            for q, vector in zip(missing, vectors, strict=True):
                self.misses_total += 1
                out[q] = self._cache[q] = vector
                if len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        return out


def _passed(deadline: float | None, now: float) -> bool:
    return deadline is not None and now > deadline


# ---- batches ----------------------------------------------------------------------------------------
_blas: Any = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread while inside: OpenBLAS's helper thread spins after every call (~44 ms of a
    core per search at 20,000 items, measured), taking the core the embedder and the other processes
    need, and a product over the vectors is memory-bound anyway. OpenBLAS's pool is process-wide, and
    threadpoolctl lets one thread at a time change it (the search thread, in a server): in another
    thread meanwhile this changes nothing. The limit is given back on the way out."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    with _blas.limit(limits=1, user_api="blas"):
        yield


#: a query's similarity to the whole corpus (mean, standard deviation) is judged from the corpus's
#: mean vector (the mean, exactly: q·μ) and at most this many evenly spaced rows (the spread; every
#: row below that size). The spread of 4,096 of 100,000 rows is within ~2% of the whole one's; the
#: whole product cost ~12 ms a search at 100,000 rows, most of a filtered search (measured)
SAMPLE_ROWS = 4096
#: a filter passing at most this share of the rows is ranked over those rows alone, gathered once per
#: snapshot (a sector: ~13%): the product reads that share of the vectors instead of all of them
SUBSET_MAX_SHARE = 0.25
#: the gathered rows kept per snapshot, as a share of its rows (least recently used dropped first)
SUBSET_CACHE_SHARE = 0.5


class _Derived:
    """What searches derive from one snapshot, computed on first use and kept as long as it is."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mean_vector: np.ndarray | None = None
        self.sample = np.zeros((0, 0), dtype=np.float32)
        self.subsets: OrderedDict[tuple[Any, ...], Selection] = OrderedDict()
        self.subset_rows = 0


@dataclass(frozen=True)
class Corpus:
    """What a search ranks: ids and unit vectors of the open items (rows aligned), a snapshot the
    searching thread never sees change, and each item's filter fields by id (read one entry at a time:
    the matcher's live documents may be given)."""

    ids: list[str]
    matrix: np.ndarray
    docs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    columns: Columns | None = None  # the rows' filter fields, when known: filters become one mask
    derived: _Derived = field(default_factory=_Derived, compare=False, repr=False)

    def statistics(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each query's mean similarity to every row (exact) and the standard deviation of its
        similarities (over every row up to SAMPLE_ROWS, else over SAMPLE_ROWS evenly spaced ones)."""
        d = self.derived
        with d.lock:
            if d.mean_vector is None:
                d.mean_vector = self.matrix.mean(axis=0, dtype=np.float64)
                step = -(-len(self.ids) // SAMPLE_ROWS)
                d.sample = self.matrix if step <= 1 else np.ascontiguousarray(self.matrix[::step])
            mean_vector, sample = d.mean_vector, d.sample
        means = batch.astype(np.float64) @ mean_vector
        with one_blas_thread():
            sims = batch @ sample.T
        return means, np.sqrt(np.mean((sims - means[:, None]) ** 2, axis=1))

    def selection(self, filters: Mapping[str, list[Any]]) -> Selection | None:
        """The rows passing `filters` (None: no filter, or one the columns cannot say: every row is
        ranked and each is tested). A selective one (at most SUBSET_MAX_SHARE of the rows) also
        carries its rows' vectors, gathered once per snapshot and kept (at most SUBSET_CACHE_SHARE
        of the rows, least recently used dropped)."""
        if not filters or self.columns is None:
            return None
        key = tuple(sorted((name, tuple(sorted(map(str, values)))) for name, values in filters.items()))
        d = self.derived
        with d.lock:
            if (held := d.subsets.get(key)) is not None:
                d.subsets.move_to_end(key)
                return held
        passing = self.columns.mask(filters)
        if passing is None:
            return None
        rows = np.flatnonzero(passing)
        if len(rows) > SUBSET_MAX_SHARE * len(self.ids):
            return Selection(rows)
        held = Selection(rows, np.take(self.matrix, rows, axis=0))
        with d.lock:
            if key not in d.subsets:
                d.subsets[key] = held
                d.subset_rows += len(rows)
            while d.subset_rows > SUBSET_CACHE_SHARE * len(self.ids) and len(d.subsets) > 1:
                _, dropped = d.subsets.popitem(last=False)
                d.subset_rows -= len(dropped.rows)
        return held


@dataclass(frozen=True)
class Selection:
    """The rows a filter passes (ascending) and, for a selective one, their vectors in that order."""

    rows: np.ndarray
    matrix: np.ndarray | None = None


@dataclass(frozen=True)
class Question:
    """One search: the items of `corpus` nearest to `q` that pass `filters`, at most `k`."""

    corpus: Corpus
    q: str
    k: int
    filters: Mapping[str, list[Any]] = field(default_factory=dict)
    deadline: float | None = None


def answer(questions: list[Question], vectors: QueryVectors) -> list[Nearest | Expired]:
    """The answers to a batch of questions, in order: the queries not yet known are embedded in one
    call, and the questions on one corpus ranked by one matrix product (one pass over its vectors for
    the batch: the product is memory-bound). `Expired` for a query whose caller's deadline passed
    before it was embedded. A similarity may differ from one-at-a-time's in its 7th digit (~1e-7:
    OpenBLAS sums in an order that depends on the query's place in the batch, measured). A selective
    filter's rows are ranked alone (`Corpus.selection`); the corpus statistics come from
    `Corpus.statistics`, exact below SAMPLE_ROWS rows."""
    asked: dict[str, float | None] = {}
    for x in questions:
        held = asked.get(x.q, x.deadline)
        asked[x.q] = None if held is None or x.deadline is None else max(held, x.deadline)
    found = vectors.many(asked)
    out: list[Nearest | Expired | None] = [Expired(x.q) if found[x.q] is None else None for x in questions]
    groups: dict[int, list[int]] = {}
    rows: dict[int, np.ndarray] = {}
    for i, x in enumerate(questions):
        if (vector := found[x.q]) is not None:
            groups.setdefault(id(x.corpus), []).append(i)
            rows[i] = vector
    for members in groups.values():
        corpus = questions[members[0]].corpus
        if not corpus.ids:
            for i in members:
                out[i] = Nearest([], 0.0, 0.0, 0)
            continue
        means, stds = corpus.statistics(np.stack([rows[i] for i in members]).astype(np.float32, copy=False))
        stats = {i: (float(means[n]), float(stds[n])) for n, i in enumerate(members)}
        # questions whose filter has its own vectors share a product over them; the others, one over all
        plans: dict[int, tuple[np.ndarray, list[tuple[int, Selection | None]]]] = {}
        for i in members:
            chosen = corpus.selection(questions[i].filters)
            ranked_rows = chosen.matrix if chosen is not None and chosen.matrix is not None else corpus.matrix
            plans.setdefault(id(ranked_rows), (ranked_rows, []))[1].append((i, chosen))
        for ranked_rows, asking in plans.values():
            batch = np.stack([rows[i] for i, _ in asking]).astype(np.float32, copy=False)
            with one_blas_thread():
                sims = batch @ ranked_rows.T  # (queries, rows): each query's similarities contiguous
            for row, (i, chosen) in enumerate(asking):
                x = questions[i]
                if chosen is None:
                    docs, filters = corpus.docs, x.filters
                    allowed = (lambda item_id, docs=docs, filters=filters: passes(docs.get(item_id), filters)) if filters else None
                    out[i] = ranked(corpus.ids, sims[row], x.k, allowed, stats[i])
                else:
                    among = sims[row] if chosen.matrix is not None else sims[row][chosen.rows]
                    out[i] = ranked_among(corpus.ids, chosen.rows, among, x.k, stats[i])
    return [o for o in out if o is not None]


#: at most this many questions are answered together (the embedder's batch)
MAX_BATCH = 32


@dataclass(frozen=True)
class _Pending:
    question: Question
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Nearest]


class Searcher:
    """Answers searches on one thread of its own, in batches of the questions waiting (`answer`): while
    a batch is computed the next ones gather, so under load each embedding call and each pass over the
    vectors serves many callers, and one search at a time waits for nothing. One thread also means one
    embedding at a time: concurrent calls each ran the model's threads against the others'. A question
    whose caller has gone (cancelled) is dropped before it costs anything."""

    def __init__(self, vectors: QueryVectors, max_batch: int = MAX_BATCH) -> None:
        self.vectors = vectors
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.questions_total = 0
        self.batches_total = 0

    async def search(self, question: Question) -> Nearest:
        """The answer to `question`; `Expired` when its deadline passed before its query was embedded."""
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Nearest] = loop.create_future()
        self._queue.put(_Pending(question, loop, future))
        return await future

    def close(self) -> None:
        """Stop the thread once the questions already asked are answered."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="meaning-search", daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            live = [p for p in batch if not p.future.cancelled()]
            if live:
                self._answer(live)
            if stop:
                return

    def _answer(self, batch: list[_Pending]) -> None:
        self.batches_total += 1
        self.questions_total += len(batch)
        results: list[Nearest | BaseException]
        try:
            results = list(answer([p.question for p in batch], self.vectors))
        except Exception as exc:  # noqa: BLE001 - the embedder failed: every caller of the batch hears why
            results = [exc] * len(batch)
        for pending, result in zip(batch, results, strict=True):
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
                pending.loop.call_soon_threadsafe(_settle, pending.future, result)


def _settle(future: asyncio.Future[Nearest], result: Nearest | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
