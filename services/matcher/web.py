"""The matcher's HTTP views on MATCHER_PORT (served by faust's web server)."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from services.matcher.app import MatcherRuntime


def register(app: faust.App, runtime: MatcherRuntime) -> None:
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
