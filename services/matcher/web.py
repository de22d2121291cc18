"""The matcher's HTTP views on MATCHER_PORT (served by faust's web server)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import faust
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict, ValidationError

from services.matcher.app import MatcherRuntime
from services.matcher.scorer import RulesScorer, to_match_item
from services.matcher.scoring import MatchItem, score_pair
from ssmatch.auth import TokenAuthority
from ssmatch.mongo import make_client


class ScoreRequest(BaseModel):
    """Either stored ids or full items (as in the catalog's need/offer JSON)."""

    model_config = ConfigDict(extra="forbid")
    need_id: str | None = None
    offer_id: str | None = None
    need: dict[str, Any] | None = None
    offer: dict[str, Any] | None = None


def _error(view: View, status: int, code: str, message: str, details: Any = None) -> Response:
    return view.json({"error": {"code": code, "message": message, "details": details}}, status=status)


def register(app: faust.App, runtime: MatcherRuntime) -> None:
    authority_holder: dict[str, TokenAuthority] = {}

    async def authorized(view: View, request: Request) -> Response | None:
        if "a" not in authority_holder:
            db = make_client(runtime.settings.mongodb_uri).get_database(runtime.settings.catalog_db)
            authority_holder["a"] = TokenAuthority(db, runtime.settings.admin_token)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(view, 401, "unauthorized", "missing bearer token")
        if await authority_holder["a"].resolve(token.strip()) is None:
            return _error(view, 401, "unauthorized", "invalid, expired or revoked token")
        return None

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            ready = runtime.ready
            return self.json(
                {"status": "ok" if ready else "starting", "assigned": runtime.assigned, "state_loaded": bool(runtime.state and runtime.state.loaded)},
                status=200 if ready else 503,
            )

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            counts: dict[str, Any] = {}
            if runtime.state is not None:
                counts = {k: len(v) for k, v in runtime.state.items.items()}
            return self.json(
                {
                    "events_processed_total": runtime.processed_total,
                    "events_deadlettered_total": runtime.deadlettered_total,
                    "matches_proposed_total": runtime.proposed_total,
                    "items_in_state": counts,
                    "rules_version": runtime.scorer.rules_version,
                }
            )

    @app.page("/v1/rules")
    class RulesView(View):
        async def get(self, request: Request) -> Response:
            if (denied := await authorized(self, request)) is not None:
                return denied
            scorer = runtime.scorer
            if not isinstance(scorer, RulesScorer):
                return self.json({"version": scorer.rules_version})
            return self.json({"version": scorer.rules_version, "rules": scorer.rules.model_dump(mode="json")})

    @app.page("/v1/score")
    class ScoreView(View):
        async def post(self, request: Request) -> Response:
            """Explain any need/offer pair without storing anything."""
            if (denied := await authorized(self, request)) is not None:
                return denied
            scorer = runtime.scorer
            if not isinstance(scorer, RulesScorer):
                return _error(self, 503, "unavailable", "this matcher runs without a rules scorer")
            try:
                body = ScoreRequest.model_validate(json.loads(await request.read() or b"{}"))
            except (ValueError, ValidationError) as exc:
                return _error(self, 422, "validation_failed", "the request is not valid", str(exc)[:1000])
            service = await runtime.ensure_started()
            items: dict[str, MatchItem] = {}
            for kind in ("need", "offer"):
                given, ref = getattr(body, kind), getattr(body, f"{kind}_id")
                if given is not None:
                    try:
                        items[kind] = MatchItem.model_validate({"id": f"adhoc-{kind}", "organization_id": f"adhoc-{kind}-org", **given, "kind": kind})
                    except ValidationError as exc:
                        return _error(self, 422, "validation_failed", f"{kind} is not valid", json.loads(exc.json()))
                elif ref is not None:
                    doc = service.state.get(kind, ref)
                    if doc is None:
                        return _error(self, 404, "not_found", f"{kind} {ref} is not known to the matcher")
                    items[kind] = to_match_item(doc)
                else:
                    return _error(self, 422, "validation_failed", f"give {kind} or {kind}_id")
            missing = [k for k, it in items.items() if it.embedding is None]
            if missing:
                texts = [scorer.item_text(items[k].model_dump()) for k in missing]
                vectors = await asyncio.to_thread(scorer.embed, texts)
                for k, vec in zip(missing, vectors, strict=True):
                    items[k] = items[k].model_copy(update={"embedding": vec})
            score = score_pair(items["need"], items["offer"], scorer.rules, centroids=service.state.centroids)
            return self.json({"score": score.total, "excluded": score.excluded, "explanation": score.explanation()})
