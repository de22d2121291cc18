"""Prometheus /metrics of notify and the catalog: latency histograms by route template, outbox and
delivery figures, and nothing secret (no token, address, URL or error text); the catalog also serves
the AsyncAPI document."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.notify.app import create_app
from ssmatch.asyncapi import generate
from ssmatch.metrics import sample
from tests.helpers import eventually, uid
from tests.integration.notify.conftest import ADMIN, known_to_notify, running_catalog

pytestmark = [pytest.mark.integration]


async def test_metrics_are_prometheus_text_with_latency_lag_and_no_secrets(make_settings: Any) -> None:
    settings = make_settings(group_prefix=uid("g"), admin_token=ADMIN)
    async with running_catalog(settings) as catalog:
        org = await catalog.org("broker", contact={"name": "Secret Person", "email": "secret.person@example.org"})
        app = create_app(settings, catalog_http=catalog.client)
        async with app.router.lifespan_context(app):
            await known_to_notify(app, org)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify") as api:
                assert (await api.get("/v1/notifications", headers=org.headers)).status_code == 200
                hook = await api.post("/v1/webhooks", json={"url": "https://93.184.216.34/secret-path"}, headers=org.headers)
                assert hook.status_code == 201
                assert (await api.delete(f"/v1/webhooks/{hook.json()['id']}", headers=org.headers)).status_code == 200
                assert (await api.get("/v1/notifications", headers={"Authorization": "Bearer ssm_" + "z" * 43})).status_code == 401

                async def processed() -> bool:  # counted once the consumer's batch is committed
                    return (sample((await api.get("/metrics")).text, "ssmatch_events_processed_total") or 0) >= 1

                await eventually(processed, timeout=60)
                r = await api.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            text = r.text
            families = {f.name for f in text_string_to_metric_families(text)}
            assert {"ssmatch_http_request_duration_seconds", "ssmatch_events_processed", "ssmatch_notify_deliveries",
                    "ssmatch_notify_delivery_records", "ssmatch_consumer_lag_records", "ssmatch_token_introspections"} <= families
            assert (sample(text, "ssmatch_http_request_duration_seconds_count", route="/v1/notifications", status="200") or 0) >= 1
            assert sample(text, "ssmatch_http_request_duration_seconds_count", route="/v1/webhooks/{webhook_id}", method="DELETE") == 1
            assert (sample(text, "ssmatch_events_processed_total") or 0) >= 1  # at least the organization.created
            for secret in (org.token, org.id, hook.json()["id"], "secret-path", "93.184.216.34", "secret.person", ADMIN, "z" * 43):
                assert secret not in text

        catalog_text = (await catalog.client.get("/metrics")).text
        assert sample(catalog_text, "ssmatch_outbox_pending") is not None and sample(catalog_text, "ssmatch_outbox_oldest_age_seconds") is not None
        assert (sample(catalog_text, "ssmatch_outbox_published_total") or 0) >= 1
        assert (sample(catalog_text, "ssmatch_http_request_duration_seconds_count", route="/v1/organizations", method="POST") or 0) >= 1
        assert org.token not in catalog_text and ADMIN not in catalog_text and "secret.person" not in catalog_text
        asyncapi = await catalog.client.get("/asyncapi.json")
        assert asyncapi.status_code == 200 and asyncapi.json() == generate()
