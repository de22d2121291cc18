"""Routes of the broker queue, claims, decisions, lifecycle steps and the reports summary."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query
from fastapi.responses import JSONResponse

from services.catalog import service
from services.catalog.api.common import errors, jsonable, make_router, ok
from services.catalog.api.deps import Caller, CatalogDep, StaffCaller
from services.catalog.api.errors import error_body, status_of
from services.catalog.api.items import REGION_NAMES
from services.catalog.models import (
    BulkDecisionsIn,
    BulkDecisionsOut,
    ClaimOut,
    DecisionIn,
    LifecycleIn,
    MatchOut,
    MatchPage,
    QueueFilters,
    QueuePageIn,
    ReportSummary,
)

router = make_router()

MatchStatus = Annotated[Literal["proposed", "approved", "rejected", "retracted"] | None, Query(description="default: every status")]
Sdg = Annotated[int | None, Query(ge=1, le=17, description="an SDG of the need or the offer")]
Code = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")]
Region = Annotated[str | None, Query(max_length=80, description="UN M49 region or sub-region of the need's country (case-insensitive)",
                                     json_schema_extra={"enum": REGION_NAMES})]
Group = Annotated[Literal["LDC", "LLDC", "SIDS"] | None, Query(description="UN group of the need's or the offer's country")]
Lang = Annotated[str | None, Query(pattern=r"^[a-z]{2}$")]
Score = Annotated[float | None, Query(ge=0, le=1)]
Age = Annotated[float | None, Query(ge=0, le=36500, description="days since the match was proposed")]
Sort = Annotated[Literal["score", "age"], Query(description="`score`: best first (default); `age`: oldest proposal first")]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200, description="the previous page's next_cursor")]


@router.get("/matches", tags=["matches"], response_model=MatchPage, responses=errors(403, 422))
async def list_matches(
    caller: StaffCaller, catalog: CatalogDep, status: MatchStatus = None, sdg: Sdg = None, sector: Code = None, modality: Code = None,
    region: Region = None, group: Group = None, need_language: Lang = None, offer_language: Lang = None,
    min_score: Score = None, max_score: Score = None, min_age_days: Age = None, max_age_days: Age = None,
    sort: Sort = "score", limit: Limit = 50, cursor: Cursor = None,
) -> JSONResponse:
    """The review queue: filtered, sorted, cursor-paged (`next_cursor` null on the last page); each row
    names the broker holding a claim on it (`claimed_by`, `claimed_until`)."""
    params = QueuePageIn(status=status, sdg=sdg, sector=sector, modality=modality, region=region, group=group,
                         need_language=need_language, offer_language=offer_language, min_score=min_score, max_score=max_score,
                         min_age_days=min_age_days, max_age_days=max_age_days, sort=sort, limit=limit, cursor=cursor)
    return ok(await service.list_queue(catalog, caller, params))


@router.get("/matches/{match_id}", tags=["matches"], response_model=MatchOut, responses=errors(403, 404))
async def get_match(match_id: str, caller: Caller, catalog: CatalogDep) -> JSONResponse:
    return ok(await service.get_match(catalog, caller, match_id))


@router.post("/matches/{match_id}/claim", tags=["matches"], response_model=ClaimOut, responses=errors(403, 404, 409))
async def claim_match(match_id: str, caller: StaffCaller, catalog: CatalogDep) -> JSONResponse:
    """Hold a proposed match for a few minutes while reviewing it (the holder may renew); 409 while
    another broker holds it."""
    return ok(await service.claim(catalog, caller, match_id))


@router.delete("/matches/{match_id}/claim", tags=["matches"], response_model=ClaimOut, responses=errors(403, 404, 409))
async def release_match(match_id: str, caller: StaffCaller, catalog: CatalogDep) -> JSONResponse:
    """Release your claim (an admin may release anyone's); 409 when another broker holds it."""
    return ok(await service.release(catalog, caller, match_id))


@router.post("/matches/decisions", tags=["matches"], response_model=BulkDecisionsOut, responses=errors(403, 413, 422))
async def decide_matches(caller: StaffCaller, body: BulkDecisionsIn, catalog: CatalogDep) -> JSONResponse:
    """Up to 50 decisions; one result per match, in order, each applied or refused alone."""
    results = await service.decide_many(catalog, caller, body)
    return ok({"results": [
        {"match_id": r.match_id, "status": r.status, "http_status": status_of(r.error) if r.error else 200,
         "error": error_body(r.error) if r.error else None}
        for r in results
    ]})


@router.post("/matches/{match_id}/decision", tags=["matches"], response_model=MatchOut, responses=errors(403, 404, 409, 413, 422))
async def decide_match(match_id: str, caller: StaffCaller, body: DecisionIn, catalog: CatalogDep) -> JSONResponse:
    """409 when the match is no longer proposed, is claimed by another broker, or (approve) its need or
    offer is no longer open (`need_not_open` / `offer_not_open`)."""
    return ok(await service.decide(catalog, caller, match_id, body))


@router.post("/matches/{match_id}/lifecycle", tags=["matches"], response_model=MatchOut, responses=errors(403, 404, 409, 413, 422))
async def match_lifecycle(match_id: str, caller: Caller, body: LifecycleIn, catalog: CatalogDep) -> JSONResponse:
    """After approval: each party responds (interested / not_interested), then agreement_reached →
    in_progress → completed (with `outcome`), or declined at any step. 409 when it does not follow."""
    return ok(await service.record_step(catalog, caller, match_id, body))


@router.get("/reports/summary", tags=["reports"], response_model=ReportSummary, responses=errors(403, 422))
async def reports_summary(
    caller: StaffCaller, catalog: CatalogDep, status: MatchStatus = None, sdg: Sdg = None, sector: Code = None, modality: Code = None,
    region: Region = None, group: Group = None, need_language: Lang = None, offer_language: Lang = None,
    min_score: Score = None, max_score: Score = None, min_age_days: Age = None, max_age_days: Age = None,
) -> JSONResponse:
    """Counts by SDG, region and sector, the funnel, shares, medians, outcomes and a monthly series
    (shape documented in services/catalog/domain/reports.py and the README)."""
    filters = QueueFilters(status=status, sdg=sdg, sector=sector, modality=modality, region=region, group=group,
                           need_language=need_language, offer_language=offer_language, min_score=min_score, max_score=max_score,
                           min_age_days=min_age_days, max_age_days=max_age_days)
    return ok(jsonable(await service.reports_summary(catalog, caller, filters)))
