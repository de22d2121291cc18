"""Routes of needs and offers (and their matches), thin over `services.catalog.service`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Body, Header, Query
from fastapi.responses import JSONResponse

from services.catalog import service
from services.catalog.api.common import ETAG_HEADER, errors, jsonable, make_router, ok
from services.catalog.api.deps import Caller, CatalogDep, Credential, ProviderCaller, SeekerCaller
from services.catalog.domain.items import etag_for
from services.catalog.models import PRINTABLE, ItemListIn, MatchPage, NeedCreate, NeedOut, NeedPage, OfferCreate, OfferOut, OfferPage
from ssmatch import reference
from ssmatch.auth import Principal

router = make_router()

IdempotencyKey = Annotated[
    str | None,
    Header(min_length=1, max_length=200, description="a retry with the same key (per organization) returns the first response and creates nothing"),
]
CREATED_HEADERS = {
    **ETAG_HEADER,
    "Location": {"schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "`true` when this answer repeats an earlier one", "schema": {"type": "string"}},
}


async def _create(kind: service.Kind, body: NeedCreate | OfferCreate, caller: Principal, catalog: service.Catalog, key: str | None) -> JSONResponse:
    result = await service.post_item(catalog, caller, kind, body, key)
    headers = {"ETag": etag_for(result.item["revision"]), "Location": f"/v1/{kind}s/{result.item['id']}"}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return ok(result.item, result.status, headers)


@router.post("/needs", status_code=201, tags=["needs"], response_model=NeedOut, responses={201: {"headers": CREATED_HEADERS}, **errors(403, 409, 413, 422)})
async def create_need(caller: SeekerCaller, body: NeedCreate, catalog: CatalogDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await _create("need", body, caller, catalog, idempotency_key)


@router.post("/offers", status_code=201, tags=["offers"], response_model=OfferOut, responses={201: {"headers": CREATED_HEADERS}, **errors(403, 409, 413, 422)})
async def create_offer(caller: ProviderCaller, body: OfferCreate, catalog: CatalogDep, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return await _create("offer", body, caller, catalog, idempotency_key)


async def _get(kind: service.Kind, item_id: str, caller: Principal, catalog: service.Catalog) -> JSONResponse:
    view = await service.get_item(catalog, caller, kind, item_id)
    return ok(view, headers={"ETag": etag_for(view["revision"])})


@router.get("/needs/{item_id}", tags=["needs"], response_model=NeedOut, responses={200: {"headers": ETAG_HEADER}, **errors(404)})
async def get_need(item_id: str, caller: Caller, catalog: CatalogDep) -> JSONResponse:
    return await _get("need", item_id, caller, catalog)


@router.get("/offers/{item_id}", tags=["offers"], response_model=OfferOut, responses={200: {"headers": ETAG_HEADER}, **errors(404)})
async def get_offer(item_id: str, caller: Caller, catalog: CatalogDep) -> JSONResponse:
    return await _get("offer", item_id, caller, catalog)


PatchBody = Annotated[dict[str, Any], Body(description="Any subset of the create fields")]
# Documented as required (app.py marks it so in the OpenAPI document); declared optional here so that a
# missing header is answered 428 Precondition Required, not 422.
IfMatch = Annotated[str | None, Header(description="the ETag from your last GET (required: 428 without it, 412 when stale)")]
PATCH_ERRORS = {200: {"headers": ETAG_HEADER}, **errors(403, 404, 409, 412, 413, 422, 428)}


async def _patch(kind: service.Kind, item_id: str, patch: Any, caller: Principal, catalog: service.Catalog, if_match: str | None) -> JSONResponse:
    view = await service.edit_item(catalog, caller, kind, item_id, patch, if_match)
    return ok(view, headers={"ETag": etag_for(view["revision"])})


@router.patch("/needs/{item_id}", tags=["needs"], response_model=NeedOut, responses=PATCH_ERRORS)
async def patch_need(item_id: str, patch: PatchBody, caller: Caller, catalog: CatalogDep, if_match: IfMatch = None) -> JSONResponse:
    return await _patch("need", item_id, patch, caller, catalog, if_match)


@router.patch("/offers/{item_id}", tags=["offers"], response_model=OfferOut, responses=PATCH_ERRORS)
async def patch_offer(item_id: str, patch: PatchBody, caller: Caller, catalog: CatalogDep, if_match: IfMatch = None) -> JSONResponse:
    return await _patch("offer", item_id, patch, caller, catalog, if_match)


@router.delete("/needs/{item_id}", tags=["needs"], response_model=NeedOut, responses=errors(403, 404))
async def withdraw_need(item_id: str, caller: Caller, catalog: CatalogDep) -> JSONResponse:
    return ok(await service.withdraw_item(catalog, caller, "need", item_id))


@router.delete("/offers/{item_id}", tags=["offers"], response_model=OfferOut, responses=errors(403, 404))
async def withdraw_offer(item_id: str, caller: Caller, catalog: CatalogDep) -> JSONResponse:
    return ok(await service.withdraw_item(catalog, caller, "offer", item_id))


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
Status = Annotated[
    Literal["draft", "open", "matched", "closed", "withdrawn"] | None,
    Query(description="draft and withdrawn items are listed to their owner, brokers and admins only"),
]
Lang = Annotated[str | None, Query(pattern=r"^[a-z]{2}$")]
Q = Annotated[str | None, Query(max_length=200, pattern=PRINTABLE, description="words to find (any language; no control characters)")]
OrgFilter = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=100)]
Sort = Annotated[
    Literal["recency", "relevance"],
    Query(description="`recency` (newest first, default): with `q`, the items holding every word of it; `relevance`: with `q`, "
                      "items found by their words (title words count double) or by similar meaning in any language (the "
                      "matcher's multilingual vectors), fused by rank; each item's `search` says why it was found"),
]


async def _list(kind: service.Kind, caller: Principal, catalog: service.Catalog, credential: str | None, **query: Any) -> JSONResponse:
    return ok(await service.list_items(catalog, caller, kind, ItemListIn(**query), credential))


@router.get("/needs", tags=["needs"], response_model=NeedPage, responses=errors(422))
async def list_needs(
    caller: Caller, catalog: CatalogDep, credential: Credential, sdg: Sdg = None, sector: Code = None, modality: Code = None,
    country: Country = None, region: Region = None, group: Group = None, status: Status = None, language: Lang = None, q: Q = None,
    organization_id: OrgFilter = None, sort: Sort = "recency", limit: Limit = 20, cursor: Cursor = None,
) -> JSONResponse:
    return await _list("need", caller, catalog, credential, sdg=sdg, sector=sector, modality=modality, country=country, region=region, group=group,
                       status=status, language=language, q=q, organization_id=organization_id, sort=sort, limit=limit, cursor=cursor)


@router.get("/offers", tags=["offers"], response_model=OfferPage, responses=errors(422))
async def list_offers(
    caller: Caller, catalog: CatalogDep, credential: Credential, sdg: Sdg = None, sector: Code = None, modality: Code = None,
    country: Country = None, region: Region = None, group: Group = None, status: Status = None, language: Lang = None, q: Q = None,
    organization_id: OrgFilter = None, sort: Sort = "recency", limit: Limit = 20, cursor: Cursor = None,
) -> JSONResponse:
    return await _list("offer", caller, catalog, credential, sdg=sdg, sector=sector, modality=modality, country=country, region=region, group=group,
                       status=status, language=language, q=q, organization_id=organization_id, sort=sort, limit=limit, cursor=cursor)


MatchStatus = Annotated[Literal["proposed", "approved", "rejected", "retracted"] | None, Query()]
MatchLimit = Annotated[int, Query(ge=1, le=100)]


@router.get("/needs/{item_id}/matches", tags=["matches"], response_model=MatchPage, responses=errors(403, 404, 422))
async def need_matches(item_id: str, caller: Caller, catalog: CatalogDep, status: MatchStatus = None, limit: MatchLimit = 50) -> JSONResponse:
    return ok({"items": jsonable(await service.item_matches(catalog, caller, "need", item_id, status, limit))})


@router.get("/offers/{item_id}/matches", tags=["matches"], response_model=MatchPage, responses=errors(403, 404, 422))
async def offer_matches(item_id: str, caller: Caller, catalog: CatalogDep, status: MatchStatus = None, limit: MatchLimit = 50) -> JSONResponse:
    return ok({"items": jsonable(await service.item_matches(catalog, caller, "offer", item_id, status, limit))})
