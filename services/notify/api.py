"""Notify HTTP edges: the caller organization's inbox."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from services.notify.inbox import InboxStore
from ssmatch.auth import Principal, TokenAuthority
from ssmatch.http import ApiError

router = APIRouter(prefix="/v1")


async def principal(request: Request) -> Principal:
    authority: TokenAuthority = request.app.state.authority
    return await authority.principal_from_request(request)


def inbox_of(request: Request) -> InboxStore:
    return request.app.state.inbox  # type: ignore[no-any-return]


Caller = Annotated[Principal, Depends(principal)]
Inbox = Annotated[InboxStore, Depends(inbox_of)]


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
