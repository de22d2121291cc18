"""Inbox idempotency against a real MongoDB."""

from __future__ import annotations

from typing import Any

import pytest

from services.notify.inbox import InboxStore
from services.notify.rules import Alert
from ssmatch.mongo import make_client

pytestmark = pytest.mark.integration


@pytest.fixture
async def inbox(make_settings: Any) -> Any:
    settings = make_settings()
    client = make_client(settings.mongodb_uri)
    store = InboxStore(client, settings.notify_db)
    await store.init()
    yield store
    await client.drop_database(settings.notify_db)
    await client.close()


async def test_same_fact_for_same_recipient_is_stored_once(inbox: InboxStore) -> None:
    alerts = [Alert("o1", "match_approved", "n.f", "match_decided:n.f", {}), Alert("o2", "match_approved", "n.f", "match_decided:n.f", {})]
    assert await inbox.add(alerts, "e1") == 2
    assert await inbox.add(alerts, "e1") == 0
    assert await inbox.add([*alerts[:1], Alert("o3", "match_approved", "n.f", "match_decided:n.f", {})], "e2") == 1
    assert len(await inbox.list_for("o1", 10)) == 1


async def test_unread_count_and_mark_read_are_per_organization(inbox: InboxStore) -> None:
    await inbox.add([Alert("o1", "match_proposed", "a.b", "k1", {}), Alert("o1", "match_proposed", "c.d", "k2", {})], "e")
    assert await inbox.unread_count("o1") == 2
    newest = (await inbox.list_for("o1", 10))[0]
    assert newest["match_id"] == "c.d"
    assert not await inbox.mark_read("someone-else", newest["_id"])
    assert await inbox.mark_read("o1", newest["_id"])
    assert await inbox.unread_count("o1") == 1
