"""Once per (event, recipient, channel) for webhooks and e-mail, proven like the inbox: notify (a real
process) is SIGKILLed while deliveries are in flight, restarted, and the receivers count what arrived.

Delivery is at-least-once on the wire (a request in flight when the process dies is sent again: HTTP
has no way to know whether the receiver acted on it), and exactly-once by delivery id: every
(event, recipient, channel) has one record with one id, every id arrives, and the only repeats are of
records that were in flight at the kill, each under the same id (``X-SSMatch-Delivery-Id`` /
``Message-ID``) so receivers drop them."""

from __future__ import annotations

import asyncio
import email
import os
import signal
import subprocess
import sys
from collections import Counter
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller

from services.notify.channels.email import delivery_message_id
from services.notify.directory import Directory
from services.notify.preferences import Preferences
from services.notify.subscriptions import SubscriptionStore
from ssmatch.events import MatchDecidedPayload, OrganizationPayload, make_event
from ssmatch.mongo import make_client
from ssmatch.stack.processes import free_port
from tests.helpers import eventually, serve_app, uid

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]


class Mailbox:
    def __init__(self) -> None:
        self.ids: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.05)  # a slow relay, so the kill finds messages in flight
        self.ids.append(str(email.message_from_bytes(envelope.content, policy=policy.default)["Message-ID"]))
        return "250 OK"


def notify_process(settings: Any, smtp_port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers, MONGODB_URI=settings.mongodb_uri, NOTIFY_PORT=str(free_port()),
        SSMATCH_NOTIFY_DB=settings.notify_db, SSMATCH_GROUP_PREFIX=settings.group_prefix, SSMATCH_ADMIN_TOKEN="x",
        SSMATCH_LOG_FORMAT="text", SSMATCH_WEBHOOK_ALLOW_PRIVATE="1", SSMATCH_SMTP_HOST="127.0.0.1", SSMATCH_SMTP_PORT=str(smtp_port),
        SSMATCH_SMTP_SECURITY="none", SSMATCH_DELIVERY_LEASE_S="5", SSMATCH_DELIVERY_POLL_INTERVAL_S="0.2",
        SSMATCH_WEBHOOK_TIMEOUT_S="5", SSMATCH_EXPIRY_SCAN_INTERVAL_S="3600",
    )
    log = open(os.environ.get("NOTIFY_CRASH_LOG", os.devnull), "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen([sys.executable, "-m", "services.notify"], cwd=REPO, env=env, stdout=log, stderr=log)


async def test_sigkill_mid_delivery_then_restart_delivers_every_webhook_and_email_once_by_id(make_settings: Any, servers: Any) -> None:
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request.headers["X-SSMatch-Delivery-Id"])
        await asyncio.sleep(0.3)  # slow receiver: the kill finds requests in flight
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook/{org}", hook)
    runner, hook_port = await serve_app(receiver)
    mailbox, smtp_port = Mailbox(), free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port, ready_timeout=5)
    smtp.start()

    settings = make_settings(group_prefix=uid("g"))
    tag = uid("k")
    client = make_client(settings.mongodb_uri)
    directory, subs = Directory(client, settings.notify_db), SubscriptionStore(client, settings.notify_db)
    await directory.init()
    await subs.init()
    # notify's own data, seeded as its consumer and API would have stored it
    orgs = [f"{tag}-o{i}" for i in range(6)]
    for i, org in enumerate(orgs):
        payload = OrganizationPayload(organization_id=org, name=f"Org {i}", type="country_office" if i % 2 else "solution_provider",
                                      country="SEN", language="en", contact={"name": f"Person {i}", "email": f"p{i}@{tag}.example"}, revision=1)
        await directory.apply(make_event("organization.created", "organization", org, payload, producer="test"), payload)
        await subs.add_webhook(org, f"http://127.0.0.1:{hook_port}/hook/{org}", None)
        await subs.set_preferences(org, Preferences(channels=["inbox", "webhook", "email"]))
    n = 40  # events; each reaches 2 organizations on 2 channels → 160 deliveries
    producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap)
    await producer.start()
    deliveries = client.get_database(settings.notify_db)["deliveries"]
    proc = None
    try:
        for i in range(n):
            mid = f"{tag}n{i}.{tag}f{i}"
            p = MatchDecidedPayload(match_id=mid, need_id=f"{tag}n{i}", offer_id=f"{tag}f{i}", decision="approve", decided_by="b",
                                    need_organization_id=orgs[i % 3 * 2 + 1], offer_organization_id=orgs[i % 3 * 2], score=0.7)
            await producer.send_and_wait("ssmatch.decisions", key=mid.encode(), value=make_event("match.decided", "match", mid, p, producer="t").to_bytes())
        proc = notify_process(settings, smtp_port)

        async def under_way() -> tuple[int, int] | None:
            state = (len(set(hits)), len(set(mailbox.ids)))
            return state if state[0] >= 10 and state[1] >= 3 else None

        await eventually(under_way, timeout=60, interval=0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        in_flight = await deliveries.count_documents({"status": "sending"})
        sent_at_kill = await deliveries.count_documents({"status": "sent"})
        assert sent_at_kill < 4 * n, "notify finished before it could be killed mid-way"

        proc = notify_process(settings, smtp_port)

        async def all_sent() -> bool:
            return await deliveries.count_documents({"match_id": {"$regex": f"^{tag}"}, "status": "sent"}) == 4 * n

        await eventually(all_sent, timeout=120, interval=0.2)
        expected = {d["_id"]: d async for d in deliveries.find({"match_id": {"$regex": f"^{tag}"}})}
        assert len(expected) == 4 * n
        keys = Counter((d["event_id"], d["organization_id"], d["channel"]) for d in expected.values())
        assert set(keys.values()) == {1}, "one record per (event, recipient, channel)"
        web_ids = {i for i, d in expected.items() if d["channel"] == "webhook"}
        mail_ids = {f"<{delivery_message_id(i)}>" for i, d in expected.items() if d["channel"] == "email"}
        assert set(hits) == web_ids, "every webhook delivery arrived, under its own id"
        assert set(mailbox.ids) == mail_ids, "every e-mail arrived, under its own id"
        repeats = (len(hits) - len(set(hits))) + (len(mailbox.ids) - len(set(mailbox.ids)))
        assert repeats <= in_flight, f"{repeats} repeats but only {in_flight} deliveries were in flight at the kill"
        print(f"\ndelivery_crash: deliveries={4 * n} sent_before_kill={sent_at_kill} in_flight_at_kill={in_flight} "
              f"webhook_requests={len(hits)} emails={len(mailbox.ids)} repeats_same_id={repeats}")
    finally:
        await producer.stop()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        smtp.stop()
        await runner.cleanup()
        await client.drop_database(settings.notify_db)
        await client.close()
