"""The embedded store aborts a transaction whose client died, so the store never wedges.

A client killed inside a transaction left its row locks held for good: the next write to such a row
waited, a `dropDatabase` waited behind it holding the store-wide lock, and every later request of
every client waited too (two CI runs ended at their time limit this way). `ssmatch/stack/secantus_main.py`
aborts transactions idle past their lifetime on a timer, as mongod does.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from ssmatch.stack.embedded import mongo_uri, start_secantus
from ssmatch.stack.processes import Child, free_port, stop_all

pytestmark = pytest.mark.integration

LIFETIME_S = 3

ABANDON = """
import os, sys
from pymongo import MongoClient
client = MongoClient(sys.argv[1])
client.X.c.insert_one({"_id": 0})
session = client.start_session()
session.start_transaction()
client.X.c.insert_one({"_id": 1}, session=session)
client.X.c.update_one({"_id": 0}, {"$set": {"by": "the dead transaction"}}, session=session)
os._exit(0)  # dies inside the transaction: no commit, no abort
"""


@pytest.fixture
def short_lived_store(tmp_path: Path) -> Iterator[tuple[str, Child]]:
    """A store of its own, whose transactions live LIFETIME_S idle seconds (the default is 15)."""
    port = free_port()
    child = start_secantus(port, tmp_path / "mongo", tmp_path / "logs", env={"SSMATCH_STORE_TXN_LIFETIME_S": str(LIFETIME_S)})
    try:
        yield mongo_uri(port), child
    finally:
        stop_all([child], grace_s=5)


def test_a_transaction_whose_client_died_is_aborted_and_the_store_keeps_answering(short_lived_store: tuple[str, Child]) -> None:
    uri, child = short_lived_store
    subprocess.run([sys.executable, "-c", ABANDON, uri], check=True, timeout=60)
    outcomes: dict[str, tuple[str, float]] = {}

    def run(name: str, client: MongoClient[dict[str, Any]], work: Any) -> None:
        started = time.monotonic()
        try:
            work(client)
            outcomes[name] = ("ok", time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            outcomes[name] = (f"{type(exc).__name__}: {exc}", time.monotonic() - started)

    # bounded: without the reaper each of these waited for good
    bound_ms = (LIFETIME_S + 15) * 1000
    with MongoClient[dict[str, Any]](uri, socketTimeoutMS=bound_ms, retryWrites=False) as client:
        held = threading.Thread(target=run, args=("write to the held row", client, lambda c: c.X.c.update_one({"_id": 0}, {"$set": {"by": "a live client"}})))
        drop = threading.Thread(target=run, args=("drop its database", client, lambda c: c.drop_database("X")))
        held.start()
        time.sleep(0.5)  # the ordering that wedged: the drop comes while the write waits
        drop.start()
        run("write elsewhere", client, lambda c: c.Y.c.insert_one({"a": 1}))
        held.join()
        drop.join()
        assert {name: outcome for name, (outcome, _) in outcomes.items()} == {
            "write to the held row": "ok", "drop its database": "ok", "write elsewhere": "ok",
        }, outcomes
        assert all(seconds < LIFETIME_S + 10 for _, seconds in outcomes.values()), outcomes
        assert client.X.c.count_documents({}) == 0  # dropped; the dead transaction's insert never landed
        assert client.Y.c.count_documents({}) == 1
    assert "aborted 1 transaction(s) idle" in child.log_path.read_text()
