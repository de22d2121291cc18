"""One word-index directory has one owning process: two catalog processes given the same directory (one
store, one host) used to wipe and rebuild it under each other at start-up, and the loser of that race
failed to start. A second process now keeps its own index in memory and leaves the owner's files alone."""

from __future__ import annotations

import multiprocessing
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.catalog.adapters.word_index import WordIndex
from services.catalog.domain.search import analyse_query
from tests.unit.catalog.test_word_index_order import item, object_ids

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _found(index: WordIndex, q: str) -> set[str]:
    return {h.id for h in index.search("need", analyse_query(q), {}, mode="any", limit=1000)}


def test_a_second_index_on_an_owned_directory_stays_in_memory_and_leaves_the_owners_files(tmp_path: Path) -> None:
    rng = random.Random(7)
    docs = [{**item(i, rng), "status": "open", "title": "solar pumps"} for i in object_ids(rng)[:40]]
    path = tmp_path / "catalog_db"
    owner = WordIndex(path)
    owner.apply(docs, NOW)
    assert owner.persistent and owner.watermark == NOW
    files = sorted(p.name for p in path.iterdir())

    second = WordIndex(path)
    assert not second.persistent and second.path is None and second.watermark is None  # rebuilt from the store by its sync
    second.apply(docs[:3], NOW)
    assert sorted(p.name for p in path.iterdir()) == files  # nothing wiped, nothing written by the second
    assert _found(owner, "solar") == {d["_id"] for d in docs}
    assert _found(second, "solar") == {d["_id"] for d in docs[:3]}

    owner.close()
    second.close()
    reopened = WordIndex(path)  # the directory is free again: reused as it was, not rebuilt
    assert reopened.persistent and not reopened.rebuilt and reopened.watermark == NOW
    assert _found(reopened, "solar") == {d["_id"] for d in docs}
    reopened.close()


def _start(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    index = WordIndex(Path(path))
    index.apply([{**item(f"{index.persistent:d}-{multiprocessing.current_process().pid}", random.Random(1)), "status": "open"}], NOW)
    results.put(index.persistent)
    barrier.wait()  # every process holds its index until all have opened theirs
    index.close()


def test_processes_starting_at_once_on_one_directory_all_start_and_one_owns_it(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        path = tmp_path / f"db{attempt}"
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_start, args=(str(path), barrier, results)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]  # none failed to open its index
        owned = [results.get(timeout=5) for _ in procs]
        assert owned.count(True) == 1, owned
