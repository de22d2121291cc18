"""The matcher's service layer: whatever the order of events, the number of workers, a lost send
or a replay, the catalog's open proposals equal the oracle (the union of every item's top-K)."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from services.matcher.candidates import CandidateConfig, KindTable
from services.matcher.lists import ListBook, oracle, rank_key
from ssmatch.events import ItemWithdrawnPayload
from tests.helpers import item_payload
from tests.unit.matcher.conftest import CENTRING, direction, make_rules


def item(kind: str, title: str, **kw: Any) -> Any:
    return item_payload(kind, id=title, title=title, description="", keywords=[], text_language="en", **kw)


async def test_a_better_offer_arriving_late_enters_the_list_of_an_older_need(cluster_factory: Any) -> None:
    """Issue 9's case: n0 is scored against a weak offer, two more needs arrive, then a perfect
    offer for n0 whose own top-2 are the two newer needs. n0 must still get it."""
    vectors = {
        "n0": direction({0: 1.0}),
        "oweak": direction({0: 0.2, 5: 1.0}),
        "n1": direction({1: 1.0}),
        "n2": direction({2: 1.0}),
        "obest": direction({0: 1.0, 1: 1.2, 2: 1.2, 9: 2.0}),
    }
    cluster = cluster_factory(workers=1, vectors=vectors)
    for title in ("n0", "oweak", "n1", "n2", "obest"):
        await cluster.deliver(item("need" if title.startswith("n") else "offer", title))
    best = cluster.workers[0].book.top_k(("offer", "obest"))
    assert list(best) == ["n1", "n2"], "the scenario needs obest's own top-2 to be the newer needs"
    assert ("n0", "obest") in cluster.catalog.proposed()
    assert cluster.catalog.proposed() == oracle(cluster.final_docs(), cluster.rules, CENTRING.centroids)


def random_events(rng: random.Random, n_items: int, n_events: int) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Publishes, rewrites (new text or sectors) and withdrawals of random items, in random order."""
    vectors: dict[str, np.ndarray] = {}
    revisions: dict[str, int] = {}
    kinds = {f"{'n' if i % 2 == 0 else 'o'}{i}": ("need" if i % 2 == 0 else "offer") for i in range(n_items)}
    events: list[Any] = []
    for _ in range(n_events):
        item_id = rng.choice(list(kinds))
        rev = revisions.get(item_id, 0) + 1
        if rev > 1 and rng.random() < 0.15:
            events.append(ItemWithdrawnPayload(id=item_id, kind=kinds[item_id], organization_id=f"org-{item_id}", revision=rev))  # type: ignore[arg-type]
            revisions[item_id] = 10_000  # never comes back
            continue
        if rev > 10_000:
            continue
        title = f"{item_id}v{rev}"
        vectors[title] = direction({rng.randrange(6): 1.0, rng.randrange(6): rng.random()})
        sectors = rng.choice([["agriculture"], ["health"], ["agriculture", "water_sanitation"]])
        events.append(item(kinds[item_id], title, revision=rev, organization_id=f"org-{item_id}", sectors=sectors).model_copy(update={"id": item_id}))
        revisions[item_id] = rev
    return events, vectors


async def test_random_interleavings_with_three_workers_equal_the_oracle(cluster_factory: Any) -> None:
    for seed in range(3):
        rng = random.Random(seed)
        events, vectors = random_events(rng, n_items=24, n_events=80)
        cluster = cluster_factory(workers=3, rules=make_rules(top_k=2, min_score=0.2), vectors=vectors)
        for event in events:
            await cluster.deliver(event)
        assert cluster.catalog.proposed() == oracle(cluster.final_docs(), cluster.rules, CENTRING.centroids), f"seed {seed}"


async def test_the_ann_path_with_every_item_a_candidate_equals_the_oracle(cluster_factory: Any) -> None:
    """The ANN index kept up to date through publishes, rewrites and withdrawals on three workers: with
    enough candidates it must give exactly the exact oracle (a stale or missing row would show)."""
    rng = random.Random(11)
    events, vectors = random_events(rng, n_items=44, n_events=120)
    config = CandidateConfig(candidates=12, exact_below=0, scan_below=0)
    cluster = cluster_factory(workers=3, rules=make_rules(top_k=2, min_score=0.2), vectors=vectors, config=config)
    for event in events:
        await cluster.deliver(event)
    assert all(w.index.tables[k]._ann is not None for w in cluster.workers for k in ("need", "offer")), "the ANN path was not taken"
    assert cluster.catalog.proposed() == oracle(cluster.final_docs(), cluster.rules, CENTRING.centroids)


async def test_the_scan_path_settling_batches_equals_the_oracle(cluster_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Candidates from scans, found for a whole batch at once (`ListBook.prefetch`), two a list, the rest
    reached by the scan's step down to the cosine that can still reach the K-th score: on three workers
    settling batches of events, the lists must be exactly the oracle's."""
    rng = random.Random(23)
    events, vectors = random_events(rng, n_items=60, n_events=160)
    config = CandidateConfig(candidates=2, exact_below=0, widen=5)  # limit 2 × 4⁵: every near item reachable
    batched: list[int] = []
    stepped: list[int] = []
    prefetch, scan_from = KindTable.prefetch_scans, KindTable.scan_from
    monkeypatch.setattr(KindTable, "prefetch_scans", lambda self, queries, centroids: (batched.append(len(queries)), prefetch(self, queries, centroids))[1])
    monkeypatch.setattr(KindTable, "scan_from", lambda self, *a: (stepped.append(1), scan_from(self, *a))[1])
    cluster = cluster_factory(workers=3, rules=make_rules(top_k=2, min_score=0.2), vectors=vectors, config=config)
    for start in range(0, len(events), 8):
        await cluster.deliver_batch(events[start:start + 8])
    assert max(batched, default=0) > 1 and stepped, "the batched scan and the scan's step were not both taken"
    assert all(w.index.tables[k]._ann is None for w in cluster.workers for k in ("need", "offer"))
    assert cluster.catalog.proposed() == oracle(cluster.final_docs(), cluster.rules, CENTRING.centroids)


async def test_a_step_stored_but_not_sent_is_sent_by_the_next_owner_with_the_same_ids(cluster_factory: Any) -> None:
    vectors = {"n0": direction({0: 1.0}), "o0": direction({0: 1.0, 1: 0.5})}
    cluster = cluster_factory(workers=1, vectors=vectors)
    await cluster.deliver(item("need", "n0"))
    cluster.fail_next_send.append(1)
    worker = cluster.workers[0]
    keys = await worker.ingest([item("offer", "o0")])
    with contextlib.suppress(ConnectionError):
        await worker.settle(keys)
    assert cluster.catalog.proposed() == set()
    # the worker dies; a new one (same store) takes the lists over and completes the step
    cluster.workers.clear()
    fresh = cluster.add_worker(lambda *_: True)
    await fresh.load()
    await fresh.reconcile()
    assert cluster.catalog.proposed() == {("n0", "o0")}
    ids = list(cluster.catalog.event_ids)
    # replaying every input changes nothing and emits nothing new
    await cluster.deliver(item("need", "n0"))
    await cluster.deliver(item("offer", "o0"))
    await fresh.reconcile()
    assert cluster.catalog.event_ids == ids


async def test_withdrawn_items_leave_every_list_and_are_never_proposed_again(cluster_factory: Any) -> None:
    vectors = {t: direction({0: 1.0, i + 1: 0.3}) for i, t in enumerate(["n0", "n1", "o0", "o1"])}
    cluster = cluster_factory(workers=2, vectors=vectors)
    for t in ("n0", "n1", "o0", "o1"):
        await cluster.deliver(item("need" if t.startswith("n") else "offer", t))
    assert {p for p in cluster.catalog.proposed() if "o0" in p} == {("n0", "o0"), ("n1", "o0")}
    await cluster.deliver(ItemWithdrawnPayload(id="o0", kind="offer", organization_id="x", revision=2))
    # a late, stale re-delivery of o0's publication changes nothing
    await cluster.deliver(item("offer", "o0"))
    assert not {p for p in cluster.catalog.proposed() if "o0" in p}
    assert cluster.catalog.proposed() == oracle(cluster.final_docs(), cluster.rules, CENTRING.centroids)


async def test_expired_items_lose_their_proposals_without_an_event(cluster_factory: Any) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    vectors = {"n0": direction({0: 1.0}), "o0": direction({0: 1.0, 1: 0.2})}
    cluster = cluster_factory(workers=1, vectors=vectors)
    await cluster.deliver(item("need", "n0", expires_at=soon))
    await cluster.deliver(item("offer", "o0"))
    assert cluster.catalog.proposed() == {("n0", "o0")}
    assert await cluster.workers[0].expire_due(datetime.now(UTC)) == 0
    assert await cluster.workers[0].expire_due(soon + timedelta(seconds=1)) > 0
    assert cluster.catalog.proposed() == set()


async def test_a_rules_change_rescores_every_list(cluster_factory: Any) -> None:
    vectors = {t: direction({0: 1.0, i + 1: 0.4}) for i, t in enumerate(["n0", "n1", "n2", "o0", "o1"])}
    cluster = cluster_factory(workers=1, rules=make_rules(top_k=2), vectors=vectors)
    for t in vectors:
        await cluster.deliver(item("need" if t.startswith("n") else "offer", t))
    # the worker restarts with top_k = 1 and a new rules version
    new_rules = make_rules(top_k=1).model_copy(update={"version": "test-2"})
    cluster.workers.clear()
    cluster.rules = new_rules
    fresh = cluster.add_worker(lambda *_: True)
    await fresh.load()
    await fresh.reconcile()
    assert cluster.catalog.proposed() == oracle(cluster.final_docs(), new_rules, CENTRING.centroids)
    assert all(m["rules_version"] == "test-2" for m in cluster.catalog.matches.values() if m["status"] == "proposed")


async def test_lists_derived_from_fresh_scores_equal_lists_recomputed_after_every_event(cluster_factory: Any) -> None:
    """`ListBook.updated` (a list derived from what it was and the changed items' fresh scores) against
    a recomputation from scratch, after every single event of random interleavings: they must agree,
    and most lists must take the cheap path (else the derivation is not doing its job)."""
    for seed in range(3):
        rng = random.Random(100 + seed)
        events, vectors = random_events(rng, n_items=30, n_events=70)
        cluster = cluster_factory(workers=1, rules=make_rules(top_k=3, min_score=0.2), vectors=vectors)
        worker = cluster.workers[0]
        book = worker.book
        # a second book over the same index that owns nothing: it recomputes without touching any pool
        checker = ListBook(book.index, book.rules, book.centroids, owns=lambda *_: False, config=book.config)
        for n, event in enumerate(events):
            await cluster.deliver(event)
            for key, state in list(book.lists.items()):
                assert state.entries == checker.top_k(key), f"seed {seed}, event {n}: list {key} drifted"
                # the pool (the sent entries and the reserve behind them) is the true ranking down to its bound
                ids, scores, _ = checker._scores(*key, datetime.now(UTC), lambda _, rows: np.full(len(rows), -np.inf))
                truth = sorted(rank_key(float(scores[j]), ids[j]) for j in np.flatnonzero(scores >= 0))
                pool = book._pools[key]
                held = sorted(rank_key(score, oid) for oid, score in pool.scores.items())
                assert held == [r for r in truth if pool.bound is None or r <= pool.bound][: book.keep], f"seed {seed}, event {n}: pool {key}"
        assert book.derived > 3 * book.recomputed, (book.derived, book.recomputed)  # the reserve replaces members that leave
        assert cluster.catalog.proposed() == oracle(cluster.final_docs(), cluster.rules, CENTRING.centroids), f"seed {seed}"


async def test_the_change_stream_echo_of_an_item_this_worker_is_storing_is_left_to_the_batch_that_stores_it(cluster_factory: Any) -> None:
    vectors = {"n0": direction({0: 1.0}), "o0": direction({0: 1.0, 1: 0.5})}
    cluster = cluster_factory(workers=1, vectors=vectors)
    worker = cluster.workers[0]
    await cluster.deliver(item("need", "n0"))
    settled: list[list[Any]] = []
    settle = worker.settle

    async def counting_settle(keys: list[Any], now: Any = None) -> int:
        settled.append(list(keys))
        return await settle(keys, now)

    worker.settle = counting_settle  # type: ignore[method-assign]
    put_items = cluster.store.put_items

    async def echoing_put_items(docs: list[dict[str, Any]]) -> list[bool]:
        stored = await put_items(docs)
        for doc in docs:  # the change stream reports the write before the batch has indexed it
            await worker.on_stored({**doc})
        return stored

    cluster.store.put_items = echoing_put_items  # type: ignore[method-assign]
    keys = await worker.ingest([item("offer", "o0")])
    await worker.settle(keys)
    assert settled == [[("offer", "o0")]]  # once, by the batch: the echo neither indexed nor settled it
    assert cluster.catalog.proposed() == {("n0", "o0")}
    # another worker's write of a newer revision is news, and is settled from its echo
    newer = {**(await cluster.store.get_item("o0")), "revision": 2}  # type: ignore[dict-item]
    await worker.on_stored(newer)
    assert settled[-1] == [("offer", "o0")] and len(settled) == 2


async def test_a_sent_step_is_marked_off_the_batch_path_and_a_failed_mark_only_repeats_the_same_events(cluster_factory: Any) -> None:
    vectors = {"n0": direction({0: 1.0}), "o0": direction({0: 1.0, 1: 0.5})}
    cluster = cluster_factory(workers=1, vectors=vectors)
    worker = cluster.workers[0]
    await cluster.deliver(item("need", "n0"))
    await worker.flush_marks()
    assert all(not pending for _, pending in cluster.store.lists.values())

    async def refuse(steps: list[Any]) -> None:
        raise ConnectionError("store blip")

    cluster.store.mark_sents = refuse  # type: ignore[method-assign]
    keys = await worker.ingest([item("offer", "o0")])
    await worker.settle(keys)  # the refusal is not the batch's failure: its events were sent
    await worker.flush_marks()
    assert cluster.catalog.proposed() == {("n0", "o0")}
    ids = list(cluster.catalog.event_ids)
    assert any(pending for _, pending in cluster.store.lists.values())
    # the next owner sends the unmarked step again, with the same event ids
    cluster.workers.clear()
    fresh = cluster.add_worker(lambda *_: True)
    await fresh.load()
    await fresh.reconcile()
    assert cluster.catalog.proposed() == {("n0", "o0")}
    assert set(cluster.catalog.event_ids) == set(ids) and len(cluster.catalog.event_ids) > len(ids)
