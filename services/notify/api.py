"""Notify HTTP edges: the caller organization's inbox, webhooks and preferences.

Every /v1 operation documents the 4xx answers it can give (same error body everywhere)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.notify.channels.webhook import WebhookURLRejected, check_webhook_url
from services.notify.inbox import InboxStore
from services.notify.limits import TokenRateLimit
from services.notify.preferences import Preferences
from services.notify.subscriptions import SubscriptionStore
from ssmatch.auth import Principal, TokenAuthority
from ssmatch.http import ApiError, ErrorBody

_WHY = {
    401: "missing, invalid, expired or revoked token",
    403: "the token may not do this (e.g. the admin token has no inbox)",
    404: "no such id for the caller's organization",
    409: "the organization has as many webhooks as allowed",
    413: "request body too large",
    422: "the request is not valid",
    429: "rate limit exceeded (see Retry-After)",
    503: "tokens cannot be checked right now (see Retry-After)",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses plus the ones every /v1 call can give."""
    return {c: {"model": ErrorBody, "description": _WHY[c]} for c in sorted({401, 403, 422, 429, 503, *codes})}


async def known_query_only(request: Request) -> None:
    """Unknown query parameters are refused (422) rather than silently ignored: a misspelt filter
    (``?unraed=true``) must not quietly return something else than asked."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    allowed: set[str] = set()
    pending = [dependant] if dependant is not None else []
    while pending:  # the route's own query parameters and those of its dependencies
        d = pending.pop()
        allowed |= {p.alias for p in d.query_params}
        pending.extend(d.dependencies)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise ApiError(422, "unknown query parameters", code="validation_failed",
                       details=[{"path": f"$.{k[:64]}", "in": "query", "message": "unknown parameter"} for k in unknown[:10]])


router = APIRouter(prefix="/v1", dependencies=[Depends(known_query_only)])


async def principal(request: Request) -> Principal:
    authority: TokenAuthority = request.app.state.authority
    caller = await authority.principal_from_request(request)
    limiter: TokenRateLimit | None = getattr(request.app.state, "rate_limit", None)
    if limiter is not None:
        await limiter.check(caller)
    return caller


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
    secret: str | None = Field(default=None, min_length=16, max_length=200, pattern=r"^[\x21-\x7e]+$")


class Notification(BaseModel):
    id: str
    kind: str
    match_id: str
    created_at: str
    read: bool
    data: dict[str, Any]


class NotificationPage(BaseModel):
    items: list[Notification]
    next_before: str | None


class UnreadCount(BaseModel):
    unread: int


class MarkedRead(BaseModel):
    id: str
    read: bool


class Webhook(BaseModel):
    id: str
    url: str
    active: bool
    failures: int
    last_error: str | None
    last_status: int | None
    created_at: str
    last_delivery_at: str | None
    secret: str | None = None


class WebhookPage(BaseModel):
    items: list[Webhook]


class WebhookRemoved(BaseModel):
    id: str
    active: bool


ID = Annotated[str, Field(min_length=1, max_length=64)]


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


@router.get("/notifications", tags=["notifications"], response_model=NotificationPage, responses=errors())
async def list_notifications(
    caller: Caller,
    inbox: Inbox,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    before: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9a-f]{24}$")] = None,
) -> dict[str, Any]:
    docs = await inbox.list_for(_org(caller), limit, unread, before)
    return {"items": [view(d) for d in docs], "next_before": docs[-1]["_id"] if len(docs) == limit else None}


@router.get("/notifications/unread_count", tags=["notifications"], response_model=UnreadCount, responses=errors())
async def unread_count(caller: Caller, inbox: Inbox) -> dict[str, int]:
    return {"unread": await inbox.unread_count(_org(caller))}


@router.post("/notifications/{notification_id}/read", tags=["notifications"], response_model=MarkedRead, responses=errors(404))
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
    out["failures"] = out.get("failures") or 0
    return out


@router.post("/webhooks", status_code=201, tags=["webhooks"], response_model=Webhook, responses=errors(409, 413))
async def add_webhook(caller: Caller, body: WebhookIn, subs: Subscriptions, request: Request) -> dict[str, Any]:
    """Register a URL; deliveries are signed with the returned secret (shown only now)."""
    org = _org(caller)
    settings = request.app.state.settings
    allow_private = settings.webhook_allow_private
    if await subs.count_webhooks(org) >= settings.notify_max_webhooks:
        raise ApiError(409, f"an organization may have at most {settings.notify_max_webhooks} webhooks; remove one first",
                       code="too_many_webhooks", details={"max_webhooks": settings.notify_max_webhooks})
    try:
        await asyncio.to_thread(check_webhook_url, body.url, allow_private)
    except WebhookURLRejected as exc:
        raise ApiError(422, f"webhook URL refused: {exc.reason}", details=[{"path": "$.url", "message": exc.reason}]) from exc
    doc = await subs.add_webhook(org, body.url, body.secret)
    prefs = await subs.get_preferences(org)
    if "webhook" not in prefs.channels:
        await subs.set_preferences(org, prefs.model_copy(update={"channels": [*prefs.channels, "webhook"]}))
    return webhook_view(doc, with_secret=True)


@router.get("/webhooks", tags=["webhooks"], response_model=WebhookPage, responses=errors())
async def list_webhooks(caller: Caller, subs: Subscriptions) -> dict[str, Any]:
    return {"items": [webhook_view(d) for d in await subs.list_webhooks(_org(caller))]}


@router.delete("/webhooks/{webhook_id}", tags=["webhooks"], response_model=WebhookRemoved, responses=errors(404))
async def remove_webhook(webhook_id: str, caller: Caller, subs: Subscriptions) -> dict[str, Any]:
    if not await subs.remove_webhook(_org(caller), webhook_id[:64]):
        raise ApiError(404, f"webhook {webhook_id[:64]} not found")
    return {"id": webhook_id, "active": False}


@router.get("/preferences", tags=["preferences"], response_model=Preferences, responses=errors())
async def get_preferences(caller: Caller, subs: Subscriptions) -> dict[str, Any]:
    return (await subs.get_preferences(_org(caller))).model_dump(mode="json")


@router.put("/preferences", tags=["preferences"], response_model=Preferences, responses=errors(413))
async def put_preferences(caller: Caller, body: Preferences, subs: Subscriptions) -> dict[str, Any]:
    return (await subs.set_preferences(_org(caller), body)).model_dump(mode="json")
