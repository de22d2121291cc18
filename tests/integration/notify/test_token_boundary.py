"""Tokens across service boundaries: a token issued by the catalog works on notify (contract), notify
and the matcher's web check it without reading the catalog's database, and a revocation is effective
everywhere within 60 s (notify: at once, from the token.revoked event; elsewhere: within the cache
lifetime, 15 s by default)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from services.notify.app import create_app
from ssmatch import settings as settings_module
from ssmatch.auth import MAX_CACHE_S, TokenAuthority
from ssmatch.settings import Settings
from tests.helpers import eventually, read_topic, uid
from tests.integration.notify.conftest import CatalogService

pytestmark = [pytest.mark.integration]


async def test_revoked_token_stops_working_on_notify_and_the_matcher_within_60_s(
    make_settings: Any, servers: Any, catalog_service: CatalogService, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().token_cache_s <= MAX_CACHE_S == 60
    org = catalog_service.org("broker")
    settings = make_settings(group_prefix=uid("g"), catalog_url=catalog_service.url)
    # the matcher's web views check tokens the same way (services/matcher/web.py; its own 401/503 answers
    # are tested in tests/integration/matcher/test_web.py): introspection at the catalog, cached
    monkeypatch.setenv("SSMATCH_CATALOG_URL", catalog_service.url)
    settings_module.get_settings.cache_clear()
    matcher_like = TokenAuthority(None, "some-admin-token")
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify")
            ok = await api.get("/v1/notifications", headers=org.headers)
            assert ok.status_code == 200 and ok.json()["items"] == []  # a catalog-issued token works on notify
            principal = await matcher_like.resolve(org.token)
            assert principal is not None and principal.organization_id == org.id and principal.role == "broker"
            assert await matcher_like.resolve("ssm_" + "x" * 43) is None
            await eventually(lambda: _assigned(app), timeout=30)

            catalog_service.revoke(org)
            revoked_at = time.monotonic()
            await read_topic(servers.kafka_bootstrap, "ssmatch.organizations",
                             lambda r: r.key.decode() == org.token_id and b"token.revoked" in r.value, want=1)

            async def notify_refuses() -> bool:
                return (await api.get("/v1/notifications", headers=org.headers)).status_code == 401

            async def matcher_refuses() -> bool:
                return await matcher_like.resolve(org.token) is None

            await eventually(notify_refuses, timeout=60, interval=0.1)
            notify_s = time.monotonic() - revoked_at
            await eventually(matcher_refuses, timeout=60, interval=0.2)
            matcher_s = time.monotonic() - revoked_at
            print(f"\nrevocation: notify={notify_s:.1f}s matcher={matcher_s:.1f}s (cache {Settings().token_cache_s:g}s)")
            assert notify_s < 60 and matcher_s < 60
            body = (await api.get("/v1/notifications", headers=org.headers)).json()
            assert body["error"]["code"] == "unauthorized"
            await api.aclose()
    finally:
        await matcher_like.aclose()
        settings_module.get_settings.cache_clear()


async def _assigned(app: Any) -> bool:
    return app.state.consumer.assigned.is_set()


async def test_notify_answers_503_not_500_when_the_catalog_cannot_be_asked(make_settings: Any) -> None:
    from ssmatch.stack.processes import free_port

    settings = make_settings(group_prefix=uid("g"), catalog_url=f"http://127.0.0.1:{free_port()}")
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify") as api:
        r = await api.get("/v1/notifications", headers={"Authorization": "Bearer ssm_" + "a" * 43})
        assert r.status_code == 503 and r.headers["Retry-After"] and r.json()["error"]["code"] == "token_service_unavailable"
        admin = await api.get("/v1/preferences", headers={"Authorization": "Bearer test-admin-token"})
        assert admin.status_code == 403  # the admin token is checked locally, without the catalog
