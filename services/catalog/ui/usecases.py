"""The pages' side of the catalog's use cases (`services/catalog/service.py`): the same functions the JSON
API calls, with the page's inputs turned into the service's models and its refusals (DomainError) into
ApiError for the page to show. Nothing here reads the store itself."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from pydantic import ValidationError

from services.catalog import service
from services.catalog.api.errors import status_of
from services.catalog.domain import matches as match_rules
from services.catalog.domain.errors import DomainError
from services.catalog.models import (
    BulkDecisionsIn,
    DecisionIn,
    ItemListIn,
    LifecycleIn,
    NeedCreate,
    OfferCreate,
    QueueFilters,
    QueuePageIn,
)
from services.catalog.service import Catalog
from ssmatch.auth import Principal
from ssmatch.http import ApiError

T = TypeVar("T")


async def _run(call: Awaitable[T]) -> T:
    """Await a use case; a refusal becomes an ApiError with the status the API would answer."""
    try:
        return await call
    except DomainError as exc:
        raise ApiError(status_of(exc), exc.message, code=exc.code, details=exc.details) from exc


async def org_of(c: Catalog, caller: Principal) -> dict[str, Any]:
    org = await c.store.get_org(caller.organization_id or "")
    if org is None:
        raise ApiError(403, "the organization of this token no longer exists")
    return org


# ---- items -----------------------------------------------------------------------------------------
async def post_item(c: Catalog, caller: Principal, kind: str, fields: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    """Validate (ValidationError for the form to show) and post a need or an offer."""
    body = (NeedCreate if kind == "need" else OfferCreate).model_validate(fields)
    result = await _run(service.post_item(c, caller, kind, body, idempotency_key))  # type: ignore[arg-type]
    return result.item


async def edit_item(c: Catalog, caller: Principal, kind: str, item_id: str, patch: dict[str, Any], revision: int) -> dict[str, Any]:
    return await _run(service.edit_item(c, caller, kind, item_id, patch, f'"{revision}"'))  # type: ignore[arg-type]


async def withdraw_item(c: Catalog, caller: Principal, kind: str, item_id: str) -> dict[str, Any]:
    return await _run(service.withdraw_item(c, caller, kind, item_id))  # type: ignore[arg-type]


async def get_item(c: Catalog, caller: Principal, kind: str, item_id: str) -> dict[str, Any]:
    return await _run(service.get_item(c, caller, kind, item_id))  # type: ignore[arg-type]


async def my_items(c: Catalog, caller: Principal, kind: str, limit: int = 100) -> list[dict[str, Any]]:
    page = await _run(service.list_items(c, caller, kind, ItemListIn(organization_id=caller.organization_id, limit=limit)))  # type: ignore[arg-type]
    return page["items"]  # type: ignore[no-any-return]


async def search_items(c: Catalog, caller: Principal, kind: str, q: str, credential: str | None, limit: int = 20) -> dict[str, Any]:
    """Needs or offers by words and meaning, best first (the JSON API's `q` with `sort=relevance`)."""
    return await _run(service.list_items(c, caller, kind, ItemListIn(q=q, sort="relevance", limit=limit), credential))  # type: ignore[arg-type]


async def item_matches(c: Catalog, caller: Principal, kind: str, item_id: str) -> list[dict[str, Any]]:
    return await _run(service.item_matches(c, caller, kind, item_id))  # type: ignore[arg-type]


# ---- matches -----------------------------------------------------------------------------------------
async def get_match(c: Catalog, caller: Principal, match_id: str) -> dict[str, Any]:
    return await _run(service.get_match(c, caller, match_id))


async def party_matches(c: Catalog, caller: Principal, limit: int = 100) -> list[dict[str, Any]]:
    return await _run(service.party_matches(c, caller, limit))


def queue_page_in(filters: dict[str, Any], limit: int, cursor: str | None) -> QueuePageIn:
    try:
        return QueuePageIn.model_validate({**filters, "limit": limit, "cursor": cursor})
    except ValidationError as exc:
        raise ApiError(422, "; ".join(f"{f}: {m}" for f, m in validation_messages(exc))) from exc


async def list_queue(c: Catalog, caller: Principal, filters: dict[str, Any], limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    page = await _run(service.list_queue(c, caller, queue_page_in(filters, limit, cursor)))
    return page["items"], page["next_cursor"]


async def claim(c: Catalog, caller: Principal, match_id: str) -> dict[str, Any] | None:
    """Hold the match while the broker reviews it; None when someone else holds it (the page says so)."""
    try:
        return await service.claim(c, caller, match_id)
    except DomainError:
        return None


async def release(c: Catalog, caller: Principal, match_id: str) -> None:
    await _run(service.release(c, caller, match_id))


async def decide(c: Catalog, caller: Principal, match_id: str, decision: str, note: str | None) -> dict[str, Any]:
    return await _run(service.decide(c, caller, match_id, DecisionIn(decision=decision, note=note or None)))  # type: ignore[arg-type]


async def bulk_decide(c: Catalog, caller: Principal, decisions: list[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
    """Each decision applied or refused alone (at most 50)."""
    if not decisions:
        return []
    try:
        body = BulkDecisionsIn.model_validate({"decisions": [{"match_id": m, "decision": d, "note": n} for m, d, n in decisions[:50]]})
    except ValidationError as exc:
        raise ApiError(422, "; ".join(f"{f}: {m}" for f, m in validation_messages(exc))) from exc
    results = await _run(service.decide_many(c, caller, body))
    return [{"match_id": r.match_id, "status": r.status, "error": r.error.message if r.error else None} for r in results]


def allowed_steps(match: dict[str, Any], caller: Principal) -> list[str]:
    """The lifecycle steps that may follow the match's state for this caller (responses are a party's)."""
    if match.get("status") != "approved":
        return []
    allowed = match_rules.NEXT.get(match.get("lifecycle"), frozenset())
    party = match_rules.party_of(caller, match)
    return [e for e in match_rules.LIFECYCLE_EVENTS if e in allowed and (party is not None or e not in match_rules.RESPONSES)]


def accepts_outcome() -> bool:
    return "outcome" in LifecycleIn.model_fields


async def record_step(c: Catalog, caller: Principal, match_id: str, event: str, note: str | None, outcome: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"event": event, "note": note or None}
    if outcome is not None:
        data["outcome"] = outcome
    body = LifecycleIn.model_validate(data)  # ValidationError: the page names the fields
    return await _run(service.record_step(c, caller, match_id, body))


# ---- reports ------------------------------------------------------------------------------------------
async def reports_summary(c: Catalog, caller: Principal, filters: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        f = QueueFilters.model_validate(filters or {})
    except ValidationError as exc:
        raise ApiError(422, "; ".join(f"{f}: {m}" for f, m in validation_messages(exc))) from exc
    return await _run(service.reports_summary(c, caller, f))


def request_hash(body: Any) -> str:
    return service.request_hash(body)


def validation_messages(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, message) pairs for a form."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if not isinstance(p, int)) or "form"
        out.append((loc, str(err.get("msg", "invalid"))))
    return out
