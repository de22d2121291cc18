"""Expiry reminders: owners hear N days before a need or offer expires, once per (item, expiry date).

A periodic scan of notify's own projection of open items (``Directory``, fed by the catalog's events); the alert goes through the same inbox and
delivery records as match alerts, so the unique keys there make a re-scan alert no one twice.

Every scan re-plans the deliveries of every item in the window (their ids make that a no-op for the
ones already planned), so a scan that stopped between the inbox write and the delivery write is
completed by the next one.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from services.notify.agents import plan_for_alerts
from services.notify.delivery import DeliveryStore
from services.notify.directory import Directory
from services.notify.inbox import InboxStore
from services.notify.rules import Alert
from services.notify.subscriptions import SubscriptionStore
from ssmatch.settings import Settings
from ssmatch.tasks import BackgroundTask

log = logging.getLogger(__name__)
#: Alerts planned per write (bounds memory and the size of one `$in` query).
CHUNK = 500


def reminder_alert(kind: str, doc: dict[str, Any], now: datetime) -> Alert:
    expires: datetime = doc["expires_at"] if doc["expires_at"].tzinfo else doc["expires_at"].replace(tzinfo=UTC)
    days = max(0, math.ceil((expires - now).total_seconds() / 86400))  # "in 3 days", not 2 days 23 h
    return Alert(
        organization_id=doc["organization_id"],
        kind="expiry_reminder",
        match_id=doc["_id"],
        dedup_key=f"expiry:{doc['_id']}:{expires.date().isoformat()}",
        data={"item_kind": kind, "item_id": doc["_id"], "item_title": doc.get("title"), "expires_at": expires.isoformat(), "days": days},
    )


class ExpiryReminder(BackgroundTask):
    task_name = "expiry-reminder"

    def __init__(self, settings: Settings, directory: Directory, inbox: InboxStore, subscriptions: SubscriptionStore,
                 deliveries: DeliveryStore, on_planned: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.directory = directory
        self.inbox = inbox
        self.subscriptions = subscriptions
        self.deliveries = deliveries
        self.on_planned = on_planned
        self.reminded_total = 0
        self.scans_total = 0

    async def scan_once(self, now: datetime | None = None) -> int:
        """Alert owners of open items expiring within the reminder window; returns new inbox entries."""
        now = now or datetime.now(UTC)
        horizon = now + timedelta(days=self.settings.expiry_reminder_days)
        added = 0
        chunk: list[tuple[Alert, str, Any]] = []
        async for doc in self.directory.open_items_expiring(now, horizon):
            if not doc.get("organization_id") or not isinstance(doc.get("expires_at"), datetime) or doc.get("kind") not in ("need", "offer"):
                continue  # no owner to tell (or a malformed date): skip it, not the whole scan
            alert = reminder_alert(doc["kind"], doc, now)
            chunk.append((alert, alert.dedup_key, None))
            if len(chunk) >= CHUNK:
                added += await self._alert(chunk, now)
                chunk = []
        if chunk:
            added += await self._alert(chunk, now)
        self.scans_total += 1
        self.reminded_total += added
        if added:
            log.info("expiry reminders", extra={"new": added})
        return added

    async def _alert(self, alerts: list[tuple[Alert, str, Any]], now: datetime) -> int:
        added = await self.inbox.add_many([(a, e) for a, e, _ in alerts])
        planned = await plan_for_alerts(alerts, self.subscriptions, self.directory, self.settings.public_catalog_url, now)
        if await self.deliveries.add_many(planned) and self.on_planned:
            self.on_planned()
        return added

    async def _run(self) -> None:
        while True:
            try:
                await self.scan_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("expiry scan failed")
            await self.wait_for_wake(self.settings.expiry_scan_interval_s)
