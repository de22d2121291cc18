"""Expiry reminders against the real store and a real SMTP server (aiosmtpd), through notify's app
(the reminder is started by its lifespan; its e-mails go out through the delivery worker)."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email import policy
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from services.notify.app import create_app
from ssmatch.events import make_event
from ssmatch.mongo import make_client
from ssmatch.stack.processes import free_port
from tests.helpers import eventually, item_payload, uid
from tests.integration.notify.conftest import Catalog, known_to_notify, running_catalog

pytestmark = [pytest.mark.integration]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def env_factory(make_settings: Any) -> Any:
    """An app (lifespan entered) on its own databases, with a real SMTP server; the reminder's first
    scan (at start-up, on an empty catalog) is over before the test writes anything."""

    @asynccontextmanager
    async def factory(scan_interval_s: float) -> AsyncIterator[Any]:
        mailbox, port = Mailbox(), free_port()
        smtp = Controller(mailbox, hostname="127.0.0.1", port=port, ready_timeout=5)
        smtp.start()
        settings = make_settings(group_prefix=uid("g"), smtp_host="127.0.0.1", smtp_port=port, smtp_security="none",
                                 delivery_poll_interval_s=0.1, expiry_scan_interval_s=scan_interval_s, expiry_reminder_days=7)
        client = make_client(settings.mongodb_uri)
        try:
            async with running_catalog(settings) as catalog:
                app = create_app(settings, catalog_http=catalog.client)
                async with app.router.lifespan_context(app):
                    async def first_scan_done() -> bool:
                        return app.state.reminder.scans_total >= 1

                    await eventually(first_scan_done, timeout=60, interval=0.02)
                    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify")
                    try:
                        yield app, api, (app, catalog), mailbox
                    finally:
                        await api.aclose()
        finally:
            smtp.stop()
            await client.drop_database(settings.notify_db)
            await client.close()

    return factory


async def add_org(env: tuple[Any, Catalog], lang: str, contact_email: str | None, role: str = "seeker") -> tuple[str, dict[str, str]]:
    """An organization registered in the catalog, once notify's projection knows it."""
    app, catalog = env
    contact = {"name": "Awa Diop", "email": contact_email} if contact_email else None
    org = await catalog.org("country_office" if role == "seeker" else "solution_provider", language=lang, contact=contact)
    await known_to_notify(app, org)
    return org.id, org.headers


async def project(env: tuple[Any, Catalog], **item: Any) -> None:
    """An item as notify learns it: a need/offer event applied to its own projection."""
    app, _ = env
    kind = item.pop("kind")
    payload = item_payload(kind, **item)
    await app.state.directory.apply(make_event(f"{kind}.published", kind, payload.id, payload, producer="test"), payload)


async def inbox_of(api: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = await api.get("/v1/notifications", params={"limit": 100}, headers=headers)
    assert r.status_code == 200
    return r.json()["items"]


async def test_one_reminder_for_the_item_expiring_within_the_window_once_with_one_french_email(env_factory: Any) -> None:
    async with env_factory(3600) as (app, api, catalog, mailbox):
        owner, owner_h = await add_org(catalog, "fr", "awa@agri.example.sn")
        quiet, quiet_h = await add_org(catalog, "en", "ops@provider.example", role="provider")  # inbox only (default preferences)
        prefs = await api.put("/v1/preferences", json={"channels": ["inbox", "email"], "language": "fr"}, headers=owner_h)
        assert prefs.status_code == 200
        now = datetime.now(UTC)
        soon = uid("need")
        base = {"organization_id": owner, "kind": "need"}
        await project(catalog, **base, id=soon, title="Semences résistantes à la sécheresse", expires_at=now + timedelta(days=3))
        await project(catalog, **base, id=uid("need"), title="Plus tard", expires_at=now + timedelta(days=30))
        await project(catalog, **base, id=uid("need"), title="Déjà expiré", expires_at=now - timedelta(days=1))
        await project(catalog, **base, id=uid("need"), title="Retiré", status="withdrawn", expires_at=now + timedelta(days=2))
        await project(catalog, **base, id=uid("need"), title="Sans date")
        offer = uid("offer")
        await project(catalog, kind="offer", id=offer, organization_id=quiet, title="GIS training", expires_at=now + timedelta(days=1, hours=1))
        reminder = app.state.reminder

        # the owner's need and the provider's offer (items of other tests arrive on the shared topics too)
        assert await reminder.scan_once() >= 2
        assert await reminder.scan_once() == 0  # a re-scan alerts no one twice

        items = await inbox_of(api, owner_h)
        assert [(n["kind"], n["match_id"]) for n in items] == [("expiry_reminder", soon)]
        data = items[0]["data"]
        assert (data["item_kind"], data["item_id"], data["item_title"], data["days"]) == ("need", soon, "Semences résistantes à la sécheresse", 3)
        assert datetime.fromisoformat(data["expires_at"]).date() == (now + timedelta(days=3)).date()
        offer_items = await inbox_of(api, quiet_h)
        assert [(n["kind"], n["data"]["item_kind"], n["data"]["days"]) for n in offer_items] == [("expiry_reminder", "offer", 2)]

        deliveries = app.state.worker.deliveries.coll
        assert await deliveries.count_documents({"organization_id": {"$in": [owner, quiet]}}) == 1  # e-mail only for the owner who chose it

        async def mailed() -> bool:
            return len(mailbox.messages) >= 1 and await deliveries.count_documents({"status": "sent", "organization_id": owner}) == 1

        await eventually(mailed, timeout=60)
        await asyncio.sleep(0.4)
        assert len(mailbox.messages) == 1
        message = mailbox.messages[0]
        assert message["To"] == "awa@agri.example.sn"
        assert "Rappel" in message["Subject"] and "Semences résistantes à la sécheresse" in message["Subject"]
        text = message.get_body(preferencelist=("plain",)).get_content()
        assert "Semences résistantes à la sécheresse" in text and "expire dans 3 jours" in text and "votre besoin" in text
        assert f"/v1/needs/{soon}" in text

        assert await reminder.scan_once() == 0
        await asyncio.sleep(0.3)
        assert len(mailbox.messages) == 1 and await deliveries.count_documents({"organization_id": {"$in": [owner, quiet]}}) == 1


async def test_the_background_scan_reminds_once_per_expiry_date(env_factory: Any) -> None:
    async with env_factory(0.2) as (app, api, catalog, mailbox):
        owner, owner_h = await add_org(catalog, "es", "lucia@ministerio.example.bo")
        nomail, nomail_h = await add_org(catalog, "en", None)  # chose e-mail but gave no address
        await api.put("/v1/preferences", json={"channels": ["inbox", "email"], "language": "es"}, headers=owner_h)
        await api.put("/v1/preferences", json={"channels": ["inbox", "email"]}, headers=nomail_h)
        now = datetime.now(UTC)
        item = uid("offer")
        await project(catalog, kind="offer", id=item, organization_id=owner, title="Formación en riego", expires_at=now + timedelta(days=5))
        await project(catalog, kind="need", id=uid("need"), organization_id=nomail, title="Maps", expires_at=now + timedelta(days=6))
        reminder = app.state.reminder

        async def reminded() -> list[dict[str, Any]]:
            return await inbox_of(api, owner_h)

        first = await eventually(reminded, timeout=60)
        assert [(n["kind"], n["data"]["days"]) for n in first] == [("expiry_reminder", 5)]
        await eventually(lambda: inbox_of(api, nomail_h), timeout=60)
        scans = reminder.scans_total

        async def more_scans() -> bool:
            return reminder.scans_total >= scans + 3

        await eventually(more_scans, timeout=60)
        assert len(await inbox_of(api, owner_h)) == 1 and len(await inbox_of(api, nomail_h)) == 1
        deliveries = app.state.worker.deliveries.coll
        assert await deliveries.count_documents({"organization_id": nomail}) == 0
        await eventually(lambda: asyncio.sleep(0, result=len(mailbox.messages)), timeout=60)
        assert "Formación en riego" in mailbox.messages[0]["Subject"]

        # the owner extends the offer by two days: a new expiry date, so a new reminder
        await project(catalog, kind="offer", id=item, organization_id=owner, title="Formación en riego", revision=2,
                      expires_at=now + timedelta(days=7))

        async def second() -> list[dict[str, Any]]:
            items = await inbox_of(api, owner_h)
            return items if len(items) == 2 else []

        items = await eventually(second, timeout=60)
        assert [n["data"]["days"] for n in items] == [7, 5]  # newest first
        await eventually(lambda: asyncio.sleep(0, result=len(mailbox.messages) == 2), timeout=60)
        await asyncio.sleep(0.5)  # several more scans: nothing new
        assert len(await inbox_of(api, owner_h)) == 2 and len(mailbox.messages) == 2
        assert await deliveries.count_documents({"organization_id": owner}) == 2
        assert reminder.reminded_total >= 3
