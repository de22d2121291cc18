"""FastAPI dependencies of the catalog's JSON API, as `Annotated` types.

`Caller` (any valid token), `AdminCaller`, `StaffCaller` (broker or admin), `SeekerCaller`,
`ProviderCaller`, `ImporterCaller` resolve the bearer token; `CatalogDep` is the service layer's
`Catalog` (what `services.catalog.service` functions take); `Store` the raw store for admin plumbing;
`Credential` the caller's raw token, for calls made on the caller's behalf.
Every dependency is `async def`: FastAPI runs a plain `def` in its thread pool, a thread hand-off
per dependency per request (~0.3 ms each, measured on the list endpoint) for a dictionary lookup.
`AuthedRoute` authenticates, rate-limits and checks the role before the body is even read.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from services.catalog.ratelimit import RateLimiter
from services.catalog.service import Catalog
from services.catalog.store import CatalogStore
from ssmatch.auth import Principal, Role, TokenAuthority, require_role
from ssmatch.http import ApiError


async def bearer_of(request: Request) -> str | None:
    """The caller's bearer token as sent: passed on to other services that act for the caller (the
    matcher's search by meaning), never stored or logged."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


async def store_of(request: Request) -> CatalogStore:
    return request.app.state.store  # type: ignore[no-any-return]


async def authority_of(request: Request) -> TokenAuthority:
    return request.app.state.authority  # type: ignore[no-any-return]


async def catalog_of(request: Request) -> Catalog:
    return request.app.state.catalog  # type: ignore[no-any-return]


async def authenticate(request: Request) -> Principal:
    """Resolve the bearer token (401) and take one request from its rate-limit bucket (429)."""
    authority: TokenAuthority = request.app.state.authority
    caller = await authority.principal_from_request(request)
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        await limiter.check(caller)
    return caller


async def principal(request: Request) -> Principal:
    """The caller, authenticated by AuthedRoute before anything else (even before the body is read)."""
    caller = getattr(request.state, "principal", None)
    if caller is None:  # a route outside AuthedRoute: authenticate here
        caller = request.state.principal = await authenticate(request)
    return caller  # type: ignore[no-any-return]


def caller_with(*roles: Role) -> Any:
    """A dependency that checks the caller's role; AuthedRoute runs the same check before the body is parsed."""

    async def dependency(request: Request) -> Principal:
        caller = await principal(request)
        require_role(caller, *roles)
        return caller

    dependency.required_roles = roles  # type: ignore[attr-defined]
    return Depends(dependency)


def _required_roles(dependant: Dependant) -> tuple[Role, ...] | None:
    for dep in dependant.dependencies:
        roles = getattr(dep.call, "required_roles", None)
        if roles is not None:
            return roles  # type: ignore[no-any-return]
        nested = _required_roles(dep)
        if nested is not None:
            return nested
    return None


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for dep in dependant.dependencies:
        names |= _query_names(dep)
    return names


class AuthedRoute(APIRoute):
    """Every /v1 route authenticates (401), rate-limits (429) and checks the role (403) first, so that a
    caller without the right never learns anything from body validation (422) or size checks. Query
    parameters the route does not declare are refused (422) rather than ignored: `?sectors=` for
    `?sector=` would otherwise silently return everything."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        roles = _required_roles(self.dependant)
        known_query = frozenset(_query_names(self.dependant))

        async def authed_handler(request: Request) -> Response:
            caller = request.state.principal = await authenticate(request)
            if roles is not None:
                require_role(caller, *roles)
            if request.url.query:
                unknown = sorted({k for k in request.query_params if k not in known_query})
                if unknown:
                    raise ApiError(
                        422,
                        "the request is not valid",
                        details=[{"path": f"$.{k[:60]}", "in": "query", "message": "unknown query parameter", "type": "extra_forbidden"} for k in unknown[:10]],
                    )
            return await handler(request)

        return authed_handler


Caller = Annotated[Principal, Depends(principal)]
AdminCaller = Annotated[Principal, caller_with("admin")]
StaffCaller = Annotated[Principal, caller_with("admin", "broker")]
SeekerCaller = Annotated[Principal, caller_with("seeker")]
ProviderCaller = Annotated[Principal, caller_with("provider")]
ImporterCaller = Annotated[Principal, caller_with("seeker", "provider")]
Store = Annotated[CatalogStore, Depends(store_of)]
Authority = Annotated[TokenAuthority, Depends(authority_of)]
CatalogDep = Annotated[Catalog, Depends(catalog_of)]
Credential = Annotated[str | None, Depends(bearer_of)]
