"""The matcher's search by meaning under load: concurrent searches are embedded and ranked in batches on
one thread (`services.matcher.search.Searcher`), answer exactly as one search at a time would, drop
callers who left, and keep BLAS on one thread while they multiply."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from services.matcher import search
from services.matcher.search import Corpus, Expired, QueryVectors, Question, Searcher, answer, nearest, one_blas_thread

DIMS = 16
WAIT_S = 10.0  # bound of every wait below: a broken batcher fails the test instead of hanging it


def unit_rows(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIMS)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def corpus(n: int = 3000, seed: int = 1) -> Corpus:
    ids = [f"i{j:05d}" for j in range(n)]
    docs = {i: {"sectors": ["energy" if j % 3 else "health"], "country": "SEN" if j % 7 == 0 else "KEN"} for j, i in enumerate(ids)}
    return Corpus(ids, unit_rows(n, seed), docs)


class Model:
    """A deterministic embedder that records every call; `gate` (when set) holds the first call until released."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[list[str]] = []
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.entered.set()
        if self.gate is not None and len(self.calls) == 1:
            assert self.gate.wait(WAIT_S)
        return np.stack([unit_rows(1, sum(map(ord, t)))[0] for t in texts])


def test_a_batch_answers_each_question_as_nearest_would_with_one_embedding_call() -> None:
    model = Model()
    one, other = corpus(seed=1), corpus(n=500, seed=2)
    questions = [Question(one, "solar power", 10), Question(one, "clean water", 25, {"sectors": ["health"]}),
                 Question(other, "solar power", 5, {"country": ["SEN"]}), Question(one, "clean water", 3)]
    got = answer(questions, QueryVectors(model))
    assert model.calls == [["solar power", "clean water"]]  # each distinct query embedded once, in one call
    for question, found in zip(questions, got, strict=True):
        assert isinstance(found, search.Nearest)
        vector = model(["x", question.q])[1]
        docs = question.corpus.docs
        allowed = (lambda i, docs=docs, f=question.filters: search.passes(docs.get(i), f)) if question.filters else None
        alone = nearest(question.corpus.ids, question.corpus.matrix, vector, question.k, allowed)
        assert [i for i, _ in found.hits] == [i for i, _ in alone.hits] and len(found.hits) == question.k
        assert [s for _, s in found.hits] == pytest.approx([s for _, s in alone.hits], abs=1e-5)
        assert found.corpus_mean == pytest.approx(alone.corpus_mean, abs=1e-6) and found.corpus_size == len(question.corpus.ids)
        if question.filters:
            assert all(search.passes(docs[i], question.filters) for i, _ in found.hits)


def test_a_query_past_its_deadline_is_not_embedded_while_the_rest_of_its_batch_is_answered() -> None:
    model = Model()
    vectors = QueryVectors(model)
    c = corpus(n=200)
    vectors("known")
    late = time.monotonic() - 0.001
    got = answer([Question(c, "late", 5, deadline=late), Question(c, "known", 5, deadline=late), Question(c, "fresh", 5)], vectors)
    assert isinstance(got[0], Expired) and isinstance(got[1], search.Nearest) and isinstance(got[2], search.Nearest)
    assert model.calls == [["known"], ["fresh"]]
    # the same query asked by a caller still waiting is embedded, for both of its callers
    got = answer([Question(c, "late", 5, deadline=late), Question(c, "late", 5)], vectors)
    assert all(isinstance(g, search.Nearest) for g in got) and model.calls[-1] == ["late"]
    empty = answer([Question(Corpus([], np.zeros((0, DIMS), np.float32)), "known", 5)], vectors)[0]
    assert isinstance(empty, search.Nearest) and empty.hits == [] and empty.corpus_size == 0


async def test_concurrent_searches_wait_for_one_batch_and_a_caller_who_left_costs_nothing() -> None:
    gate = threading.Event()
    model = Model(gate)
    searcher = Searcher(QueryVectors(model))
    c = corpus(n=1000)
    try:
        first = asyncio.create_task(searcher.search(Question(c, "q0", 5)))
        assert await asyncio.to_thread(model.entered.wait, WAIT_S)  # the thread is busy embedding q0
        gone = asyncio.create_task(searcher.search(Question(c, "gone", 5)))
        rest = [asyncio.create_task(searcher.search(Question(c, f"q{n}", 5))) for n in range(1, 8)]
        await asyncio.sleep(0)  # every question queued
        gone.cancel()
        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(first, *rest), WAIT_S)
        assert model.calls == [["q0"], [f"q{n}" for n in range(1, 8)]]  # the seven waiting ones: one call, "gone" not embedded
        assert all(len(a.hits) == 5 for a in answers) and searcher.batches_total == 2 and searcher.questions_total == 8
        with pytest.raises(asyncio.CancelledError):
            await gone
    finally:
        gate.set()
        await asyncio.to_thread(searcher.close)


async def test_an_embedder_failure_reaches_every_caller_of_the_batch() -> None:
    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("model unavailable")

    searcher = Searcher(QueryVectors(broken))
    try:
        results = await asyncio.wait_for(asyncio.gather(*(searcher.search(Question(corpus(n=50), f"q{n}", 3)) for n in range(4)),
                                                        return_exceptions=True), WAIT_S)
        assert all(isinstance(r, RuntimeError) and "model unavailable" in str(r) for r in results)
        # the thread survives: the next search is answered
        searcher.vectors = QueryVectors(Model())
        assert len((await asyncio.wait_for(searcher.search(Question(corpus(n=50), "ok", 3)), WAIT_S)).hits) == 3
    finally:
        await asyncio.to_thread(searcher.close)


def test_blas_runs_on_one_thread_inside_and_as_before_after() -> None:
    from threadpoolctl import threadpool_info

    def blas_threads() -> set[int]:
        return {int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"}

    before = blas_threads()
    assert before, "numpy's wheel bundles OpenBLAS: threadpoolctl must see it, else one_blas_thread limits nothing"
    seen: list[set[int]] = []

    def search_thread() -> None:  # as the Searcher's: the thread that multiplies sets the limit
        with one_blas_thread():
            seen.append(blas_threads())
        seen.append(blas_threads())

    for _ in range(2):  # control of the pool is handed back: the next thread can take it
        thread = threading.Thread(target=search_thread)
        thread.start()
        thread.join(WAIT_S)
    assert seen == [{1}, before, {1}, before]


def test_filters_as_column_masks_answer_as_the_test_of_each_row_does() -> None:
    """A search's filters are one vectorised mask over the rows' columns (the matcher's own table, or
    columns built from documents); the answer is the one testing each row's document gives, for every
    field, several values, values no item holds, and a value the columns cannot say (tested row by row)."""
    import random

    from services.matcher.lists import ItemIndex
    from tests.unit.matcher.conftest import make_rules
    from tests.unit.matcher.test_candidates import catalog

    index = ItemIndex(make_rules())
    docs = catalog(600, seed=5)
    for doc in docs:
        index.put(doc)
    for doc in docs[:40]:  # withdrawn items leave the rows
        index.put({**doc, "status": "withdrawn", "revision": 2})
    ids, matrix, columns = index.search_view("offer")
    assert len(ids) == matrix.shape[0] == len(columns["country"]) and 0 < len(ids) < 300
    table = Corpus(ids, matrix, index.docs["offer"], search.Columns(columns))
    from_docs = Corpus(ids, matrix, index.docs["offer"], search.Columns.of_docs(ids, index.docs["offer"]))
    plain = Corpus(ids, matrix, index.docs["offer"])
    rng = random.Random(2)
    choices = {"sectors": ["agriculture", "health", "energy", "water_sanitation", "transport"], "sdgs": [1, 2, 5, 9, 17, 3],
               "languages": ["en", "fr", "es", "sw"], "modalities": ["capacity_development", "study_visit"],
               "country": ["KEN", "BRA", "SEN", "FJI"], "organization_id": ["org1", "org2", "org5", "nobody"]}
    filters = [{}, {"sdgs": [99]}, {"sectors": []}]
    for _ in range(60):
        names = rng.sample(sorted(choices), rng.randint(1, 3))
        filters.append({n: rng.sample(choices[n], rng.randint(1, 2)) for n in names})
    def model(texts: list[str]) -> np.ndarray:
        return np.random.default_rng(len(texts)).normal(size=(len(texts), matrix.shape[1])).astype(np.float32)

    for f in filters:
        want = answer([Question(plain, "solar pumps", 15, f)], QueryVectors(model))[0]
        assert isinstance(want, search.Nearest)
        assert all(search.passes(index.docs["offer"][i], f) for i, _ in want.hits)
        for corpus_ in (table, from_docs):
            got = answer([Question(corpus_, "solar pumps", 15, f)], QueryVectors(model))[0]
            assert isinstance(got, search.Nearest)
            assert [i for i, _ in got.hits] == [i for i, _ in want.hits], f
            assert [x for _, x in got.hits] == pytest.approx([x for _, x in want.hits], abs=1e-5)
            assert (got.corpus_mean, got.corpus_std, got.corpus_size) == pytest.approx((want.corpus_mean, want.corpus_std, want.corpus_size), abs=1e-6)
    assert table.columns is not None and table.columns.mask({"sdgs": [99]}) is None  # beyond the columns: tested row by row
    assert table.derived.subsets and from_docs.derived.subsets  # selective filters were ranked over their own rows
    assert table.derived.subset_rows <= search.SUBSET_CACHE_SHARE * len(ids)


def test_corpus_statistics_are_exact_on_a_small_corpus_and_close_on_a_sample_of_a_big_one() -> None:
    queries = unit_rows(6, seed=9)
    for n, tolerance in ((search.SAMPLE_ROWS, 1e-6), (50_000, 0.05)):
        c = Corpus([f"i{j}" for j in range(n)], unit_rows(n, seed=n))
        means, stds = c.statistics(queries)
        sims = queries @ c.matrix.T
        assert means == pytest.approx(sims.mean(axis=1), abs=1e-6)  # the mean is always exact
        assert stds == pytest.approx(sims.std(axis=1), rel=tolerance)
        assert (len(c.derived.sample) == n) == (n <= search.SAMPLE_ROWS)


def test_a_selective_filter_is_ranked_over_its_own_rows_and_the_kept_rows_stay_bounded() -> None:
    n = 4000
    ids = [f"i{j:05d}" for j in range(n)]
    docs = {i: {"country": f"C{j % 20}", "sectors": ["health" if j % 2 else "energy"]} for j, i in enumerate(ids)}
    c = Corpus(ids, unit_rows(n, seed=3), docs, search.Columns.of_docs(ids, docs))
    plain = Corpus(ids, c.matrix, docs)
    model = Model()
    for country in range(20):
        f = {"country": [f"C{country}"]}
        got, want = (answer([Question(x, "clean water", 12, f)], QueryVectors(model))[0] for x in (c, plain))
        assert isinstance(got, search.Nearest) and isinstance(want, search.Nearest)
        assert [i for i, _ in got.hits] == [i for i, _ in want.hits]
        assert c.derived.subset_rows <= search.SUBSET_CACHE_SHARE * n
    assert len(c.derived.subsets) == int(search.SUBSET_CACHE_SHARE * 20)  # 5% each: the ten most recent are kept
    half = c.selection({"sectors": ["health"]})
    assert half is not None and half.matrix is None  # half the rows: ranked among all, not gathered
