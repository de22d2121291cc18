"""Bearer tokens: issued by the catalog, checked by catalog and notify alike.

Tokens are stored only as SHA-256 hashes; the clear token is shown once, at issue.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import Request
from pymongo.asynchronous.database import AsyncDatabase

from ssmatch.http import ApiError

Role = Literal["admin", "seeker", "provider", "broker"]
ROLE_BY_ORG_TYPE: dict[str, Role] = {
    "country_office": "seeker",
    "solution_provider": "provider",
    "broker": "broker",
    "admin": "admin",
}
TOKEN_PREFIX = "ssm_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    role: Role
    organization_id: str | None  # None for the environment's admin token
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class TokenAuthority:
    """Resolves bearer tokens against the catalog's `tokens` collection (and the admin token)."""

    def __init__(self, catalog_db: AsyncDatabase[dict[str, Any]], admin_token: str | None) -> None:
        self.tokens = catalog_db["tokens"]
        self.admin_token = admin_token

    async def resolve(self, token: str) -> Principal | None:
        if self.admin_token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Principal(role="admin", organization_id=None)
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        doc = await self.tokens.find_one({"_id": hash_token(token)})
        if not doc or doc.get("revoked_at"):
            return None
        expires_at = doc.get("expires_at")
        if expires_at and expires_at <= datetime.now(UTC):
            return None
        return Principal(role=doc["role"], organization_id=doc["organization_id"], token_id=doc.get("token_id"))

    async def principal_from_request(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        principal = await self.resolve(token.strip())
        if principal is None:
            raise ApiError(401, "invalid, expired or revoked token", headers={"WWW-Authenticate": "Bearer"})
        return principal


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise ApiError(403, f"this action needs one of the roles: {', '.join(roles)}", details={"role": principal.role})
