"""Token introspection: other services ask the catalog (which alone stores tokens) who a token is.

The caller presents the token being checked as its own bearer token, so the endpoint needs no
service credential and reveals nothing about any other token. Answered from the catalog's own
``tokens`` collection, never through the app's (possibly remote) authority.
"""

from __future__ import annotations

import hmac
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from ssmatch.auth import lookup_local
from ssmatch.http import ApiError

router = APIRouter(prefix="/v1")


class TokenSelf(BaseModel):
    id: str | None
    organization_id: str | None
    role: Literal["seeker", "provider", "broker", "admin"]
    expires_at: str | None


_ERR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "object"}}}}}}


@router.get("/tokens/self", tags=["organizations"], response_model=TokenSelf,
            responses={401: {"description": "missing, invalid, expired or revoked token", **_ERR}})
async def token_self(request: Request) -> TokenSelf:
    """Who the presented bearer token acts for (used by notify and the matcher to check tokens)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    admin = request.app.state.settings.admin_token if hasattr(request.app.state, "settings") else None
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return TokenSelf(id=None, organization_id=None, role="admin", expires_at=None)
    principal = await lookup_local(request.app.state.store.tokens, token)
    if principal is None:
        raise ApiError(401, "invalid, expired or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return TokenSelf(id=principal.token_id, organization_id=principal.organization_id, role=principal.role,
                     expires_at=principal.expires_at.isoformat() if principal.expires_at else None)

