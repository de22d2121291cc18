"""Per-token rate limiting through the HTTP API: 429 with Retry-After and the contract's error body,
in one process and shared by two catalog replicas through the store."""

from __future__ import annotations

import time
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
        assert limited.headers["retry-after"] == "1"
        error = limited.json()["error"]
        assert error["code"] == "rate_limited" and error["details"]["retry_after_s"] == 1
        # another token has its own windows; the admin is exempt
        assert (await api.client.get("/v1/needs", headers=other)).status_code == 200
        for _ in range(10):
            assert (await api.client.get("/v1/organizations", headers=admin())).status_code == 200
        # unauthenticated calls are refused before they reach the limiter (and do not count)
        assert (await api.client.get("/v1/needs")).status_code == 401
        deadline = time.monotonic() + 10
        while (posted := await api.client.post("/v1/needs", json=NEED, headers=office)).status_code == 429:
            assert time.monotonic() < deadline, "the window never freed a slot"
        assert posted.status_code == 201
        metrics = (await api.client.get("/metrics")).text  # Prometheus text format
        assert sample(metrics, "ssmatch_rate_limited_requests_total") >= 1


async def test_two_replicas_sharing_the_store_count_against_the_same_windows(make_settings: Any) -> None:
    settings = make_settings(admin_token="test-admin-token", rate_limit_per_minute=4, rate_limit_burst=100,
                             rate_limit_storage="mongodb")  # a minute's window: timing cannot free a slot
    async with open_api(settings, drop=False) as first, open_api(settings) as second:
        _, office = await first.org()
        codes = [(await replica.client.get("/v1/needs", headers=office)).status_code
                 for replica in (first, second, first, second, first, second)]
        assert codes[:4] == [200, 200, 200, 200] and codes[4:] == [429, 429]
        in_memory = make_settings(admin_token="test-admin-token", rate_limit_per_minute=4, rate_limit_burst=100,
                                  catalog_db=settings.catalog_db)
        async with open_api(in_memory, drop=False) as separate:  # per replica: its own windows
            assert (await separate.client.get("/v1/needs", headers=office)).status_code == 200
