"""Per-token rate limiting through the HTTP API: 429 with Retry-After and the contract's error body."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ssmatch.metrics import sample
from tests.integration.catalog.conftest import NEED, admin, open_api

pytestmark = pytest.mark.integration


async def test_a_token_over_its_limit_gets_429_with_retry_after(make_settings: Any) -> None:
    settings = make_settings(admin_token="test-admin-token", rate_limit_per_minute=120, rate_limit_burst=3)
    async with open_api(settings) as api:
        _, office = await api.org()
        _, other = await api.org(name="Other office")
        for _ in range(3):
            assert (await api.client.get("/v1/needs", headers=office)).status_code == 200
        limited = await api.client.post("/v1/needs", json=NEED, headers=office)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "1"  # 0.5 s at 2/s, rounded up
        error = limited.json()["error"]
        assert error["code"] == "rate_limited" and error["details"]["retry_after_s"] == 1
        # another token has its own bucket; the admin is exempt
        assert (await api.client.get("/v1/needs", headers=other)).status_code == 200
        for _ in range(10):
            assert (await api.client.get("/v1/organizations", headers=admin())).status_code == 200
        # unauthenticated calls are refused before they reach the limiter (and do not use the bucket)
        assert (await api.client.get("/v1/needs")).status_code == 401
        await asyncio.sleep(0.6)  # one token back
        assert (await api.client.post("/v1/needs", json=NEED, headers=office)).status_code == 201
        assert (await api.client.get("/v1/needs", headers=office)).status_code == 429
        metrics = (await api.client.get("/metrics")).text  # Prometheus text format
        assert sample(metrics, "ssmatch_rate_limited_requests_total") == 2
