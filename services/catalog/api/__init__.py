"""The catalog's JSON API edge: `deps` (Annotated dependencies), one module of routes per resource,
`errors` (domain errors → HTTP). Handlers are thin: parse, call `services.catalog.service`, answer."""

from __future__ import annotations

from fastapi import APIRouter

from services.catalog.api import items, matches, routes


def build_router() -> APIRouter:
    router = APIRouter()
    router.include_router(items.router)
    router.include_router(matches.router)
    router.include_router(routes.router)
    return router


router = build_router()
