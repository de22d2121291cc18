"""Digest e-mails against the real store and a real SMTP server (aiosmtpd).

End to end: proposals for brokers in digest mode reach their inboxes at once and their mailboxes as
ONE e-mail per broker when the slot is due. Worker level (no Kafka): a digest is re-sent after a
crash between send and mark, but a record marked sent is never part of a later digest, and an SMTP
refusal applies the retry / fail logic to every record of the digest.
"""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import policy
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller

from services.notify.app import create_app
from services.notify.delivery import DeliveryStore, DeliveryWorker
from services.notify.subscriptions import SubscriptionStore
from ssmatch.events import MatchProposedPayload, make_event
from ssmatch.mongo import make_client
from ssmatch.stack.processes import free_port
from tests.helpers import eventually, uid
from tests.integration.notify.conftest import Catalog, Org, known_to_notify, running_catalog

pytestmark = [pytest.mark.integration]


class Mailbox:
    """Accepts every message, or answers `reply` (e.g. "451 ...") while it is set."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.reply: str | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reply:
            return self.reply
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def texts(self, tag: str, to: str | None = None) -> list[str]:
        """Plain-text bodies mentioning `tag` (other tests' proposals reach these brokers too)."""
        out = []
        for m in self.messages:
            text = m.get_body(preferencelist=("plain",)).get_content()
            if tag in text and (to is None or m["To"] == to):
                out.append(text)
        return out


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Mailbox, int]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, ready_timeout=5)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


async def add_broker(catalog: Catalog, address: str, lang: str = "en") -> Org:
    return await catalog.org("broker", country="ZAF", language=lang, contact={"name": "Thandi Nkosi", "email": address})


async def test_three_proposals_in_digest_mode_make_one_email_per_broker_once_the_slot_is_due(
    make_settings: Any, servers: Any, smtp: tuple[Mailbox, int]
) -> None:
    mailbox, port = smtp
    settings = make_settings(group_prefix=uid("g"), smtp_host="127.0.0.1", smtp_port=port, smtp_security="none",
                             delivery_poll_interval_s=0.1, expiry_scan_interval_s=3600)
    client = make_client(settings.mongodb_uri)
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap)
    await producer.start()
    tag = uid()
    titles = [f"Seed systems {tag} #{i}" for i in range(3)]
    try:
        async with running_catalog(settings) as catalog:
            d, o = await add_broker(catalog, "desk@brokers.example"), await add_broker(catalog, "other@brokers.example", lang="fr")
            desk, desk_h, other, other_h = d.id, d.headers, o.id, o.headers
            app = create_app(settings, catalog_http=catalog.client)
            async with app.router.lifespan_context(app):
                await known_to_notify(app, d, o)
                await digest_scenario(app, producer, tag, titles, desk, desk_h, other, other_h, mailbox)
    finally:
        await producer.stop()
        await client.drop_database(settings.notify_db)
        await client.close()


async def digest_scenario(app: Any, producer: Any, tag: str, titles: list[str], desk: str, desk_h: dict[str, str], other: str,
                          other_h: dict[str, str], mailbox: Any) -> None:
    """Three proposals to two brokers in digest mode, through to the two digest e-mails."""
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify")
    digest_prefs = {"channels": ["inbox", "email"], "mode": "digest", "immediate_score_threshold": 0.99}
    assert (await api.put("/v1/preferences", json=digest_prefs, headers=desk_h)).status_code == 200
    assert (await api.put("/v1/preferences", json={**digest_prefs, "language": "fr"}, headers=other_h)).status_code == 200
    for i, title in enumerate(titles):
        mid = f"{tag}n{i}.{tag}f{i}"
        p = MatchProposedPayload(match_id=mid, need_id=f"{tag}n{i}", offer_id=f"{tag}f{i}", need_organization_id="o",
                                 offer_organization_id="p", need_title=title, offer_title=f"Training offer {i}", score=0.6 + i / 10,
                                 explanation={"components": {"semantic": 0.4, "sectors": 0.2}}, rules_version="1",
                                 need_revision=1, offer_revision=1)
        event = make_event("match.proposed", "match", mid, p, producer="test").to_bytes()
        await producer.send_and_wait("ssmatch.matches", key=mid.encode(), value=event)
    deliveries = app.state.worker.deliveries.coll
    mine = {"organization_id": {"$in": [desk, other]}, "match_id": {"$regex": f"^{tag}"}, "channel": "email"}

    async def planned() -> int:
        n = await deliveries.count_documents({**mine, "digest": True, "status": "pending"})
        return n if n == 6 else 0

    await eventually(planned, timeout=90)
    # the inbox does not wait for the digest
    for h in (desk_h, other_h):
        items = (await api.get("/v1/notifications", params={"limit": 100}, headers=h)).json()["items"]
        assert sorted(n["match_id"] for n in items if n["match_id"].startswith(tag)) == [f"{tag}n{i}.{tag}f{i}" for i in range(3)]
    slots = await deliveries.distinct("deliver_at", mine)
    assert all(s > datetime.now(UTC) for s in slots)  # planned for a later slot ...
    await asyncio.sleep(0.5)
    assert mailbox.texts(tag) == []  # ... and not sent before it

    await deliveries.update_many(mine, {"$set": {"deliver_at": datetime.now(UTC) - timedelta(seconds=1)}})
    app.state.worker.wake()

    async def both_sent() -> int:
        return await deliveries.count_documents({**mine, "status": "sent"}) == 6

    await eventually(both_sent, timeout=60)
    await asyncio.sleep(0.5)  # time for any extra message to show up
    for address, greeting in (("desk@brokers.example", "3 proposed matches"), ("other@brokers.example", "3 mises en relation")):
        texts = mailbox.texts(tag, to=address)
        assert len(texts) == 1, f"{address}: {len(texts)} messages"
        assert all(texts[0].count(title) == 1 for title in titles)
        assert greeting in texts[0]
        assert texts[0].index(titles[2]) < texts[0].index(titles[0])  # best score first
    assert len(mailbox.texts(tag)) == 2
    # brokers also get other tests' immediate alerts (shared topics): count the digests only
    ids = {m["Message-ID"] for m in mailbox.messages
           if m["To"] in ("desk@brokers.example", "other@brokers.example") and m["Message-ID"].startswith("<digest.")}
    assert len(ids) == 2
    assert app.state.worker.sent_total >= 6
    await api.aclose()


def digest_record(org: str, target: str, tag: str, i: int, due: datetime) -> dict[str, Any]:
    mid = f"{tag}n{i}.{tag}f{i}"
    return {
        "_id": f"match_proposed:{mid}:{org}:email", "organization_id": org, "kind": "match_proposed", "match_id": mid, "event_id": uid(),
        "status": "pending", "attempts": 0, "created_at": due, "lease_until": None, "source": {}, "channel": "email", "target": target,
        "language": "en", "digest": True, "payload": {"match_id": mid}, "deliver_at": due,
        "context": {"need_title": f"Need {tag} {i}", "offer_title": f"Offer {tag} {i}", "score": 0.5 + i / 100,
                    "explanation": {"components": {"semantic": 0.5}}, "url": f"http://cat/v1/matches/{mid}", "recipient_name": "Desk"},
    }


@pytest.fixture
async def worker_env(make_settings: Any, smtp: tuple[Mailbox, int]) -> AsyncIterator[tuple[DeliveryWorker, DeliveryStore, Mailbox]]:
    mailbox, port = smtp
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none", delivery_poll_interval_s=0.1)
    client = make_client(settings.mongodb_uri)
    store = DeliveryStore(client, settings.notify_db)
    await store.init()
    worker = DeliveryWorker(settings, store, SubscriptionStore(client, settings.notify_db))
    try:
        yield worker, store, mailbox
    finally:
        await worker.stop()
        await client.drop_database(settings.notify_db)
        await client.close()


async def test_a_digest_is_resent_after_a_crash_but_a_sent_record_is_never_in_a_later_digest(
    worker_env: tuple[DeliveryWorker, DeliveryStore, Mailbox],
) -> None:
    worker, store, mailbox = worker_env
    tag, org, to = uid(), uid("brk"), "desk@brokers.example"
    past = datetime.now(UTC) - timedelta(seconds=5)
    await store.add_many([digest_record(org, to, tag, i, past) for i in range(2)])
    # a worker claimed both and died (before or after sending: it never marked them)
    crashed = await store.claim_due(100)
    assert sorted(d["_id"] for d in crashed) == sorted(d["_id"] for d in [digest_record(org, to, tag, i, past) for i in range(2)])
    assert await store.claim_due(100) == []  # leased: no one else takes them meanwhile
    await store.coll.update_many({"organization_id": org}, {"$set": {"lease_until": past}})  # the lease runs out

    worker.start()

    async def sent() -> bool:
        return await store.coll.count_documents({"organization_id": org, "status": "sent"}) == 2

    await eventually(sent, timeout=60)
    assert len(mailbox.texts(tag)) == 1 and all(f"Need {tag} {i}" in mailbox.texts(tag)[0] for i in range(2))

    # the crashed worker comes back and reports a transient failure under its old claim: ignored
    for d in crashed:
        assert await store.finish(d["_id"], "pending", 1, "stale", datetime.now(UTC) - timedelta(seconds=1), claim=d["claim"]) is False
    assert await store.coll.count_documents({"organization_id": org, "status": "sent"}) == 2

    # a later proposal of the same slot: a digest of its own, without the records already sent
    await store.add_many([digest_record(org, to, tag, 2, datetime.now(UTC) - timedelta(seconds=1))])
    worker.wake()

    async def third_sent() -> bool:
        return await store.coll.count_documents({"organization_id": org, "status": "sent"}) == 3

    await eventually(third_sent, timeout=60)
    await asyncio.sleep(0.4)
    texts = mailbox.texts(tag)
    assert len(texts) == 2
    assert f"Need {tag} 2" in texts[1] and f"Need {tag} 0" not in texts[1] and f"Need {tag} 1" not in texts[1]
    assert sum(t.count(f"Need {tag} 0") for t in texts) == 1


async def test_a_refused_digest_is_retried_for_every_record_and_a_permanent_refusal_fails_them_all(
    worker_env: tuple[DeliveryWorker, DeliveryStore, Mailbox],
) -> None:
    worker, store, mailbox = worker_env
    tag, org, to = uid(), uid("brk"), "desk@brokers.example"
    past = datetime.now(UTC) - timedelta(seconds=5)
    await store.add_many([digest_record(org, to, tag, i, past) for i in range(3)])
    mailbox.reply = "451 4.3.0 try again later"
    worker.start()

    async def retrying() -> list[dict[str, Any]]:
        docs = await store.coll.find({"organization_id": org}).to_list(10)
        return docs if all(d["status"] == "pending" and d["attempts"] == 1 for d in docs) else []

    docs = await eventually(retrying, timeout=60)
    assert all(d["deliver_at"] > datetime.now(UTC) and "451" in d["last_error"] for d in docs)
    assert mailbox.messages == []

    mailbox.reply = None  # the relay is back; the retry time comes
    await store.coll.update_many({"organization_id": org}, {"$set": {"deliver_at": past}})
    worker.wake()

    async def sent() -> list[dict[str, Any]]:
        docs = await store.coll.find({"organization_id": org, "status": "sent"}).to_list(10)
        return docs if len(docs) == 3 else []

    docs = await eventually(sent, timeout=60)
    assert {d["attempts"] for d in docs} == {2}
    assert len(mailbox.texts(tag)) == 1

    # a permanent refusal: every record of the digest fails for good
    mailbox.reply = "550 5.1.1 no such mailbox"
    await store.add_many([digest_record(org, "gone@brokers.example", tag, i, past) for i in range(3, 5)])
    worker.wake()

    async def failed() -> list[dict[str, Any]]:
        docs = await store.coll.find({"organization_id": org, "status": "failed"}).to_list(10)
        return docs if len(docs) == 2 else []

    docs = await eventually(failed, timeout=60)
    assert all("550" in d["last_error"] and d["target"] == "gone@brokers.example" for d in docs)
    # the worker counts a failure after its store write: the count can trail what the store shows
    await eventually(lambda: asyncio.sleep(0, result=worker.failed_total == 2), timeout=10)
