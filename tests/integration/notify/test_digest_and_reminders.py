"""Digests and expiry reminders against a real store and a real SMTP server."""

from __future__ import annotations

import asyncio
import email
from datetime import UTC, datetime, timedelta
from email import policy
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller

from services.notify.app import create_app
from ssmatch.auth import hash_token
from ssmatch.events import MatchProposedPayload, make_event
from ssmatch.mongo import make_client
from ssmatch.stack.processes import free_port
from tests.helpers import eventually, uid

pytestmark = [pytest.mark.integration]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
async def notify_env(make_settings: Any) -> Any:
    mailbox = Mailbox()
    port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port, ready_timeout=5)
    smtp.start()
    settings = make_settings(group_prefix=uid("g"), smtp_host="127.0.0.1", smtp_port=port, smtp_security="none",
                             delivery_poll_interval_s=0.2, expiry_scan_interval_s=3600)
    client = make_client(settings.mongodb_uri)
    catalog = client.get_database(settings.catalog_db)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield settings, app, catalog, mailbox
    smtp.stop()
    await client.drop_database(settings.catalog_db)
    await client.drop_database(settings.notify_db)
    await client.close()


async def add_org(catalog: Any, org_type: str, role: str, lang: str, contact_email: str) -> tuple[str, dict[str, str]]:
    org, token = uid("org"), f"ssm_{uid()}{uid()}"
    await catalog["organizations"].insert_one({"_id": org, "name": f"Org {org}", "type": org_type, "country": "SEN", "language": lang,
                                               "contact": {"name": "Awa Diop", "email": contact_email}})
    await catalog["tokens"].insert_one({"_id": hash_token(token), "token_id": uid(), "organization_id": org, "role": role,
                                        "expires_at": None, "revoked_at": None})
    return org, {"Authorization": f"Bearer {token}"}


async def test_proposals_in_digest_mode_arrive_as_one_email_when_the_slot_is_due(notify_env: Any, servers: Any) -> None:
    settings, app, catalog, mailbox = notify_env
    broker, headers = await add_org(catalog, "broker", "broker", "en", "desk@brokers.example")
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify")
    prefs = await api.put("/v1/preferences", json={"channels": ["inbox", "email"], "mode": "digest", "immediate_score_threshold": 0.99}, headers=headers)
    assert prefs.status_code == 200
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap)
    await producer.start()
    tag = uid()
    titles = [f"Need {tag} number {i}" for i in range(3)]
    try:
        for i, title in enumerate(titles):
            mid = f"{tag}n{i}.{tag}f{i}"
            p = MatchProposedPayload(match_id=mid, need_id=f"{tag}n{i}", offer_id=f"{tag}f{i}", need_organization_id="o", offer_organization_id="p",
                                     need_title=title, offer_title=f"Offer {i}", score=0.7, explanation={"components": {"semantic": 0.5}},
                                     rules_version="1", need_revision=1, offer_revision=1)
            await producer.send_and_wait("ssmatch.matches", key=mid.encode(), value=make_event("match.proposed", "match", mid, p, producer="t").to_bytes())
        deliveries = app.state.worker.deliveries.coll
        # the topic is shared with other tests: this broker also hears of their proposals; keep ours
        mine = {"organization_id": broker, "match_id": {"$regex": f"^{tag}"}}

        async def planned() -> int:
            n = await deliveries.count_documents({**mine, "digest": True})
            return n if n == 3 else 0

        await eventually(planned, timeout=90)  # a new group first reads the shared topics' history
        inbox = (await api.get("/v1/notifications", params={"limit": 100}, headers=headers)).json()["items"]
        inbox = [n for n in inbox if n["match_id"].startswith(tag)]
        assert len([n for n in inbox if n["kind"] == "match_proposed"]) == 3  # the inbox does not wait for the digest
        await asyncio.sleep(0.6)
        assert ours(mailbox, tag) == []  # not before its slot
        await deliveries.update_many(mine, {"$set": {"deliver_at": datetime.now(UTC) - timedelta(seconds=1)}})
        app.state.worker.wake()
        async def digest_sent() -> list[str]:
            return ours(mailbox, tag)

        await eventually(digest_sent, timeout=20)
        await asyncio.sleep(0.6)
        texts = ours(mailbox, tag)
        assert len(texts) == 1  # one message for the three proposals
        assert all(title in texts[0] for title in titles)
        assert await deliveries.count_documents({**mine, "status": "sent"}) == 3
    finally:
        await producer.stop()
        await api.aclose()


def ours(mailbox: Mailbox, tag: str) -> list[str]:
    """Plain-text bodies of the messages about this test's matches (other tests' events reach the broker too)."""
    texts = [m.get_body(preferencelist=("plain",)).get_content() for m in mailbox.messages]
    return [t for t in texts if tag in t]


async def _count(mailbox: Mailbox) -> int:
    return len(mailbox.messages)


async def test_owners_are_reminded_once_before_an_item_expires_in_their_language(notify_env: Any) -> None:
    settings, app, catalog, mailbox = notify_env
    owner, headers = await add_org(catalog, "country_office", "seeker", "fr", "awa@agri.example.sn")
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify")
    await api.put("/v1/preferences", json={"channels": ["inbox", "email"], "language": "fr"}, headers=headers)
    now = datetime.now(UTC)
    base = {"organization_id": owner, "kind": "need"}
    await catalog["needs"].insert_many([
        {**base, "_id": uid("soon"), "title": "Semences résistantes à la sécheresse", "status": "open", "expires_at": now + timedelta(days=3)},
        {**base, "_id": uid("later"), "title": "Plus tard", "status": "open", "expires_at": now + timedelta(days=30)},
        {**base, "_id": uid("past"), "title": "Déjà expiré", "status": "open", "expires_at": now - timedelta(days=1)},
        {**base, "_id": uid("gone"), "title": "Retiré", "status": "withdrawn", "expires_at": now + timedelta(days=2)},
    ])
    reminder = app.state.reminder
    assert await reminder.scan_once() == 1
    assert await reminder.scan_once() == 0  # a re-scan alerts no one twice
    inbox = (await api.get("/v1/notifications", headers=headers)).json()["items"]
    assert [(n["kind"], n["data"]["item_title"], n["data"]["days"]) for n in inbox] == [("expiry_reminder", "Semences résistantes à la sécheresse", 3)]
    await eventually(lambda: _count(mailbox), timeout=20)
    await asyncio.sleep(0.5)
    assert len(mailbox.messages) == 1
    message = mailbox.messages[0]
    assert message["To"] == "awa@agri.example.sn"
    assert "Semences résistantes à la sécheresse" in message.get_body(preferencelist=("plain",)).get_content()
    await api.aclose()
