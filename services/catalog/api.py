"""Catalog HTTP edges: thin handlers over CatalogStore. Roles and ownership are checked here."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, File, Header, Query, Request, Response, UploadFile
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from services.catalog import importer
from services.catalog.models import (
    DecisionIn,
    ErrorBody,
    ImportResult,
    LifecycleIn,
    MatchOut,
    MatchPage,
    NeedCreate,
    NeedOut,
    NeedPage,
    OfferCreate,
    OfferOut,
    OfferPage,
    OrganizationCreate,
    OrganizationOut,
    OrganizationPage,
    TaxonomyPage,
    TokenCreate,
    TokenOut,
    TokenRevoked,
)
from services.catalog.ratelimit import RateLimiter
from services.catalog.store import (
    CatalogStore,
    etag_for,
    item_view,
    match_view,
    org_view,
    parse_if_match,
    record_lifecycle,
)
from ssmatch import reference
from ssmatch.auth import Principal, Role, TokenAuthority, require_role
from ssmatch.http import ApiError, validation_details

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MATCH_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$"


def store_of(request: Request) -> CatalogStore:
    return request.app.state.store  # type: ignore[no-any-return]


async def authenticate(request: Request) -> Principal:
    """Resolve the bearer token (401) and take one request from its rate-limit bucket (429)."""
    authority: TokenAuthority = request.app.state.authority
    caller = await authority.principal_from_request(request)
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.check(caller)
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


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers of a route (all share the contract's error body)."""
    described = {
        401: "no valid bearer token",
        403: "the token lacks the right",
        404: "unknown id",
        409: "conflict",
        412: "If-Match is stale",
        413: "body too large",
        415: "unsupported file type",
        422: "invalid request (each bad field named by its JSON path)",
        428: "If-Match missing",
        429: "rate limit exceeded (see Retry-After)",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for status in (401, 429, *statuses):
        entry: dict[str, Any] = {"model": ErrorBody, "description": described[status]}
        if status == 429:
            entry["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
        out[status] = entry
    return out


ETAG_HEADER = {"ETag": {"description": "the item's revision, for If-Match", "schema": {"type": "string"}}}
router = APIRouter(prefix="/v1", route_class=AuthedRoute)

Caller = Annotated[Principal, Depends(principal)]
AdminCaller = Annotated[Principal, caller_with("admin")]
StaffCaller = Annotated[Principal, caller_with("admin", "broker")]
SeekerCaller = Annotated[Principal, caller_with("seeker")]
ProviderCaller = Annotated[Principal, caller_with("provider")]
ImporterCaller = Annotated[Principal, caller_with("seeker", "provider")]
Store = Annotated[CatalogStore, Depends(store_of)]


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _jsonable(doc: Any) -> Any:
    return json.loads(json.dumps(doc, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))


# ---- organizations and tokens -------------------------------------------------------------------
@router.post("/organizations", status_code=201, tags=["organizations"], response_model=OrganizationOut, responses=_errors(403, 413, 422))
async def create_organization(caller: AdminCaller, body: OrganizationCreate, store: Store) -> JSONResponse:
    return ok(_jsonable(org_view(await store.create_org(body))), 201)


@router.get("/organizations", tags=["organizations"], response_model=OrganizationPage, responses=_errors(403, 422))
async def list_organizations(
    caller: StaffCaller,
    store: Store,
    type: Literal["country_office", "solution_provider", "broker"] | None = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONResponse:
    return ok({"items": [_jsonable(org_view(d)) for d in await store.list_orgs(type, name)]})


@router.get("/organizations/{org_id}", tags=["organizations"], response_model=OrganizationOut, responses=_errors(404))
async def get_organization(org_id: str, caller: Caller, store: Store) -> JSONResponse:
    doc = await store.get_org(_check_id(org_id, "organization"))
    if doc is None:
        raise ApiError(404, f"organization {org_id} not found")
    return ok(_jsonable(org_view(doc)))


@router.post("/tokens", status_code=201, tags=["organizations"], response_model=TokenOut, responses=_errors(403, 404, 413, 422))
async def create_token(caller: AdminCaller, body: TokenCreate, store: Store) -> JSONResponse:
    org = await store.get_org(body.organization_id)
    if org is None:
        raise ApiError(404, f"organization {body.organization_id} not found")
    token, doc = await store.issue_token(org, body.expires_in_days)
    return ok(
        {
            "token": token,
            "id": doc["token_id"],
            "organization_id": org["_id"],
            "role": doc["role"],
            "expires_at": doc["expires_at"].isoformat() if doc["expires_at"] else None,
        },
        201,
    )


@router.delete("/tokens/{token_id}", tags=["organizations"], response_model=TokenRevoked, responses=_errors(403, 404))
async def revoke_token(token_id: str, caller: AdminCaller, store: Store) -> JSONResponse:
    if not await store.revoke_token(_check_id(token_id, "active token")):
        raise ApiError(404, f"active token {token_id} not found")
    return ok({"id": token_id, "revoked": True})


# ---- needs and offers -----------------------------------------------------------------------
def _request_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


async def _org_of(caller: Principal, store: CatalogStore) -> dict[str, Any]:
    org = await store.get_org(caller.organization_id or "")
    if org is None:
        raise ApiError(403, "the organization of this token no longer exists")
    return org


async def _create(kind: str, body: NeedCreate | OfferCreate, caller: Principal, store: CatalogStore, key: str | None) -> JSONResponse:
    org = await _org_of(caller, store)
    status, view, replayed = await store.create_item(kind, caller, org, body, key, _request_hash(body.model_dump(mode="json")))
    headers = {"ETag": etag_for(view["revision"]), "Location": f"/v1/{kind}s/{view['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(_jsonable(view), status_code=status, headers=headers)


IdempotencyKey = Annotated[
    str | None,
    Header(min_length=1, max_length=200, description="a retry with the same key (per organization) returns the first response and creates nothing"),
]
CREATED_HEADERS = {
    **ETAG_HEADER,
    "Location": {"schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "`true` when this answer repeats an earlier one", "schema": {"type": "string"}},
}


@router.post(
    "/needs", status_code=201, tags=["needs"], response_model=NeedOut, responses={201: {"headers": CREATED_HEADERS}, **_errors(403, 409, 413, 422)}
)
async def create_need(caller: SeekerCaller, body: NeedCreate, store: Store, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await _create("need", body, caller, store, idempotency_key)


@router.post(
    "/offers", status_code=201, tags=["offers"], response_model=OfferOut, responses={201: {"headers": CREATED_HEADERS}, **_errors(403, 409, 413, 422)}
)
async def create_offer(caller: ProviderCaller, body: OfferCreate, store: Store, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await _create("offer", body, caller, store, idempotency_key)


def _check_id(value: str, what: str) -> str:
    if not re.match(ID_PATTERN, value):
        raise ApiError(404, f"{what} {value[:80]!r} not found")
    return value


async def _get(kind: str, item_id: str, store: CatalogStore) -> JSONResponse:
    doc = await store.get_item(kind, _check_id(item_id, kind))
    if doc is None:
        raise ApiError(404, f"{kind} {item_id} not found")
    return JSONResponse(_jsonable(item_view(doc)), headers={"ETag": etag_for(doc["revision"])})


@router.get("/needs/{item_id}", tags=["needs"], response_model=NeedOut, responses={200: {"headers": ETAG_HEADER}, **_errors(404)})
async def get_need(item_id: str, caller: Caller, store: Store) -> JSONResponse:
    return await _get("need", item_id, store)


@router.get("/offers/{item_id}", tags=["offers"], response_model=OfferOut, responses={200: {"headers": ETAG_HEADER}, **_errors(404)})
async def get_offer(item_id: str, caller: Caller, store: Store) -> JSONResponse:
    return await _get("offer", item_id, store)


async def _patch(kind: str, item_id: str, patch: Any, caller: Principal, store: CatalogStore, if_match: str | None) -> JSONResponse:
    _check_id(item_id, kind)
    # Ownership first: a caller who may not change the item learns nothing from If-Match or body checks.
    current = await store.get_item(kind, item_id)
    if current is None:
        raise ApiError(404, f"{kind} {item_id} not found")
    store.check_owner(kind, current, caller)
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
IfMatch = Annotated[str | None, Header(description="the ETag from your last GET (required)")]
PATCH_ERRORS = {200: {"headers": ETAG_HEADER}, **_errors(403, 404, 409, 412, 413, 422, 428)}


@router.patch("/needs/{item_id}", tags=["needs"], response_model=NeedOut, responses=PATCH_ERRORS)
async def patch_need(item_id: str, patch: PatchBody, caller: Caller, store: Store, if_match: IfMatch = None) -> JSONResponse:
    return await _patch("need", item_id, patch, caller, store, if_match)


@router.patch("/offers/{item_id}", tags=["offers"], response_model=OfferOut, responses=PATCH_ERRORS)
async def patch_offer(item_id: str, patch: PatchBody, caller: Caller, store: Store, if_match: IfMatch = None) -> JSONResponse:
    return await _patch("offer", item_id, patch, caller, store, if_match)


@router.delete("/needs/{item_id}", tags=["needs"], response_model=NeedOut, responses=_errors(403, 404))
async def withdraw_need(item_id: str, caller: Caller, store: Store) -> JSONResponse:
    return ok(_jsonable(item_view(await store.withdraw_item("need", _check_id(item_id, "need"), caller))))


@router.delete("/offers/{item_id}", tags=["offers"], response_model=OfferOut, responses=_errors(403, 404))
async def withdraw_offer(item_id: str, caller: Caller, store: Store) -> JSONResponse:
    return ok(_jsonable(item_view(await store.withdraw_item("offer", _check_id(item_id, "offer"), caller))))


def _country_filter(country: str | None, region: str | None, group: str | None) -> set[str] | None:
    """The set of ISO3 codes the country/region/group filters allow together (None: no restriction)."""
    allowed: set[str] | None = {country} if country else None
    if region:
        members = reference.region_members(region)
        if not members:
            raise ApiError(
                422,
                "the request is not valid",
                details=[{"path": "$.region", "in": "query", "message": f"unknown region {region[:80]!r}: use a UN M49 region or sub-region name such as 'Africa' or 'Eastern Africa'", "type": "value_error"}],
            )
        allowed = members if allowed is None else allowed & members
    if group:
        members = reference.region_members(group)
        allowed = members if allowed is None else allowed & members
    return allowed


async def _list(kind: str, store: CatalogStore, params: dict[str, Any]) -> JSONResponse:
    filters = {
        "sdgs": params["sdg"],
        "sectors": params["sector"],
        "modalities": params["modality"],
        "status": params["status"],
        "languages": params["language"],
        "q": params["q"],
        "organization_id": params["organization_id"],
    }
    allowed = _country_filter(params["country"], params["region"], params["group"])
    if allowed is not None:
        filters["country_in"] = allowed
    docs, next_cursor = await store.list_items(kind, filters, params["limit"], params["cursor"], sort=params["sort"])
    return ok({"items": [_jsonable(item_view(d)) for d in docs], "next_cursor": next_cursor})


Sdg = Annotated[int | None, Query(ge=1, le=17)]
Code = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")]
Country = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")]
REGION_NAMES = sorted({n for c in reference.countries() for n in (c.region, c.subregion, c.intermediate_region) if n})
Region = Annotated[
    str | None,
    Query(
        max_length=80,
        description="UN M49 region, sub-region or intermediate region (case-insensitive), e.g. `Africa`, `Eastern Africa`, `South America`",
        json_schema_extra={"enum": REGION_NAMES},
    ),
]
Group = Annotated[Literal["LDC", "LLDC", "SIDS"] | None, Query(description="UN country group of the item's country")]
Status = Annotated[Literal["draft", "open", "matched", "closed", "withdrawn"] | None, Query()]
Lang = Annotated[str | None, Query(pattern=r"^[a-z]{2}$")]
Q = Annotated[str | None, Query(max_length=200)]
OrgFilter = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=100)]
Sort = Annotated[
    Literal["recency", "relevance"],
    Query(description="`recency` (newest first, default) or `relevance` (q terms found in the title, then in the description)"),
]


@router.get("/needs", tags=["needs"], response_model=NeedPage, responses=_errors(422))
async def list_needs(
    caller: Caller, store: Store, sdg: Sdg = None, sector: Code = None, modality: Code = None, country: Country = None,
    region: Region = None, group: Group = None, status: Status = None, language: Lang = None, q: Q = None,
    organization_id: OrgFilter = None, sort: Sort = "recency", limit: Limit = 20, cursor: Cursor = None,
) -> JSONResponse:
    params = dict(sdg=sdg, sector=sector, modality=modality, country=country, region=region, group=group, status=status,
                  language=language, q=q, organization_id=organization_id, sort=sort, limit=limit, cursor=cursor)
    return await _list("need", store, params)


@router.get("/offers", tags=["offers"], response_model=OfferPage, responses=_errors(422))
async def list_offers(
    caller: Caller, store: Store, sdg: Sdg = None, sector: Code = None, modality: Code = None, country: Country = None,
    region: Region = None, group: Group = None, status: Status = None, language: Lang = None, q: Q = None,
    organization_id: OrgFilter = None, sort: Sort = "recency", limit: Limit = 20, cursor: Cursor = None,
) -> JSONResponse:
    params = dict(sdg=sdg, sector=sector, modality=modality, country=country, region=region, group=group, status=status,
                  language=language, q=q, organization_id=organization_id, sort=sort, limit=limit, cursor=cursor)
    return await _list("offer", store, params)


# ---- bulk import ----------------------------------------------------------------------------
@router.post(
    "/imports",
    tags=["imports"],
    response_model=ImportResult,
    responses=_errors(403, 413, 415, 422),
    description=(
        "Upload a CSV or XLSX file of needs (country office) or offers (solution provider). Columns are API field "
        "names (`budget.amount` for nested ones); list fields are separated by `;`. Every row goes through the same "
        "validation as POST /v1/needs; rows are created with an Idempotency-Key derived from the file's hash and "
        "the row number, so uploading the same file again creates nothing twice. `dry_run=true` only validates."
    ),
)
async def import_items(
    caller: ImporterCaller,
    store: Store,
    kind: Annotated[Literal["needs", "offers"], Query()],
    file: Annotated[UploadFile, File(description="CSV (UTF-8) or XLSX; the first row names the columns")],
    dry_run: Annotated[bool, Query()] = False,
) -> JSONResponse:
    item_kind = kind[:-1]
    wanted = "seeker" if item_kind == "need" else "provider"
    if caller.role != wanted:
        raise ApiError(403, f"only a {'country office' if wanted == 'seeker' else 'solution provider'} may import {kind}", details={"role": caller.role})
    org = await _org_of(caller, store)
    data = await file.read()
    try:
        table = importer.read_table(data, file.filename or "")
    except importer.ImportFileError as exc:
        raise ApiError(exc.status, str(exc), details=[{"path": "$.file", "in": "body", "message": str(exc)}]) from exc
    result = await importer.import_rows(store, caller, org, item_kind, table, dry_run=dry_run, request_hash=_request_hash)
    return ok(result)


# ---- matches --------------------------------------------------------------------------------
MatchStatus = Annotated[Literal["proposed", "approved", "rejected", "retracted"] | None, Query()]
MatchLimit = Annotated[int, Query(ge=1, le=100)]


async def _item_matches(kind: str, item_id: str, caller: Principal, store: CatalogStore, status: str | None, limit: int) -> JSONResponse:
    doc = await store.get_item(kind, _check_id(item_id, kind))
    if doc is None:
        raise ApiError(404, f"{kind} {item_id} not found")
    if not (caller.role in ("admin", "broker") or caller.organization_id == doc["organization_id"]):
        raise ApiError(403, f"only the {kind}'s owner, a broker or an admin may see its matches")
    query: dict[str, Any] = {f"{kind}_id": item_id}
    query["status"] = status if status else {"$ne": "retracted"}
    return ok({"items": [_jsonable(match_view(m)) for m in await store.list_matches(query, limit)]})


@router.get("/needs/{item_id}/matches", tags=["matches"], response_model=MatchPage, responses=_errors(403, 404, 422))
async def need_matches(item_id: str, caller: Caller, store: Store, status: MatchStatus = None, limit: MatchLimit = 50) -> JSONResponse:
    return await _item_matches("need", item_id, caller, store, status, limit)


@router.get("/offers/{item_id}/matches", tags=["matches"], response_model=MatchPage, responses=_errors(403, 404, 422))
async def offer_matches(item_id: str, caller: Caller, store: Store, status: MatchStatus = None, limit: MatchLimit = 50) -> JSONResponse:
    return await _item_matches("offer", item_id, caller, store, status, limit)


@router.get("/matches", tags=["matches"], response_model=MatchPage, responses=_errors(403, 422))
async def list_matches(caller: StaffCaller, store: Store, status: MatchStatus = None, limit: MatchLimit = 50) -> JSONResponse:
    query: dict[str, Any] = {"status": status} if status else {}
    return ok({"items": [_jsonable(match_view(m)) for m in await store.list_matches(query, limit)]})


async def _visible_match(match_id: str, caller: Principal, store: CatalogStore) -> dict[str, Any]:
    if not re.match(MATCH_ID_PATTERN, match_id):
        raise ApiError(404, f"match {match_id[:140]!r} not found")
    doc = await store.get_match(match_id)
    if doc is None:
        raise ApiError(404, f"match {match_id} not found")
    if not (caller.role in ("admin", "broker") or caller.organization_id in (doc["need_organization_id"], doc["offer_organization_id"])):
        raise ApiError(403, "only the parties, a broker or an admin may see this match")
    return doc


@router.get("/matches/{match_id}", tags=["matches"], response_model=MatchOut, responses=_errors(403, 404))
async def get_match(match_id: str, caller: Caller, store: Store) -> JSONResponse:
    return ok(_jsonable(match_view(await _visible_match(match_id, caller, store))))


@router.post("/matches/{match_id}/lifecycle", tags=["matches"], response_model=MatchOut, responses=_errors(403, 404, 409, 413, 422))
async def match_lifecycle(match_id: str, caller: Caller, body: LifecycleIn, store: Store) -> JSONResponse:
    """After approval, either party (or a broker) reports: declined, agreement_reached, then completed."""
    await _visible_match(match_id, caller, store)
    return ok(_jsonable(match_view(await record_lifecycle(store, match_id, caller, body))))


@router.post("/matches/{match_id}/decision", tags=["matches"], response_model=MatchOut, responses=_errors(403, 404, 409, 413, 422))
async def decide_match(match_id: str, caller: StaffCaller, body: DecisionIn, store: Store) -> JSONResponse:
    await _visible_match(match_id, caller, store)
    return ok(_jsonable(match_view(await store.decide(match_id, caller, body))))


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


TAXONOMY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": {**ETAG_HEADER, "Cache-Control": {"schema": {"type": "string"}}}},
    304: {"description": "unchanged since the ETag in If-None-Match"},
    **_errors(),
}


@router.get("/taxonomy/sectors", tags=["taxonomy"], response_model=TaxonomyPage, responses=TAXONOMY_RESPONSES)
async def taxonomy_sectors(request: Request, caller: Caller) -> Response:
    return _taxonomy_response(request, _dump(reference.sectors()))


@router.get("/taxonomy/modalities", tags=["taxonomy"], response_model=TaxonomyPage, responses=TAXONOMY_RESPONSES)
async def taxonomy_modalities(request: Request, caller: Caller) -> Response:
    return _taxonomy_response(request, _dump(reference.modalities()))


@router.get("/taxonomy/sdgs", tags=["taxonomy"], response_model=TaxonomyPage, responses=TAXONOMY_RESPONSES)
async def taxonomy_sdgs(request: Request, caller: Caller) -> Response:
    return _taxonomy_response(request, _dump(reference.sdgs()))


@router.get("/taxonomy/countries", tags=["taxonomy"], response_model=TaxonomyPage, responses=TAXONOMY_RESPONSES)
async def taxonomy_countries(request: Request, caller: Caller) -> Response:
    return _taxonomy_response(request, _dump(reference.countries()))
