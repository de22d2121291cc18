"""Search by words through the word index (issue 13), against the real store: the index is a read
model kept by the change stream, rebuilt when missing, and never the reason for a 500.

Searches by meaning need the matcher and its model: tests/e2e/test_search_meaning.py."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.integration.catalog.conftest import ADMIN, NEED, Api, open_api

FRESH_S = 1.0  # the bound: a write is searchable (or gone) within a second


async def until(check: Callable[[], Awaitable[Any]], bound_s: float, what: str) -> Any:
    """Poll `check` until it returns something truthy, at most `bound_s`; fail with the last value."""
    deadline = time.monotonic() + bound_s
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.02)  # the poll interval, not a wait for something
    raise AssertionError(f"{what}: not within {bound_s}s (last: {last!r})")


async def ready(api: Api) -> None:
    async def is_ready() -> bool:
        return bool(api.app.state.words.ready)

    await until(is_ready, 30, "word index ready")


@pytest.fixture
async def search_api(make_settings: Any) -> AsyncIterator[Api]:
    settings = make_settings(admin_token=ADMIN, matcher_url="http://127.0.0.1:9")  # nothing listens: words only
    async with open_api(settings, start_search=True) as opened:
        await ready(opened)
        yield opened
    shutil.rmtree(settings.search_index_path, ignore_errors=True)


async def ids(api: Api, headers: dict[str, str], **params: Any) -> list[str]:
    r = await api.client.get("/v1/needs", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return [n["id"] for n in r.json()["items"]]


async def post_need(api: Api, headers: dict[str, str], **fields: Any) -> str:
    r = await api.client.post("/v1/needs", json={**NEED, **fields}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_words_are_found_folded_segmented_and_as_chinese_substrings(search_api: Api) -> None:
    api = search_api
    org, office = await api.org()
    fr = await post_need(api, office, title="Sécurité alimentaire à l'école", description="Cantines scolaires numéro 3.")
    ar = await post_need(api, office, title="تدريب المعلمين", description="والتدريب على المناهج", languages=["ar"])
    zh = await post_need(api, office, title="建立移民统计数据库", description="需要技术援助", languages=["zh"])
    mine = {"organization_id": org}

    async def indexed() -> bool:
        page = (await api.client.get("/v1/needs", params={**mine, "q": "数据"}, headers=office)).json()
        return page.get("search", {}).get("words") == "index" and [n["id"] for n in page["items"]] == [zh]

    await until(indexed, FRESH_S, "a Chinese run inside a jieba word (数据 in 数据库)")
    assert await ids(api, office, **mine, q="SECURITE numero 3") == [fr]
    assert await ids(api, office, **mine, q="ecole") == [fr]
    assert await ids(api, office, **mine, q="التدريب") == [ar]  # article and proclitic stripped alike
    assert await ids(api, office, **mine, q="统计 援助") == [zh]
    assert await ids(api, office, **mine, q="统计 ecole") == []  # every word, newest first
    ranked = (await api.client.get("/v1/needs", params={**mine, "q": "统计 ecole", "sort": "relevance"}, headers=office)).json()
    assert {n["id"] for n in ranked["items"]} == {fr, zh}  # any word, ranked
    why = {n["id"]: n["search"] for n in ranked["items"]}
    assert why[zh]["matched_words"] == ["统计"] and why[fr]["matched_words"] == ["ecole"]
    assert why[zh]["reasons"] == ["matched words"]
    assert ranked["search"]["meaning"] == "unavailable" and "words only" in ranked["search"]["message"]


async def test_a_new_item_is_found_at_once_and_a_withdrawn_one_is_gone_within_a_second(search_api: Api) -> None:
    api = search_api
    org, office = await api.org()
    posted = await post_need(api, office, title="Mangrove restoration for coastal fisheries")
    assert await ids(api, office, organization_id=org, q="mangrove") == [posted]  # read-your-writes, no wait
    assert await api.client.delete(f"/v1/needs/{posted}", headers=office)
    t0 = time.monotonic()

    async def gone() -> bool:
        return await ids(api, office, organization_id=org, q="mangrove") == []

    await until(gone, FRESH_S, "withdrawn item out of the results")
    assert time.monotonic() - t0 < FRESH_S
    # and it is the index that forgot it, not only the store's confirmation
    async def unindexed() -> bool:
        from services.catalog.domain.search import analyse_query

        hits = api.app.state.words.search("need", analyse_query("mangrove"), {"status": {"$ne": "withdrawn"}}, mode="all", limit=5)
        return not hits

    await until(unindexed, FRESH_S, "withdrawal applied to the index")


async def test_filters_and_cursor_pages_agree_with_the_store(search_api: Api) -> None:
    api = search_api
    org, office = await api.org()
    made = [await post_need(api, office, title=f"Solar pumps batch {i}", sectors=["energy" if i % 2 else "water_sanitation"], sdgs=[7 if i % 2 else 6])
            for i in range(7)]
    await post_need(api, office, title="Solar pumps draft", status="draft")
    mine = {"organization_id": org, "q": "solar pumps"}

    async def all_indexed() -> bool:
        return len(api.app.state.words.search("need", __import__("services.catalog.domain.search", fromlist=["x"]).analyse_query("solar"), {}, mode="all", limit=20)) == 8

    await until(all_indexed, FRESH_S, "eight items indexed")
    seen, cursor = [], None
    while True:
        page = (await api.client.get("/v1/needs", params={**mine, "limit": 3, **({"cursor": cursor} if cursor else {})}, headers=office)).json()
        assert page["search"]["words"] == "index"
        seen += [n["id"] for n in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))  # newest first, each once; the draft is listed only when asked for
    assert await ids(api, office, **mine, sector="energy") == [made[5], made[3], made[1]]
    assert await ids(api, office, **mine, sdg=6) == [made[6], made[4], made[2], made[0]]
    assert await ids(api, office, **mine, status="draft") != []
    _, other = await api.org(name="Other office")
    assert await ids(api, other, **mine, status="draft") == []  # another organization's draft stays private
    assert await ids(api, office, **mine, region="Africa", group="LDC") == list(reversed(made))  # MWI
    assert await ids(api, office, **mine, country="SEN") == []
    # filter-only lists are served by the index too, and agree with the store's own query, page by page
    from services.catalog import service
    from services.catalog.models import ItemListIn
    from ssmatch.auth import Principal

    caller = Principal(role="seeker", organization_id=org)
    store_only = service.Catalog(api.app.state.store, api.app.state.catalog.matches)
    for params in ({}, {"sector": "energy"}, {"sdg": 6, "status": "open"}, {"status": "draft"}, {"region": "Africa", "limit": 2}, {"language": "fr", "modality": "capacity_development"}):
        query = ItemListIn(organization_id=org, **params)
        indexed = await service.list_items(api.app.state.catalog, caller, "need", query)
        scanned = await service.list_items(store_only, caller, "need", query)
        assert [n["id"] for n in indexed["items"]] == [n["id"] for n in scanned["items"]], params
        assert indexed["next_cursor"] == scanned["next_cursor"], params


async def test_a_restarted_catalog_answers_as_before_and_a_lost_index_is_rebuilt(make_settings: Any) -> None:
    settings = make_settings(admin_token=ADMIN, matcher_url="http://127.0.0.1:9")
    queries = [{"q": "water"}, {"q": "water", "sort": "relevance"}, {"q": "统计"}, {"q": "irrigation schools", "sort": "relevance"}]
    try:
        async with open_api(settings, start_search=True, drop=False) as api:
            await ready(api)
            org, office = await api.org()
            for i in range(6):
                await post_need(api, office, title=f"Water irrigation for schools {i}", description="Irrigation " + "统计 " * (i % 2))
            last = await post_need(api, office, title="Water last")

            async def caught_up() -> bool:
                wm = api.app.state.words.watermark
                return wm is not None and api.app.state.words.count("need") == 7

            await until(caught_up, FRESH_S, "all seven indexed")
            before = [await ids(api, office, organization_id=org, **q) for q in queries]
            assert last in before[0]
        async with open_api(settings, start_search=True, drop=False) as api:
            await ready(api)
            assert api.app.state.index_sync.rebuilds_total == 0  # reopened from disk, caught up from its watermark
            assert [await ids(api, office, organization_id=org, **q) for q in queries] == before
        shutil.rmtree(settings.search_index_path)
        async with open_api(settings, start_search=True) as api:
            await ready(api)
            assert api.app.state.index_sync.rebuilds_total == 1  # missing: rebuilt from the store
            assert [await ids(api, office, organization_id=org, **q) for q in queries] == before
    finally:
        shutil.rmtree(settings.search_index_path, ignore_errors=True)


@pytest.mark.parametrize(("q", "status"), [
    ("ab\x00cd", 422),
    ("x" * 10_000, 422),
    ("(a+)+$[", 200),
    (".*", 200),
    ("\\d{2,}|[^a]", 200),
    ("écoles 学校 مدرسة школы", 200),
    ("AND OR NOT \"unbalanced", 200),
    ("title:foo^3 id:*", 200),
    ("🌍🌱", 200),
])
async def test_hostile_queries_get_results_or_a_clear_4xx(search_api: Api, q: str, status: int) -> None:
    _, office = await search_api.org()
    await post_need(search_api, office, title="Écoles et 学校 et مدرسة et школы")
    for sort in ("recency", "relevance"):
        r = await search_api.client.get("/v1/offers" if sort == "x" else "/v1/needs", params={"q": q, "sort": sort}, headers=office)
        assert r.status_code == status, (sort, r.text[:300])
        if status >= 400:
            assert set(r.json()["error"]) == {"code", "message", "details"}
        else:
            assert isinstance(r.json()["items"], list)


async def test_an_author_sees_each_write_at_once_even_before_the_index_commits_it(search_api: Api) -> None:
    """Read-your-writes comes from staging the write in this process's index, not from a race with the
    change stream: with the sync stopped, the author's lists still show a post, an edit and a withdrawal."""
    api = search_api
    org, office = await api.org()
    await api.app.state.index_sync.stop()  # nothing reaches the index from the store from now on
    posted = await post_need(api, office, title="Mangrove nurseries for coastal villages")
    mine = {"organization_id": org}
    assert await ids(api, office, **mine) == [posted]
    assert await ids(api, office, **mine, q="mangrove") == [posted]
    ranked = (await api.client.get("/v1/needs", params={**mine, "q": "mangrove", "sort": "relevance"}, headers=office)).json()
    assert [n["id"] for n in ranked["items"]] == [posted] and ranked["items"][0]["search"]["matched_words"] == ["mangrove"]
    item = (await api.client.get(f"/v1/needs/{posted}", headers=office)).json()
    listed = (await api.client.get("/v1/needs", params=mine, headers=office)).json()["items"][0]
    assert listed == item  # the staged copy is shown exactly as the store's
    edited = await api.client.patch(f"/v1/needs/{posted}", json={"title": "Seagrass nurseries"}, headers={**office, "If-Match": '"1"'})
    assert edited.status_code == 200, edited.text
    assert await ids(api, office, **mine, q="mangrove") == [] and await ids(api, office, **mine, q="seagrass") == [posted]
    assert (await api.client.delete(f"/v1/needs/{posted}", headers=office)).status_code == 200
    assert await ids(api, office, **mine, q="seagrass") == [] and await ids(api, office, **mine) == []
    assert await ids(api, office, **mine, status="withdrawn") == [posted]  # to its owner only
    _, other = await api.org(name="Other office")
    assert await ids(api, other, **mine, status="withdrawn") == []


async def test_pages_from_the_index_equal_the_store_s_for_random_filters_and_callers(search_api: Api) -> None:
    """The index answers lists without reading the store: every filter, every visibility rule and every
    byte of each item must be what the store's own query gives (compared on random filters)."""
    import random

    from services.catalog import service
    from services.catalog.models import ItemListIn
    from ssmatch.auth import Principal

    api = search_api
    rng = random.Random(11)
    org_a, office_a = await api.org(name="Office A", country="MWI")
    org_b, office_b = await api.org(name="Office B", country="SEN")
    sectors, statuses = ["energy", "water_sanitation", "health"], ["open", "open", "open", "draft"]
    made: list[str] = []
    for i in range(24):
        office = office_a if i % 3 else office_b
        made.append(await post_need(api, office, title=f"Solar pumps {rng.choice(['clinic', 'school', 'farm'])} {i}", sectors=rng.sample(sectors, 2),
                                    sdgs=rng.sample([3, 6, 7], 2), languages=[rng.choice(["fr", "en"])], status=rng.choice(statuses)))
    for item_id in made[::5]:  # some withdrawn
        owner = office_b if made.index(item_id) % 3 == 0 else office_a
        assert (await api.client.delete(f"/v1/needs/{item_id}", headers=owner)).status_code == 200

    async def committed() -> bool:
        return not api.app.state.words.staged("need") and api.app.state.words.count("need") >= len(made)

    await until(committed, FRESH_S * 5, "every write committed to the index (no staged copy left)")
    callers = [Principal(role="seeker", organization_id=org_a), Principal(role="seeker", organization_id=org_b),
               Principal(role="broker", organization_id=None), Principal(role="admin", organization_id=None),
               Principal(role="provider", organization_id="someone-else")]
    store_only = service.Catalog(api.app.state.store, api.app.state.catalog.matches)
    options: dict[str, list[Any]] = {"sector": sectors, "sdg": [3, 6, 7], "status": ["open", "draft", "withdrawn"], "language": ["fr", "en"],
                                     "organization_id": [org_a, org_b], "region": ["Africa", "Western Africa"], "country": ["MWI", "SEN"],
                                     "group": ["LDC"], "q": ["solar", "clinic pumps", "school"], "limit": [1, 3, 20]}
    compared = 0
    for _ in range(60):
        params = {k: rng.choice(v) for k, v in options.items() if rng.random() < 0.3}
        caller = rng.choice(callers)
        query = ItemListIn(**params)
        cursor: str | None = None
        for _page in range(4):  # the first pages, by the same cursors
            q = query.model_copy(update={"cursor": cursor})
            indexed = await service.list_items(api.app.state.catalog, caller, "need", q)
            scanned = await service.list_items(store_only, caller, "need", q)
            assert indexed["search"]["words"] == "index" if params.get("q") else "search" not in indexed
            got = [{k: v for k, v in n.items() if k != "search"} for n in jsonable(indexed["items"])]
            assert got == jsonable(scanned["items"]), (params, caller)
            compared += len(got)
            assert indexed["next_cursor"] == scanned["next_cursor"], (params, caller)
            cursor = indexed["next_cursor"]
            if cursor is None:
                break
    assert compared > 100  # not a comparison of empty pages


def jsonable(value: Any) -> Any:
    from services.catalog.api.common import jsonable as as_json

    return as_json(value)


async def test_another_replica_shows_a_write_and_a_withdrawal_within_a_second(search_api: Api, make_settings: Any) -> None:
    """Two catalog processes on one store (the second keeps its index in memory): what one writes, the
    other lists within the freshness bound, through its change stream (staged on delivery, before its commit)."""
    api = search_api
    org, office = await api.org()
    settings = api.app.state.store.db.name
    async with open_api(make_settings(admin_token=ADMIN, catalog_db=settings, matcher_url="http://127.0.0.1:9"), start_search=True, drop=False) as other:
        await ready(other)
        posted = await post_need(api, office, title="Rainwater harvesting for schools")
        t0 = time.monotonic()

        async def listed_there() -> bool:
            return await ids(other, office, organization_id=org, q="rainwater") == [posted]

        await until(listed_there, FRESH_S, "a write made on one replica listed on the other")
        seen_after = time.monotonic() - t0
        assert (await api.client.delete(f"/v1/needs/{posted}", headers=office)).status_code == 200

        async def gone_there() -> bool:
            return await ids(other, office, organization_id=org) == []

        await until(gone_there, FRESH_S, "a withdrawal made on one replica gone from the other")
        assert seen_after < FRESH_S
