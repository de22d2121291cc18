"""Shared bits of the route modules: the router factory, OpenAPI error entries, JSON answers."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.catalog.api.deps import AuthedRoute
from services.catalog.models import ErrorBody

ETAG_HEADER = {"ETag": {"description": "the item's revision, for If-Match", "schema": {"type": "string"}}}
_DESCRIBED = {
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


def make_router() -> APIRouter:
    return APIRouter(prefix="/v1", route_class=AuthedRoute)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers of a route (all share the contract's error body)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in (401, 429, *statuses):
        entry: dict[str, Any] = {"model": ErrorBody, "description": _DESCRIBED[status]}
        if status == 429:
            entry["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
        out[status] = entry
    return out


def _plain(value: Any) -> Any:
    """What JSON cannot say itself: dates as ISO 8601, anything else as its text (ObjectIds)."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def jsonable(doc: Any) -> Any:
    return json.loads(json.dumps(doc, default=_plain))


class PlainJSONResponse(JSONResponse):
    """JSONResponse's bytes for `jsonable(content)`, rendered in one pass: the round trip through Python
    objects and back cost ~0.55 ms of a 20-item page's ~0.9 (measured)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_plain, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


def ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return PlainJSONResponse(body, status_code=status, headers=headers)
