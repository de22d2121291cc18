"""Bearer tokens: issued by the catalog (which alone stores them), checked by every service.

Tokens are stored only as SHA-256 hashes in the catalog's database; the clear token is shown once,
at issue. Each service owns its data, so only the catalog reads that collection
(``TokenAuthority(..., local=True)``). Every other service asks the catalog, presenting the token
itself, at ``GET /v1/tokens/self`` (introspection), and caches the answer for at most
``token_cache_s`` seconds (≤ 60, default 15): a revocation is effective everywhere within that
bound. Notify also drops a cached token as soon as it reads the catalog's ``token.revoked`` event.

Why introspection and not self-contained signed tokens: tokens already issued (opaque ``ssm_…``)
keep working unchanged, there is no signing key to distribute and rotate among services, and
revocation is one write in the catalog instead of a deny-list every verifier must keep.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from fastapi import Request

from ssmatch.http import ApiError

log = logging.getLogger(__name__)

Role = Literal["admin", "seeker", "provider", "broker"]
ROLE_BY_ORG_TYPE: dict[str, Role] = {
    "country_office": "seeker",
    "solution_provider": "provider",
    "broker": "broker",
    "admin": "admin",
}
TOKEN_PREFIX = "ssm_"
INTROSPECTION_PATH = "/v1/tokens/self"
#: Upper bound of the cache lifetime: the promise "revoked everywhere within 60 s".
MAX_CACHE_S = 60.0
#: Unknown tokens are remembered briefly, so a flood of bad tokens does not become a flood of lookups.
NEGATIVE_CACHE_S = 2.0
_MAX_ENTRIES = 10_000


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    role: Role
    organization_id: str | None  # None for the environment's admin token
    token_id: str | None = None
    expires_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def plausible_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX) and 8 < len(token) <= 200 and token.isascii() and token.isprintable()


async def lookup_local(tokens: Any, token: str) -> Principal | None:
    """The catalog's own check against its ``tokens`` collection (hash lookup, revocation, expiry)."""
    if not plausible_token(token):
        return None
    doc = await tokens.find_one({"_id": hash_token(token)})
    if not doc or doc.get("revoked_at"):
        return None
    expires_at = doc.get("expires_at")
    if expires_at and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at and expires_at <= datetime.now(UTC):
        return None
    return Principal(role=doc["role"], organization_id=doc["organization_id"], token_id=doc.get("token_id"), expires_at=expires_at)


class TokenServiceUnavailable(ApiError):
    def __init__(self, reason: str) -> None:
        super().__init__(503, "cannot check the token right now; try again shortly", code="token_service_unavailable",
                         details={"reason": reason}, headers={"Retry-After": "2"})


@dataclass
class _Entry:
    until: float
    principal: Principal | None


class TokenAuthority:
    """Resolves bearer tokens to principals.

    ``TokenAuthority(catalog_db, admin_token, local=True)`` is the catalog's own check (it owns the
    tokens). Without ``local`` the authority asks the catalog over HTTP (``catalog_url``, default
    ``Settings.catalog_base_url``) and caches answers; ``catalog_db`` is then ignored (kept in the
    signature so existing callers such as the matcher's web views move to introspection unchanged).
    ``http`` may be given (tests: an ``httpx.AsyncClient`` on the catalog app in process).
    """

    def __init__(
        self,
        catalog_db: Any = None,
        admin_token: str | None = None,
        *,
        local: bool = False,
        catalog_url: str | None = None,
        cache_ttl_s: float | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.admin_token = admin_token
        self.local = local
        self.tokens = catalog_db["tokens"] if local else None
        if local and catalog_db is None:
            raise ValueError("a local token authority needs the catalog's database")
        if not local and (catalog_url is None or cache_ttl_s is None):
            from ssmatch.settings import get_settings

            settings = get_settings()
            catalog_url = catalog_url or settings.catalog_base_url
            cache_ttl_s = settings.token_cache_s if cache_ttl_s is None else cache_ttl_s
        self.catalog_url = (catalog_url or "").rstrip("/")
        # the catalog's own check caches only when asked (cache_ttl_s), and only positive answers
        default_ttl = 0.0 if local else 15.0
        self.cache_ttl_s = min(MAX_CACHE_S, max(0.0, float(cache_ttl_s if cache_ttl_s is not None else default_ttl)))
        # a refusal is cached briefly by remote services only: locally a token may be created any moment
        self._refusal_ttl_s = 0.0 if local else min(self.cache_ttl_s, NEGATIVE_CACHE_S)
        self._http = http
        self._owns_http = http is None
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[Principal | None]] = {}
        self.lookups_total = 0
        self.cache_hits_total = 0

    async def aclose(self) -> None:
        if self._http is not None and self._owns_http:
            await self._http.aclose()
            self._http = None

    def forget(self, token_id: str) -> int:
        """Drop cached answers for a revoked token (by its public id); returns how many were dropped."""
        keys = [k for k, e in self._cache.items() if e.principal is not None and e.principal.token_id == token_id]
        for k in keys:
            del self._cache[k]
        return len(keys)

    async def resolve(self, token: str) -> Principal | None:
        if self.admin_token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Principal(role="admin", organization_id=None)
        if not plausible_token(token):
            return None
        if self.local and self.cache_ttl_s <= 0:
            return await lookup_local(self.tokens, token)
        return await self._resolve_cached(token)

    async def _resolve_cached(self, token: str) -> Principal | None:
        """The cached answer while it is fresh and the token has not expired; else one lookup per token
        at a time (local: the tokens collection; remote: the catalog's introspection)."""
        key = hash_token(token)
        now = self._clock()
        entry = self._cache.get(key)
        if entry is not None and entry.until > now:
            principal = entry.principal
            if principal is None or principal.expires_at is None or principal.expires_at > datetime.now(UTC):
                self.cache_hits_total += 1
                return principal
        pending = self._inflight.get(key)
        if pending is not None:  # one lookup per token at a time; the others wait for its answer
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            principal = await self._lookup(token)
            ttl = self.cache_ttl_s if principal is not None else self._refusal_ttl_s
            if ttl > 0:
                if len(self._cache) >= _MAX_ENTRIES:
                    self._cache.clear()
                self._cache[key] = _Entry(self._clock() + ttl, principal)
            future.set_result(principal)
            return principal
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            self._inflight.pop(key, None)

    async def _lookup(self, token: str) -> Principal | None:
        """One uncached answer: the tokens collection (local) or the catalog's introspection."""
        self.lookups_total += 1
        return await (lookup_local(self.tokens, token) if self.local else self._introspect(token))

    async def _introspect(self, token: str) -> Principal | None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(5.0), trust_env=False)
        try:
            r = await self._http.get(self.catalog_url + INTROSPECTION_PATH, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            log.warning("token introspection failed: %s", type(exc).__name__)
            raise TokenServiceUnavailable(type(exc).__name__) from None
        if r.status_code in (401, 403):
            return None
        if r.status_code != 200:
            raise TokenServiceUnavailable(f"catalog answered {r.status_code}")
        try:
            body = r.json()
            expires = body.get("expires_at")
            return Principal(
                role=body["role"], organization_id=body["organization_id"], token_id=body.get("id"),
                expires_at=datetime.fromisoformat(expires) if expires else None,
            )
        except (ValueError, KeyError, TypeError):
            raise TokenServiceUnavailable("malformed introspection answer") from None

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
