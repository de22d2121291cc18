"""The matcher's OpenAPI 3.1 document, built from the request/response models and the route table
below (faust's web views carry no schema of their own)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.matcher.http_models import (
    CentringRebuilt,
    CentringResponse,
    Health,
    RulesResponse,
    ScoreRequest,
    ScoreResponse,
    SearchRequest,
    SearchResponse,
)
from ssmatch.http import ErrorBody

MODELS: tuple[type[BaseModel], ...] = (ErrorBody, ScoreRequest, ScoreResponse, SearchRequest, SearchResponse, RulesResponse, CentringResponse,
                                       CentringRebuilt, Health)
ERRORS = {
    "401": "no, or an invalid, expired or revoked bearer token",
    "403": "the token's role may not do this",
    "404": "unknown item",
    "405": "method not allowed",
    "413": "body over 1 MB",
    "422": "the body fails validation",
    "503": "the catalog cannot check the token right now, or the worker is starting",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _operation(summary: str, ok: type[BaseModel], errors: tuple[str, ...], body: type[BaseModel] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "security": [{"bearer": []}],
                          "responses": {"200": _json(ok, "OK"), **{code: _json(ErrorBody, ERRORS[code]) for code in errors}}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    _, defs = models_json_schema([(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}")
    auth = ("401", "405", "503")
    return {
        "openapi": "3.1.0",
        "info": {"title": "South-South Match — matcher", "version": "1.0.0",
                 "description": "Explains any need/offer pair with the rules and centring snapshot in force; the rules and the snapshot."},
        "paths": {
            "/v1/score": {"post": _operation("Score and explain a pair (stores nothing)", ScoreResponse, (*auth, "404", "413", "422"), ScoreRequest)},
            "/v1/search": {"post": _operation("The open items nearest to a query by meaning (any language)", SearchResponse,
                                              (*auth, "413", "422"), SearchRequest)},
            "/v1/rules": {"get": _operation("The scoring rules in force", RulesResponse, auth)},
            "/v1/centring": {
                "get": _operation("The centring snapshot in force", CentringResponse, auth),
                "post": _operation("Rebuild the centring snapshot from the open items (admin); every worker rescores", CentringRebuilt, (*auth, "403")),
            },
            "/healthz": {"get": {"summary": "Ready when assigned and loaded", "security": [],
                                 "responses": {"200": _json(Health, "ready"), "503": _json(Health, "starting")}}},
        },
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a token from the catalog's POST /v1/tokens, or SSMATCH_ADMIN_TOKEN"}},
        },
    }
