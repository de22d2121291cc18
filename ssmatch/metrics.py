"""Prometheus metrics shared by the services: one registry per app, an ASGI timing middleware, and
gauges refreshed at scrape time.

Why a registry per app (not prometheus-client's global one): tests and the bench run several apps in
one process, and each must expose only its own figures. Labels are bounded: the route *template*
(``/v1/webhooks/{webhook_id}``, never the raw path), the method and the status code; no error text,
token, address or other secret ever becomes a label or a value.

Use from FastAPI (the matcher can adopt the same middleware through its own ASGI/aiohttp edge)::

    metrics = ServiceMetrics("notify")
    app.add_middleware(PrometheusMiddleware, metrics=metrics)
    metrics.on_scrape(refresh)            # async () -> None, sets gauges from the store
    app.add_route("/metrics", metrics.endpoint, include_in_schema=False)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

#: Buckets for request latency in seconds: 1 ms … 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """The metrics every service exposes, plus ``gauge``/``counter`` for its own."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "ssmatch_http_request_duration_seconds", "HTTP request latency by route template, method and status.",
            ["service", "method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self._refreshers: list[Callable[[], Awaitable[None]]] = []
        self.scrape_errors = self.counter("ssmatch_metrics_scrape_errors_total", "Gauge refreshes that failed during a scrape.")

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, ["service", *labels], registry=self.registry)

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, ["service", *labels], registry=self.registry)

    def counter_from(self, name: str, doc: str, labels: tuple[str, ...], read: Callable[[], dict[tuple[str, ...], float]]) -> None:
        """A counter whose values live elsewhere (a component's ``*_total`` attributes), read at scrape.

        ``name`` without ``_total``; ``read`` maps label values (in ``labels`` order) to the count."""
        self.registry.register(_CallbackCounter(self.service, name, doc, labels, read))

    def on_scrape(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """Run ``refresh`` (which sets gauges) before every scrape."""
        self._refreshers.append(refresh)

    async def render(self) -> bytes:
        for refresh in self._refreshers:
            try:
                await refresh()
            except Exception:
                self.scrape_errors.labels(self.service).inc()
                log.exception("metrics refresh failed")
        return generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        return Response(await self.render(), media_type=CONTENT_TYPE_LATEST)


class _CallbackCounter(Collector):
    def __init__(self, service: str, name: str, doc: str, labels: tuple[str, ...], read: Callable[[], dict[tuple[str, ...], float]]) -> None:
        self.service, self.name, self.doc, self.labels, self.read = service, name, doc, labels, read

    def collect(self) -> Any:
        family = CounterMetricFamily(self.name, self.doc, labels=["service", *self.labels])
        for values, count in sorted(self.read().items()):
            family.add_metric([self.service, *values], float(count))
        yield family

    def describe(self) -> Any:
        yield CounterMetricFamily(self.name, self.doc, labels=["service", *self.labels])


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text (tests and tools); the sum if several match."""
    found = [s.value for family in text_string_to_metric_families(text) for s in family.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(found) if found else None


def route_template(app: Any, scope: Scope) -> str:
    """The matching route's path template, or ``unmatched`` (raw paths would make labels unbounded)."""
    for route in getattr(app, "routes", ()):
        try:
            match, _ = route.matches(scope)
        except Exception:  # noqa: BLE001 - a route that cannot judge the scope does not match it
            continue
        if match == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


class PrometheusMiddleware:
    """Times every HTTP request into ``ssmatch_http_request_duration_seconds``."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes_of: Any = None) -> None:
        self.app = app
        self.metrics = metrics
        self.routes_of = routes_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            matched = scope.get("route")  # set by the router on the (shared) scope when a route matched
            if matched is not None and getattr(matched, "path", None):
                route = str(matched.path)
            else:
                app = scope.get("app") or self.routes_of
                route = route_template(getattr(app, "router", app), scope)
            self.metrics.request_seconds.labels(self.metrics.service, scope.get("method", ""), route, str(status)).observe(
                time.perf_counter() - started
            )


async def consumer_lag(consumer: Any) -> int | None:
    """Records behind the end of every assigned partition of an aiokafka consumer (None if not running).

    On the embedded broker end offsets can be under-reported after multi-record batches (STACK.md),
    so treat the figure there as a lower bound.
    """
    if consumer is None:
        return None
    total = 0
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        total += max(0, high - await consumer.position(tp))
    return total
