"""Search, pure parts: query analysis, why an item was found, rank fusion, the meaning cut, and the
store-query evaluation the word index shares with the page check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from services.catalog.adapters.word_index import UnsupportedFilter, passes
from services.catalog.domain.search import MeaningHit, MeaningResult, analyse_query, fuse, fuse_page, matched_words, matches_all
from services.matcher.search import nearest
from services.matcher.search import passes as meaning_passes
from ssmatch.stack.processes import free_port
from tests.helpers import serve_app

DOC = {"title": "Sécurité alimentaire", "description": "建立移民统计数据库 والتدريب", "keywords": ["école"]}


def test_queries_are_folded_like_items_and_chinese_runs_kept_whole() -> None:
    terms = analyse_query("SÉCURITÉ la 移民统计 التدريب (a+)+$[")
    assert terms.words == ("securite", "تدريب")  # stop words and one-letter stop words gone, article stripped
    assert terms.han_runs == ("移民统计",)
    assert matched_words(terms, DOC) == ["securite", "تدريب", "移民统计"]
    assert matches_all(terms, DOC)
    assert not matches_all(analyse_query("securite absent"), DOC)
    assert analyse_query("la le les").empty and not matches_all(analyse_query("la"), DOC)
    assert matched_words(analyse_query("数据"), DOC) == ["数据"]  # a substring jieba never cuts out


def test_fusion_adds_reciprocal_ranks_and_says_why() -> None:
    fused = fuse(["a", "b", "c"], [MeaningHit("c", 0.9), MeaningHit("d", 0.8)])
    assert [f.id for f in fused] == ["c", "a", "b", "d"]  # in both lists beats first in one
    by_id = {f.id: f for f in fused}
    assert by_id["c"].reasons() == ["matched words", "similar meaning"] and by_id["c"].similarity == 0.9
    assert by_id["d"].reasons() == ["similar meaning"] and by_id["a"].reasons() == ["matched words"]
    assert by_id["c"].score == pytest.approx(1 / 63 + 1 / 61)


def test_a_fused_page_is_the_slice_of_the_whole_fused_list() -> None:
    import random

    rng = random.Random(4)
    for _ in range(50):
        words = rng.sample([f"i{j}" for j in range(60)], rng.randint(0, 40))
        near = [MeaningHit(i, round(rng.random(), 3)) for i in rng.sample([f"i{j}" for j in range(60)], rng.randint(0, 30))]
        whole = fuse(words, near)
        offset, limit = rng.randint(0, 50), rng.randint(1, 25)
        page, total = fuse_page(words, near, offset, limit)
        assert total == len(whole) and [f.view() | {"id": f.id} for f in page] == [f.view() | {"id": f.id} for f in whole[offset : offset + limit]]


def test_only_neighbours_that_stand_out_count_in_a_large_corpus() -> None:
    hits = (MeaningHit("x", 0.91), MeaningHit("y", 0.86), MeaningHit("z", 0.84))
    assert [h.id for h in MeaningResult(hits, 0.80, 0.02, 1000).standing_out()] == ["x", "y"]
    assert len(MeaningResult(hits, 0.80, 0.02, 10).standing_out()) == 3  # tiny corpus: no statistics


def test_store_queries_are_evaluated_as_the_store_would() -> None:
    doc = {"status": "open", "sectors": ["energy", "health"], "sdgs": [7], "country": "MWI", "organization_id": "o1"}
    assert passes(doc, {"sectors": "energy", "sdgs": 7, "status": {"$in": ["open", "matched"]}, "country": {"$in": ["MWI"]}})
    assert not passes(doc, {"status": {"$ne": "open"}})
    assert not passes(doc, {"organization_id": {"$in": []}})
    assert not passes(doc, {"sectors": {"$nin": ["health"]}})
    with pytest.raises(UnsupportedFilter):
        passes(doc, {"sdgs": {"$gt": 3}})


def test_the_matcher_ranks_by_cosine_within_the_filters_and_reports_the_corpus() -> None:
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(50, 8)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = [f"i{j:02d}" for j in range(50)]
    found = nearest(ids, matrix, matrix[7], 3)
    assert found.hits[0] == ("i07", pytest.approx(1.0, abs=1e-5)) and len(found.hits) == 3
    assert found.corpus_size == 50 and 0 < found.corpus_std < 1
    sims = matrix @ matrix[7]
    assert [s for _, s in found.hits] == sorted((float(s) for s in sims), reverse=True)[:3]
    docs = {i: {"sectors": ["energy" if j % 2 else "health"]} for j, i in enumerate(ids)}
    odd = nearest(ids, matrix, matrix[7], 5, lambda i: meaning_passes(docs[i], {"sectors": ["health"]}))
    assert all(int(i[1:]) % 2 == 0 for i, _ in odd.hits) and len(odd.hits) == 5
    assert nearest([], np.zeros((0, 8), np.float32), matrix[0], 3).hits == []


def test_nearest_orders_a_window_as_a_full_stable_sort_would_and_widens_it_for_a_filter() -> None:
    import services.matcher.search as meaning

    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(5000, 16)).astype(np.float32)
    matrix[100:140] = matrix[7]  # ties: broken by row order, as the full sort does
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = [f"i{j:05d}" for j in range(len(matrix))]
    rare = {ids[j] for j in range(0, 5000, 997)}  # 6 rows: the filter forces the window to widen
    for query, k, allowed in ((matrix[7], 50, None), (matrix[3], 5, rare.__contains__), (matrix[9], 10, lambda i: i.endswith("3"))):
        sims = matrix @ query
        full = [(ids[j], float(sims[j])) for j in np.argsort(-sims, kind="stable") if allowed is None or allowed(ids[j])][:k]
        assert meaning.nearest(ids, matrix, query, k, allowed).hits == full


def test_query_vectors_embed_a_repeated_query_once() -> None:
    from services.matcher.search import QueryVectors

    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.ones((len(texts), 4), np.float32)

    vectors = QueryVectors(embed, size=2)
    for q in ("water", "water", "solar", "water", "seed", "solar"):
        vectors(q)
    assert [c[0] for c in calls] == ["water", "solar", "seed", "solar"]  # the oldest is forgotten beyond `size`
    assert vectors.hits_total == 2


@contextlib.asynccontextmanager
async def fake_matcher(answer: Callable[[dict[str, Any]], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """A matcher's `POST /v1/search` on a real port, answering with `answer(body)`; yields its URL."""

    async def view(request: web.Request) -> web.Response:
        return await answer(await request.json())

    app = web.Application()
    app.router.add_post("/v1/search", view)
    runner, port = await serve_app(app)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_catalog_asks_the_matcher_once_per_question_within_its_cache_time() -> None:
    from services.catalog.adapters import meaning as meaning_adapter

    asked: list[dict[str, Any]] = []

    async def matcher(body: dict[str, Any]) -> web.Response:
        asked.append(body)
        await asyncio.sleep(0.01)
        return web.json_response({"items": [{"id": "a", "similarity": 0.9}], "corpus": {"mean": 0.8, "std": 0.01, "size": 100}})

    async with fake_matcher(matcher) as url:
        client = meaning_adapter.MeaningClient(url)
        try:
            same = await asyncio.gather(*(client.nearest("offer", "eau potable", 10, {"sectors": ["water"]}, "t") for _ in range(5)))
            assert len(asked) == 1 and all(r == same[0] for r in same)  # concurrent askers share one request
            assert same[0].hits[0].id == "a" and same[0].corpus_size == 100
            await client.nearest("offer", "eau potable", 10, {"sectors": ["water"]}, "other caller")
            assert len(asked) == 1 and client.cache_hits_total == 1  # the answer does not depend on the caller
            await client.nearest("offer", "eau potable", 10, {"sectors": ["health"]}, "t")
            assert len(asked) == 2 and asked[1]["filters"] == {"sectors": ["health"]}  # other filters: another question
            for key, (_, held) in list(client._cache.items()):
                client._cache[key] = (0.0, held)
            await client.nearest("offer", "eau potable", 10, {"sectors": ["water"]}, "t")
            assert len(asked) == 3  # expired: asked again
        finally:
            await client.close()


async def test_a_matcher_that_fails_refuses_or_talks_nonsense_is_a_reason_never_a_crash() -> None:
    from services.catalog.adapters.meaning import MeaningClient, MeaningUnavailable

    replies = iter([web.json_response({"error": "busy"}, status=503), web.Response(text="not json", content_type="application/json"),
                    web.json_response({"items": [{"similarity": 0.9}]}), web.json_response(["a list"])])

    async def matcher(body: dict[str, Any]) -> web.Response:
        if body["q"] == "slow":  # longer than the client's timeout
            await asyncio.sleep(1.5)
            return web.json_response({"items": []})
        return next(replies)

    async with fake_matcher(matcher) as url:
        client = MeaningClient(url, timeout_s=0.3)
        try:
            for q, reason in (("a", "HTTP 503"), ("b", "not understood"), ("c", "not understood"), ("d", "not understood"), ("slow", "did not answer")):
                with pytest.raises(MeaningUnavailable, match=reason):
                    await client.nearest("need", q, 5, {}, None)
            assert client.failures_total == 5
        finally:
            await client.close()
    nobody = MeaningClient(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(MeaningUnavailable, match="did not answer"):
            await nobody.nearest("need", "x", 5, {}, None)
    finally:
        await nobody.close()


def test_a_query_past_its_caller_s_budget_is_not_embedded_but_a_known_one_is_still_answered() -> None:
    import time

    from services.matcher.search import Expired, QueryVectors, deadline_of

    calls: list[str] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.extend(texts)
        return np.ones((len(texts), 4), np.float32)

    vectors = QueryVectors(embed)
    vectors("water", deadline_of("1000"))
    with pytest.raises(Expired):
        vectors("solar", time.monotonic() - 0.001)  # the caller has given up: nothing embedded
    assert vectors("water", time.monotonic() - 0.001) is not None  # already known: no cost, answered
    assert calls == ["water"]
    assert deadline_of(None) is None and deadline_of("soon") is None
