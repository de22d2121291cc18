"""Routes of organizations, tokens, bulk import and the taxonomy; the router of the whole JSON API."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import File, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from services.catalog import importer, service
from services.catalog.api.common import ETAG_HEADER, make_router, ok
from services.catalog.api.common import errors as _errors
from services.catalog.api.common import jsonable as _jsonable
from services.catalog.api.deps import AdminCaller, Authority, Caller, CatalogDep, ImporterCaller, StaffCaller, Store
from services.catalog.models import (
    ImportResult,
    OrganizationCreate,
    OrganizationOut,
    OrganizationPage,
    OrganizationUpdate,
    TaxonomyPage,
    TokenCreate,
    TokenOut,
    TokenRevoked,
)
from services.catalog.store import org_view
from ssmatch import reference
from ssmatch.http import ApiError

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
router = make_router()


def _check_id(value: str, what: str) -> str:
    import re

    if not re.match(ID_PATTERN, value):
        raise ApiError(404, f"{what} {value[:80]!r} not found")
    return value


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
async def get_organization(org_id: str, caller: Caller, catalog: CatalogDep) -> JSONResponse:
    """`contact` is null unless the caller is the organization itself, a broker, an admin, or the other
    party of an approved match with it (introductions are the broker's job)."""
    return ok(await service.get_organization(catalog, caller, org_id))


@router.patch("/organizations/{org_id}", tags=["organizations"], response_model=OrganizationOut, responses=_errors(403, 404, 413, 422))
async def update_organization(org_id: str, caller: Caller, catalog: CatalogDep, body: OrganizationUpdate) -> JSONResponse:
    """The organization itself (or an admin) changes its name, language or contact; `contact: null`
    removes it. Published as `organization.contact_changed` or `organization.updated`."""
    return ok(await service.update_organization(catalog, caller, org_id, body))


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
async def revoke_token(token_id: str, caller: AdminCaller, store: Store, authority: Authority) -> JSONResponse:
    if not await store.revoke_token(_check_id(token_id, "active token")):
        raise ApiError(404, f"active token {token_id} not found")
    authority.forget(token_id)  # refused from the next request on, not after the cache's lifetime
    return ok({"id": token_id, "revoked": True})


def _request_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


async def _org_of(caller: Any, store: Any) -> dict[str, Any]:
    org = await store.get_org(caller.organization_id or "")
    if org is None:
        raise ApiError(403, "the organization of this token no longer exists")
    return org


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
