"""Catalog HTTP edges: thin handlers over CatalogStore. Roles and ownership are checked here."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.catalog.models import DecisionIn, NeedCreate, OfferCreate, OrganizationCreate, TokenCreate
from services.catalog.store import (
    CatalogStore,
    etag_for,
    item_view,
    match_view,
    org_view,
    parse_if_match,
)
from ssmatch import reference
from ssmatch.auth import Principal, Role, TokenAuthority, require_role
from ssmatch.http import ApiError, validation_details

router = APIRouter(prefix="/v1")
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MATCH_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$"


def store_of(request: Request) -> CatalogStore:
    return request.app.state.store  # type: ignore[no-any-return]


async def principal(request: Request) -> Principal:
    authority: TokenAuthority = request.app.state.authority
    return await authority.principal_from_request(request)


def caller_with(*roles: Role) -> Any:
    """A dependency that authenticates and checks the role before the body is even validated."""

    async def dependency(request: Request) -> Principal:
        caller = await principal(request)
        require_role(caller, *roles)
        return caller

    return Depends(dependency)


Caller = Annotated[Principal, Depends(principal)]
AdminCaller = Annotated[Principal, caller_with("admin")]
StaffCaller = Annotated[Principal, caller_with("admin", "broker")]
SeekerCaller = Annotated[Principal, caller_with("seeker")]
ProviderCaller = Annotated[Principal, caller_with("provider")]
Store = Annotated[CatalogStore, Depends(store_of)]


def _jsonable(doc: dict[str, Any]) -> Any:
    return json.loads(json.dumps(doc, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))


# ---- organizations and tokens -------------------------------------------------------------------
@router.post("/organizations", status_code=201, tags=["organizations"])
async def create_organization(caller: AdminCaller, body: OrganizationCreate, store: Store) -> dict[str, Any]:
    return _jsonable(org_view(await store.create_org(body)))


@router.get("/organizations", tags=["organizations"])
async def list_organizations(
    caller: StaffCaller,
    store: Store,
    type: Literal["country_office", "solution_provider", "broker"] | None = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    return {"items": [_jsonable(org_view(d)) for d in await store.list_orgs(type, name)]}


@router.get("/organizations/{org_id}", tags=["organizations"])
async def get_organization(org_id: str, caller: Caller, store: Store) -> dict[str, Any]:
    doc = await store.get_org(org_id)
    if doc is None:
        raise ApiError(404, f"organization {org_id} not found")
    return _jsonable(org_view(doc))


@router.post("/tokens", status_code=201, tags=["organizations"])
async def create_token(caller: AdminCaller, body: TokenCreate, store: Store) -> dict[str, Any]:
    org = await store.get_org(body.organization_id)
    if org is None:
        raise ApiError(404, f"organization {body.organization_id} not found")
    token, doc = await store.issue_token(org, body.expires_in_days)
    return {
        "token": token,
        "id": doc["token_id"],
        "organization_id": org["_id"],
        "role": doc["role"],
        "expires_at": doc["expires_at"].isoformat() if doc["expires_at"] else None,
    }


@router.delete("/tokens/{token_id}", tags=["organizations"])
async def revoke_token(token_id: str, caller: AdminCaller, store: Store) -> dict[str, Any]:
    if not await store.revoke_token(token_id):
        raise ApiError(404, f"active token {token_id} not found")
    return {"id": token_id, "revoked": True}


# ---- needs and offers -----------------------------------------------------------------------
def _request_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


async def _create(kind: str, body: NeedCreate | OfferCreate, caller: Principal, store: CatalogStore, key: str | None) -> JSONResponse:
    org = await store.get_org(caller.organization_id or "")
    if org is None:
        raise ApiError(403, "the organization of this token no longer exists")
    if key is not None and not (1 <= len(key) <= 200):
        raise ApiError(422, "Idempotency-Key must be 1–200 characters", details=[{"path": "$.headers.Idempotency-Key", "message": "length"}])
    status, view = await store.create_item(kind, caller, org, body, key, _request_hash(body.model_dump(mode="json")))
    return JSONResponse(_jsonable(view), status_code=status, headers={"ETag": etag_for(view["revision"]), "Location": f"/v1/{kind}s/{view['id']}"})


@router.post("/needs", status_code=201, tags=["needs"])
async def create_need(
    caller: SeekerCaller, body: NeedCreate, store: Store, idempotency_key: Annotated[str | None, Header()] = None
) -> JSONResponse:
    return await _create("need", body, caller, store, idempotency_key)


@router.post("/offers", status_code=201, tags=["offers"])
async def create_offer(
    caller: ProviderCaller, body: OfferCreate, store: Store, idempotency_key: Annotated[str | None, Header()] = None
) -> JSONResponse:
    return await _create("offer", body, caller, store, idempotency_key)


def _check_id(value: str, what: str) -> str:
    import re

    if not re.match(ID_PATTERN, value):
        raise ApiError(404, f"{what} {value[:80]!r} not found")
    return value


async def _get(kind: str, item_id: str, store: CatalogStore) -> JSONResponse:
    doc = await store.get_item(kind, _check_id(item_id, kind))
    if doc is None:
        raise ApiError(404, f"{kind} {item_id} not found")
    return JSONResponse(_jsonable(item_view(doc)), headers={"ETag": etag_for(doc["revision"])})


@router.get("/needs/{item_id}", tags=["needs"])
async def get_need(item_id: str, caller: Caller, store: Store) -> JSONResponse:
    return await _get("need", item_id, store)


@router.get("/offers/{item_id}", tags=["offers"])
async def get_offer(item_id: str, caller: Caller, store: Store) -> JSONResponse:
    return await _get("offer", item_id, store)


async def _patch(kind: str, item_id: str, patch: Any, caller: Principal, store: CatalogStore, if_match: str | None) -> JSONResponse:
    _check_id(item_id, kind)
    if not isinstance(patch, dict):
        raise ApiError(422, "the request is not valid", details=[{"path": "$", "message": "body must be a JSON object"}])
    expected = parse_if_match(if_match)
    if expected is None:
        raise ApiError(428, "PATCH needs an If-Match header with the ETag from your last GET")
    try:
        doc = await store.update_item(kind, item_id, caller, patch, expected)
    except ValidationError as exc:
        raise ApiError(422, "the request is not valid", details=validation_details(list(exc.errors()))) from exc
    return JSONResponse(_jsonable(item_view(doc)), headers={"ETag": etag_for(doc["revision"])})


PatchBody = Annotated[dict[str, Any], Body(description="Any subset of the create fields")]


@router.patch("/needs/{item_id}", tags=["needs"])
async def patch_need(item_id: str, patch: PatchBody, caller: Caller, store: Store, if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    return await _patch("need", item_id, patch, caller, store, if_match)


@router.patch("/offers/{item_id}", tags=["offers"])
async def patch_offer(item_id: str, patch: PatchBody, caller: Caller, store: Store, if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    return await _patch("offer", item_id, patch, caller, store, if_match)


@router.delete("/needs/{item_id}", tags=["needs"])
async def withdraw_need(item_id: str, caller: Caller, store: Store) -> dict[str, Any]:
    return _jsonable(item_view(await store.withdraw_item("need", _check_id(item_id, "need"), caller)))


@router.delete("/offers/{item_id}", tags=["offers"])
async def withdraw_offer(item_id: str, caller: Caller, store: Store) -> dict[str, Any]:
    return _jsonable(item_view(await store.withdraw_item("offer", _check_id(item_id, "offer"), caller)))


async def _list(
    kind: str,
    store: CatalogStore,
    sdg: int | None,
    sector: str | None,
    modality: str | None,
    country: str | None,
    status: str | None,
    language: str | None,
    q: str | None,
    organization_id: str | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    filters = {
        "sdgs": sdg,
        "sectors": sector,
        "modalities": modality,
        "country": country,
        "status": status,
        "languages": language,
        "q": q,
        "organization_id": organization_id,
    }
    docs, next_cursor = await store.list_items(kind, filters, limit, cursor)
    return {"items": [_jsonable(item_view(d)) for d in docs], "next_cursor": next_cursor}


Sdg = Annotated[int | None, Query(ge=1, le=17)]
Code = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")]
Country = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")]
Status = Annotated[Literal["draft", "open", "matched", "closed", "withdrawn"] | None, Query()]
Lang = Annotated[str | None, Query(pattern=r"^[a-z]{2}$")]
Q = Annotated[str | None, Query(max_length=200)]
OrgFilter = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=100)]


@router.get("/needs", tags=["needs"])
async def list_needs(
    caller: Caller, store: Store, sdg: Sdg = None, sector: Code = None, modality: Code = None, country: Country = None,
    status: Status = None, language: Lang = None, q: Q = None, organization_id: OrgFilter = None, limit: Limit = 20, cursor: Cursor = None,
) -> dict[str, Any]:
    return await _list("need", store, sdg, sector, modality, country, status, language, q, organization_id, limit, cursor)


@router.get("/offers", tags=["offers"])
async def list_offers(
    caller: Caller, store: Store, sdg: Sdg = None, sector: Code = None, modality: Code = None, country: Country = None,
    status: Status = None, language: Lang = None, q: Q = None, organization_id: OrgFilter = None, limit: Limit = 20, cursor: Cursor = None,
) -> dict[str, Any]:
    return await _list("offer", store, sdg, sector, modality, country, status, language, q, organization_id, limit, cursor)


# ---- matches --------------------------------------------------------------------------------
MatchStatus = Annotated[Literal["proposed", "approved", "rejected", "retracted"] | None, Query()]


async def _item_matches(kind: str, item_id: str, caller: Principal, store: CatalogStore, status: str | None, limit: int) -> dict[str, Any]:
    doc = await store.get_item(kind, _check_id(item_id, kind))
    if doc is None:
        raise ApiError(404, f"{kind} {item_id} not found")
    if not (caller.role in ("admin", "broker") or caller.organization_id == doc["organization_id"]):
        raise ApiError(403, f"only the {kind}'s owner, a broker or an admin may see its matches")
    query: dict[str, Any] = {f"{kind}_id": item_id}
    query["status"] = status if status else {"$ne": "retracted"}
    return {"items": [_jsonable(match_view(m)) for m in await store.list_matches(query, limit)]}


@router.get("/needs/{item_id}/matches", tags=["matches"])
async def need_matches(item_id: str, caller: Caller, store: Store, status: MatchStatus = None, limit: Annotated[int, Query(ge=1, le=100)] = 50) -> dict[str, Any]:
    return await _item_matches("need", item_id, caller, store, status, limit)


@router.get("/offers/{item_id}/matches", tags=["matches"])
async def offer_matches(item_id: str, caller: Caller, store: Store, status: MatchStatus = None, limit: Annotated[int, Query(ge=1, le=100)] = 50) -> dict[str, Any]:
    return await _item_matches("offer", item_id, caller, store, status, limit)


@router.get("/matches", tags=["matches"])
async def list_matches(caller: StaffCaller, store: Store, status: MatchStatus = None, limit: Annotated[int, Query(ge=1, le=100)] = 50) -> dict[str, Any]:
    query: dict[str, Any] = {"status": status} if status else {}
    return {"items": [_jsonable(match_view(m)) for m in await store.list_matches(query, limit)]}


async def _visible_match(match_id: str, caller: Principal, store: CatalogStore) -> dict[str, Any]:
    import re

    if not re.match(MATCH_ID_PATTERN, match_id):
        raise ApiError(404, f"match {match_id[:140]!r} not found")
    doc = await store.get_match(match_id)
    if doc is None:
        raise ApiError(404, f"match {match_id} not found")
    if not (caller.role in ("admin", "broker") or caller.organization_id in (doc["need_organization_id"], doc["offer_organization_id"])):
        raise ApiError(403, "only the parties, a broker or an admin may see this match")
    return doc


@router.get("/matches/{match_id}", tags=["matches"])
async def get_match(match_id: str, caller: Caller, store: Store) -> dict[str, Any]:
    return _jsonable(match_view(await _visible_match(match_id, caller, store)))


@router.post("/matches/{match_id}/decision", tags=["matches"])
async def decide_match(match_id: str, caller: StaffCaller, body: DecisionIn, store: Store) -> dict[str, Any]:
    await _visible_match(match_id, caller, store)
    return _jsonable(match_view(await store.decide(match_id, caller, body)))


# ---- taxonomy -------------------------------------------------------------------------------
def _taxonomy_response(request: Request, items: list[dict[str, Any]]) -> Response:
    body = json.dumps({"items": items}, ensure_ascii=False, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=3600"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _dump(entries: list[Any]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json") if hasattr(e, "model_dump") else dict(e) for e in entries]


@router.get("/taxonomy/sectors", tags=["taxonomy"])
async def taxonomy_sectors(request: Request, caller: Caller) -> Response:
    return _taxonomy_response(request, _dump(reference.sectors()))


@router.get("/taxonomy/modalities", tags=["taxonomy"])
async def taxonomy_modalities(request: Request, caller: Caller) -> Response:
    return _taxonomy_response(request, _dump(reference.modalities()))


@router.get("/taxonomy/sdgs", tags=["taxonomy"])
async def taxonomy_sdgs(request: Request, caller: Caller) -> Response:
    return _taxonomy_response(request, _dump(reference.sdgs()))


@router.get("/taxonomy/countries", tags=["taxonomy"])
async def taxonomy_countries(request: Request, caller: Caller) -> Response:
    return _taxonomy_response(request, _dump(reference.countries()))
