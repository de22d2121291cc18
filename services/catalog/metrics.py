"""The catalog's Prometheus metrics (``/metrics``, text format) and its AsyncAPI document route.

Request latency comes from the shared middleware; the outbox lag (rows not yet published and the age
of the oldest) is read from the store at scrape time; counters are the relay's and the match
projection's totals. The relay's last error text is deliberately not exported (it can carry
addresses); it stays in the logs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import Request

from ssmatch.asyncapi import generate as generate_asyncapi
from ssmatch.metrics import PrometheusMiddleware, ServiceMetrics, consumer_lag


def install(app: FastAPI) -> ServiceMetrics:
    """Add the timing middleware and the ``/metrics`` and ``/asyncapi.json`` routes."""
    metrics = ServiceMetrics("catalog")
    state = app.state
    app.add_middleware(PrometheusMiddleware, metrics=metrics)
    metrics.counter_from("ssmatch_outbox_published", "Outbox rows published to Kafka by this process.", (),
                         lambda: {(): state.relay.published_total})
    metrics.counter_from("ssmatch_outbox_relay_errors", "Relay passes that failed (broker unreachable, ...).", (),
                         lambda: {(): state.relay.errors_total})
    metrics.counter_from("ssmatch_events_processed", "Events handled by this process.", ("consumer",),
                         lambda: {("catalog-matches",): state.projection.processed_total})
    metrics.counter_from("ssmatch_events_deadlettered", "Events this process sent to the dead-letter topic.", ("consumer",),
                         lambda: {("catalog-matches",): state.projection.deadlettered_total})
    metrics.counter_from("ssmatch_rate_limited_requests", "Requests refused with 429.", (),
                         lambda: {(): state.rate_limiter.limited_total})
    for name, attr, doc in (
        ("ssmatch_outbox_relay_takeovers", "takeovers_total", "Times this process took the relay lease over from another holder."),
        ("ssmatch_outbox_relay_lease_lost", "lease_lost_total", "Times this process found its relay lease taken by another."),
        ("ssmatch_outbox_recoveries", "recoveries_total", "Broker losses detected (topics missing or shorter than acknowledged): retained rows re-relayed."),
        ("ssmatch_outbox_recovered_events", "recovered_events_total", "Outbox rows re-relayed after a broker loss."),
        ("ssmatch_outbox_pruned", "pruned_total", "Published outbox rows pruned after the retention period."),
        ("ssmatch_match_facets_enriched", None, "Queue rows given their filter facets by the background enricher."),
    ):
        metrics.counter_from(name, doc, (), (lambda a=attr: {(): getattr(state.relay, a)}) if attr
                             else (lambda: {(): state.enricher.enriched_total}))
    def sync_stat(name: str) -> Any:
        sync = getattr(state, "index_sync", None)
        return sync.stats()[name] if sync is not None else 0

    metrics.counter_from("ssmatch_search_index_rebuilds", "Word index rebuilds from the store (missing, other format, or disagreeing).", (),
                         lambda: {(): sync_stat("search_index_rebuilds_total")})
    metrics.counter_from("ssmatch_search_index_applied", "Item changes applied to the word index.", (),
                         lambda: {(): sync_stat("search_index_applied_total")})
    metrics.counter_from("ssmatch_search_meaning_failures", "Searches by meaning the matcher did not answer (served by words only).", (),
                         lambda: {(): state.catalog.meaning.failures_total if state.catalog.meaning else 0})
    index_ready = metrics.gauge("ssmatch_search_index_ready", "1 once the word index agrees with the store (q is served from it).")
    holds_lease = metrics.gauge("ssmatch_outbox_relay_holds_lease", "1 while this process holds the outbox relay lease.")
    lease_token = metrics.gauge("ssmatch_outbox_relay_lease_token", "Fencing token of the relay lease this process last held.")
    last_recovery = metrics.gauge("ssmatch_outbox_last_recovery_timestamp_seconds", "When the last broker-loss recovery ran (0: never).")
    facets_pending = metrics.gauge("ssmatch_match_facets_pending", "Queue rows still waiting for their filter facets.")
    pending = metrics.gauge("ssmatch_outbox_pending", "Outbox rows written but not yet published.")
    oldest = metrics.gauge("ssmatch_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0: none).")
    lag = metrics.gauge("ssmatch_consumer_lag_records", "Records behind the end of the assigned partitions (a lower bound on the embedded broker).", ("consumer",))

    async def refresh() -> None:
        index_ready.labels("catalog").set(1 if sync_stat("search_index_ready") else 0)
        outbox: dict[str, Any] = await state.relay.lag()
        pending.labels("catalog").set(outbox["pending"])
        oldest.labels("catalog").set(outbox["oldest_age_s"])
        holds_lease.labels("catalog").set(1 if state.relay.holds_lease else 0)
        lease_token.labels("catalog").set(state.relay.token or 0)
        recovery = state.relay.last_recovery
        last_recovery.labels("catalog").set(datetime.fromisoformat(recovery["at"]).timestamp() if recovery else 0)
        facets_pending.labels("catalog").set(await state.store.matches.count_documents({"facets_v": None}))
        behind = await consumer_lag(getattr(state.projection, "_consumer", None))
        if behind is not None:
            lag.labels("catalog", "catalog-matches").set(behind)

    metrics.on_scrape(refresh)
    app.add_route("/metrics", metrics.endpoint, include_in_schema=False)
    asyncapi = generate_asyncapi()

    async def asyncapi_json(request: Request) -> JSONResponse:
        return JSONResponse(asyncapi)

    app.add_route("/asyncapi.json", asyncapi_json, include_in_schema=False)
    return metrics
