"""Notify from Kafka to real counterparts: a match.decided event reaches the country office's
webhook (signature checked by the receiver) and the provider's mailbox (a real SMTP server), once,
even when the event is delivered twice; a dead webhook is retried, dead-lettered and marked."""

from __future__ import annotations

import asyncio
import email
import json
from email import policy
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller

from services.notify.app import create_app
from services.notify.channels.webhook import verify_signature
from ssmatch.events import MatchDecidedPayload, make_event
from ssmatch.mongo import make_client
from ssmatch.stack.processes import free_port
from tests.helpers import eventually, read_topic, serve_app, uid
from tests.integration.notify.conftest import known_to_notify, running_catalog

pytestmark = [pytest.mark.integration]
SECRET = "whsec_test_secret_0123456789"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"


async def test_decision_reaches_webhook_and_email_once_and_dead_webhooks_are_marked(make_settings: Any, servers: Any) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify_signature(SECRET, request.headers["X-SSMatch-Timestamp"], request.headers["X-SSMatch-Signature"], body)
        received.append({"ok": ok, "body": json.loads(body), "delivery": request.headers["X-SSMatch-Delivery-Id"]})
        return web.Response(status=200 if ok else 401)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    runner, hook_port = await serve_app(receiver)
    mailbox = Mailbox()
    smtp_port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port, ready_timeout=5)
    smtp.start()

    settings = make_settings(group_prefix=uid("g"), webhook_allow_private=True, smtp_host="127.0.0.1", smtp_port=smtp_port,
                             smtp_security="none", webhook_backoff_base_s=0.01, webhook_max_attempts=2, webhook_timeout_s=2,
                             delivery_poll_interval_s=0.2)
    client = make_client(settings.mongodb_uri)
    tag = uid()
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap)
    await producer.start()
    try:
        async with running_catalog(settings) as catalog:
            o = await catalog.org("country_office", name="Ministère de l'Agriculture, Sénégal", country="SEN", language="fr",
                                  contact={"name": "Awa Diop", "email": "awa@agri.example.sn"})
            pr = await catalog.org("solution_provider", name="Embrapa", country="BRA", language="pt",
                                   contact={"name": "João Silva", "email": "joao@embrapa.example.br"})
            office, provider = o.id, pr.id
            tokens = {office: o.token, provider: pr.token}
            app = create_app(settings, catalog_http=catalog.client)
            async with app.router.lifespan_context(app):
                await known_to_notify(app, o, pr)
                await run_checks(app, tokens, office, provider, tag, producer, hook_port, received, mailbox, servers)
    finally:
        await producer.stop()
        smtp.stop()
        await runner.cleanup()
        await client.drop_database(settings.notify_db)
        await client.close()


async def run_checks(app: Any, tokens: dict[str, str], office: str, provider: str, tag: str, producer: Any, hook_port: int,
                     received: list[dict[str, Any]], mailbox: Mailbox, servers: Any) -> None:
    """The whole scenario against a running notify whose projection knows both organizations."""
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify")
    h = {"Authorization": f"Bearer {tokens[office]}"}
    good = await api.post("/v1/webhooks", json={"url": f"http://127.0.0.1:{hook_port}/hook", "secret": SECRET}, headers=h)
    assert good.status_code == 201 and good.json()["secret"] == SECRET
    dead = await api.post("/v1/webhooks", json={"url": f"http://127.0.0.1:{free_port()}/gone"}, headers=h)
    assert dead.status_code == 201
    prefs = await api.put("/v1/preferences", json={"channels": ["inbox", "email"], "language": "fr"},
                          headers={"Authorization": f"Bearer {tokens[provider]}"})
    assert prefs.status_code == 200 and prefs.json()["channels"] == ["inbox", "email"]

    mid = f"{tag}n.{tag}f"
    p = MatchDecidedPayload(match_id=mid, need_id=f"{tag}n", offer_id=f"{tag}f", decision="approve", decided_by="broker",
                            need_organization_id=office, offer_organization_id=provider, score=0.91,
                            need_title="Semences résistantes à la sécheresse", offer_title="Sementes tolerantes à seca",
                            explanation={"components": {"semantic": 0.5, "sectors": 0.2}})
    event = make_event("match.decided", "match", mid, p, producer="test").to_bytes()
    await producer.send_and_wait("ssmatch.decisions", key=mid.encode(), value=event)
    await producer.send_and_wait("ssmatch.decisions", key=mid.encode(), value=event)  # redelivered

    async def delivered() -> bool:
        return len(received) >= 1 and len(mailbox.messages) >= 1

    await eventually(delivered, timeout=30)

    async def dead_marked() -> Any:
        hooks = (await api.get("/v1/webhooks", headers=h)).json()["items"]
        return [x for x in hooks if x["id"] == dead.json()["id"] and x["failures"] >= 1]

    marked = await eventually(dead_marked, timeout=30)
    assert marked[0]["last_error"]
    dlq = await read_topic(servers.kafka_bootstrap, "ssmatch.deadletter",
                           lambda r: r.key.decode() == mid and json.loads(r.value)["payload"]["consumer"] == "notify-webhook", want=1)
    assert "webhook" in json.loads(dlq[0].value)["payload"]["reason"]

    await asyncio.sleep(1.5)  # time for any duplicate to show up
    assert len(received) == 1 and received[0]["ok"] is True
    assert received[0]["body"]["kind"] == "match_approved" and received[0]["body"]["match_id"] == mid
    assert len(mailbox.messages) == 1
    message = mailbox.messages[0]
    assert message["To"] == "joao@embrapa.example.br"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Ministère de l'Agriculture, Sénégal" in text and "Awa Diop" in text  # the other side's organization and contact
    assert message.get_body(preferencelist=("html",)) is not None
    inbox = (await api.get("/v1/notifications", headers=h)).json()["items"]
    assert [n["kind"] for n in inbox if n["match_id"] == mid] == ["match_approved"]
    # refused even here, where private addresses are allowed for the test receiver
    refused = await api.post("/v1/webhooks", json={"url": "http://user:pw@127.0.0.1:9/x"}, headers=h)
    assert refused.status_code == 422 and "url" in refused.json()["error"]["details"][0]["path"]
    await api.aclose()
