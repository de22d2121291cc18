"""Notify HTTP edges: the caller organization's inbox."""

from __future__ import annotations

from typing import Annotated, Any

import asyncio

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.notify.channels.webhook import WebhookURLRejected, check_webhook_url
from services.notify.preferences import Preferences
from services.notify.subscriptions import SubscriptionStore

from services.notify.inbox import InboxStore
from ssmatch.auth import Principal, TokenAuthority
from ssmatch.http import ApiError

router = APIRouter(prefix="/v1")


async def principal(request: Request) -> Principal:
    authority: TokenAuthority = request.app.state.authority
    return await authority.principal_from_request(request)


def inbox_of(request: Request) -> InboxStore:
    return request.app.state.inbox  # type: ignore[no-any-return]


def subscriptions_of(request: Request) -> SubscriptionStore:
    return request.app.state.subscriptions  # type: ignore[no-any-return]


Caller = Annotated[Principal, Depends(principal)]
Inbox = Annotated[InboxStore, Depends(inbox_of)]
Subscriptions = Annotated[SubscriptionStore, Depends(subscriptions_of)]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000)
    secret: str | None = Field(default=None, min_length=16, max_length=200)


def _org(caller: Principal) -> str:
    if caller.organization_id is None:
        raise ApiError(403, "the admin token has no inbox; use an organization's token")
    return caller.organization_id


def view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "kind": doc["kind"],
        "match_id": doc["match_id"],
        "created_at": doc["created_at"].isoformat(),
        "read": doc["read"],
        "data": doc.get("data", {}),
    }


@router.get("/notifications", tags=["notifications"])
async def list_notifications(
    caller: Caller,
    inbox: Inbox,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    before: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9a-f]{24}$")] = None,
) -> dict[str, Any]:
    docs = await inbox.list_for(_org(caller), limit, unread, before)
    return {"items": [view(d) for d in docs], "next_before": docs[-1]["_id"] if len(docs) == limit else None}


@router.get("/notifications/unread_count", tags=["notifications"])
async def unread_count(caller: Caller, inbox: Inbox) -> dict[str, int]:
    return {"unread": await inbox.unread_count(_org(caller))}


@router.post("/notifications/{notification_id}/read", tags=["notifications"])
async def mark_read(notification_id: str, caller: Caller, inbox: Inbox) -> dict[str, Any]:
    if not await inbox.mark_read(_org(caller), notification_id[:64]):
        raise ApiError(404, f"notification {notification_id[:64]} not found")
    return {"id": notification_id, "read": True}


def webhook_view(doc: dict[str, Any], with_secret: bool = False) -> dict[str, Any]:
    out = {k: doc.get(k) for k in ("url", "active", "failures", "last_error", "last_status")}
    out["id"] = doc["_id"]
    out["created_at"] = doc["created_at"].isoformat()
    out["last_delivery_at"] = doc["last_delivery_at"].isoformat() if doc.get("last_delivery_at") else None
    if with_secret:
        out["secret"] = doc["secret"]
    return out


@router.post("/webhooks", status_code=201, tags=["webhooks"])
async def add_webhook(caller: Caller, body: WebhookIn, subs: Subscriptions, request: Request) -> dict[str, Any]:
    """Register a URL; deliveries are signed with the returned secret (shown only now)."""
    org = _org(caller)
    allow_private = request.app.state.settings.webhook_allow_private
    try:
        await asyncio.to_thread(check_webhook_url, body.url, allow_private)
    except WebhookURLRejected as exc:
        raise ApiError(422, f"webhook URL refused: {exc.reason}", details=[{"path": "$.url", "message": exc.reason}]) from exc
    doc = await subs.add_webhook(org, body.url, body.secret)
    prefs = await subs.get_preferences(org)
    if "webhook" not in prefs.channels:
        await subs.set_preferences(org, prefs.model_copy(update={"channels": [*prefs.channels, "webhook"]}))
    return webhook_view(doc, with_secret=True)


@router.get("/webhooks", tags=["webhooks"])
async def list_webhooks(caller: Caller, subs: Subscriptions) -> dict[str, Any]:
    return {"items": [webhook_view(d) for d in await subs.list_webhooks(_org(caller))]}


@router.delete("/webhooks/{webhook_id}", tags=["webhooks"])
async def remove_webhook(webhook_id: str, caller: Caller, subs: Subscriptions) -> dict[str, Any]:
    if not await subs.remove_webhook(_org(caller), webhook_id[:64]):
        raise ApiError(404, f"webhook {webhook_id[:64]} not found")
    return {"id": webhook_id, "active": False}


@router.get("/preferences", tags=["preferences"])
async def get_preferences(caller: Caller, subs: Subscriptions) -> dict[str, Any]:
    return (await subs.get_preferences(_org(caller))).model_dump(mode="json")


@router.put("/preferences", tags=["preferences"])
async def put_preferences(caller: Caller, body: Preferences, subs: Subscriptions) -> dict[str, Any]:
    return (await subs.set_preferences(_org(caller), body)).model_dump(mode="json")
