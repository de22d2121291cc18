"""Notify's consumer: match and decision events → inbox entries and planned deliveries, all stored
before the offsets are committed (so a crash loses nothing and a redelivery alerts no one twice).

The same consumer keeps notify's own projection (``Directory``) of organizations and items from the
catalog's events, and drops cached token checks on ``token.revoked``: notify reads no other
service's database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.notify.delivery import DeliveryStore
from services.notify.directory import Directory
from services.notify.inbox import InboxStore
from services.notify.preferences import Preferences, decide
from services.notify.rules import Alert, alerts_for
from services.notify.subscriptions import SubscriptionStore
from ssmatch.consumer import EventConsumer, Parsed
from ssmatch.events import TokenRevokedPayload
from ssmatch.settings import Settings

TOPICS = ["ssmatch.matches", "ssmatch.decisions", "ssmatch.organizations", "ssmatch.needs", "ssmatch.offers"]
PROJECTED = ("organization.", "need.", "offer.")


def template_context(alert: Alert, org: dict[str, Any] | None, orgs: dict[str, dict[str, Any]], base_url: str) -> dict[str, Any]:
    """What the templates need, from the alert and the organizations involved."""
    data = alert.data
    ctx: dict[str, Any] = {
        "need_title": data.get("need_title"),
        "offer_title": data.get("offer_title"),
        "explanation": data.get("explanation"),
        "score": data.get("score"),
        "note": data.get("note"),
        "url": f"{base_url}/v1/matches/{alert.match_id}",
        "recipient_name": ((org or {}).get("contact") or {}).get("name") or (org or {}).get("name"),
    }
    if alert.kind == "expiry_reminder":
        ctx.update(item_kind=data["item_kind"], days=data["days"], item_title=data.get("item_title"), expires_on=data.get("expires_at"),
                   url=f"{base_url}/v1/{data['item_kind']}s/{data['item_id']}")
    if alert.kind == "match_lifecycle":
        reporter = orgs.get(data.get("reported_by") or "", {})
        ctx.update(event=data.get("event"), counterpart_organization=reporter.get("name") or "a broker")
    if alert.kind == "match_approved":
        is_need_side = alert.organization_id == data.get("need_organization_id")
        other = orgs.get(data.get("offer_organization_id" if is_need_side else "need_organization_id") or "", {})
        contact = other.get("contact") or {}
        ctx.update(role="need" if is_need_side else "offer", counterpart_organization=other.get("name") or "(unknown organization)",
                   counterpart_contact_name=contact.get("name") or other.get("name") or "(no contact given)",
                   counterpart_contact_email=contact.get("email"))
    return ctx


def plan_deliveries(
    alerts: list[tuple[Alert, str, Any]],
    prefs: dict[str, Preferences],
    webhooks: dict[str, list[dict[str, Any]]],
    orgs: dict[str, dict[str, Any]],
    base_url: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """Delivery records for the channels each recipient chose; ids make them idempotent."""
    out: list[dict[str, Any]] = []
    for alert, event_id, record in alerts:
        p = prefs.get(alert.organization_id, Preferences())
        decision = decide(p, alert.kind, alert.data.get("score"), now)
        base = {
            "organization_id": alert.organization_id, "kind": alert.kind, "match_id": alert.match_id, "event_id": event_id,
            "status": "pending", "attempts": 0, "created_at": now, "lease_until": None,
            "source": {"topic": record.topic, "partition": record.partition, "offset": record.offset} if record is not None else {},
        }
        if "webhook" in decision.channels:
            payload = {"kind": alert.kind, "match_id": alert.match_id, "organization_id": alert.organization_id, "data": alert.data, "event_id": event_id}
            for hook in webhooks.get(alert.organization_id, []):
                out.append({**base, "_id": f"{alert.dedup_key}:{alert.organization_id}:webhook:{hook['_id']}", "channel": "webhook",
                            "target": hook["_id"], "payload": payload, "deliver_at": now})
        org = orgs.get(alert.organization_id)
        email = ((org or {}).get("contact") or {}).get("email")
        if "email" in decision.channels and email:
            out.append({**base, "_id": f"{alert.dedup_key}:{alert.organization_id}:email", "channel": "email", "target": email,
                        "language": p.language or (org or {}).get("language") or "en", "digest": decision.digest,
                        "context": template_context(alert, org, orgs, base_url), "payload": {"match_id": alert.match_id},
                        "deliver_at": now if "email" in decision.immediate_channels else decision.deliver_at})
    return out


async def plan_for_alerts(
    alerts: list[tuple[Alert, str, Any]], subscriptions: SubscriptionStore, directory: Directory, base_url: str, now: datetime
) -> list[dict[str, Any]]:
    """Load what planning needs (preferences, webhooks, organizations) in three queries, then plan."""
    org_ids = sorted({a.organization_id for a, _, _ in alerts} | {a.data.get(k) for a, _, _ in alerts for k in ("need_organization_id", "offer_organization_id", "reported_by") if a.data.get(k)})
    prefs = await subscriptions.preferences_for(org_ids)
    hooks: dict[str, list[dict[str, Any]]] = {}
    async for hook in subscriptions.webhooks.find({"organization_id": {"$in": org_ids}, "active": True}):
        hooks.setdefault(hook["organization_id"], []).append(hook)
    orgs = await directory.orgs_by_id(org_ids)
    return plan_deliveries(alerts, prefs, hooks, orgs, base_url, now)


def notify_consumer(
    settings: Settings,
    inbox: InboxStore,
    directory: Directory,
    subscriptions: SubscriptionStore | None = None,
    deliveries: DeliveryStore | None = None,
    on_planned: Any = None,
    on_token_revoked: Any = None,
) -> EventConsumer:
    async def handle_batch(batch: list[Parsed]) -> None:
        """Projection first (an organization created in this batch is known to its alerts), then all
        alerts of one fetch in one unordered, duplicate-tolerant write, before the commit."""
        await directory.apply_many([payload for envelope, payload, _ in batch if envelope.type.startswith(PROJECTED)])
        for _, payload, _ in batch:
            if isinstance(payload, TokenRevokedPayload) and on_token_revoked is not None:
                on_token_revoked(payload.token_id)
        brokers: list[str] = []
        if any(envelope.type in ("match.proposed", "match.lifecycle") for envelope, _, _ in batch):
            brokers = await directory.broker_ids()
        alerts = [(alert, envelope.event_id, record) for envelope, payload, record in batch for alert in alerts_for(envelope, payload, brokers)]
        await inbox.add_many([(a, e) for a, e, _ in alerts])
        if subscriptions is None or deliveries is None or not alerts:
            return
        planned = await plan_for_alerts(alerts, subscriptions, directory, settings.public_catalog_url, datetime.now(UTC))
        if await deliveries.add_many(planned) and on_planned:
            on_planned()

    return EventConsumer(settings, f"{settings.group_prefix}-notify", TOPICS, None, name="notify", batch_handler=handle_batch,
                         fetch_max_wait_ms=settings.notify_fetch_max_wait_ms)
