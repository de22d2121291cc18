"""Hostile input to notify's HTTP API, one table: every row gets a clear 4xx with the error body, never a
5xx, and nothing already accepted (a webhook, preferences, the inbox) is lost or changed by them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.notify.app import create_app
from tests.helpers import uid
from tests.integration.notify.conftest import ADMIN, CatalogService

pytestmark = [pytest.mark.integration]

PUBLIC_HOOK = "https://93.184.216.34/hooks/ssmatch"  # a public IP literal: accepted without DNS
BIG = 70 * 1024


def _chunks(data: bytes, size: int = 8192) -> Any:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i:i + size]

    return gen()


# (name, method, path, {"json"|"content"|"params"|"headers"|"auth"}, expected status)
# auth: "org" (default), "none", "admin", or a literal Authorization header value
ROWS: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("no authorization", "GET", "/v1/notifications", {"auth": "none"}, 401),
    ("empty bearer", "GET", "/v1/notifications", {"auth": "Bearer "}, 401),
    ("basic scheme", "GET", "/v1/notifications", {"auth": "Basic dXNlcjpwdw=="}, 401),
    ("token too long", "GET", "/v1/notifications", {"auth": "Bearer ssm_" + "A" * 500}, 401),
    ("unknown token", "GET", "/v1/notifications", {"auth": "Bearer ssm_" + "b" * 43}, 401),
    ("token without prefix", "GET", "/v1/notifications", {"auth": "Bearer " + "c" * 43}, 401),
    ("latin-1 token", "GET", "/v1/notifications", {"auth": "Bearer ssm_é" + "d" * 40}, 401),
    ("admin has no inbox", "GET", "/v1/notifications", {"auth": "admin"}, 403),
    ("admin has no webhooks", "POST", "/v1/webhooks", {"auth": "admin", "json": {"url": PUBLIC_HOOK}}, 403),
    ("limit 0", "GET", "/v1/notifications", {"params": {"limit": "0"}}, 422),
    ("limit 101", "GET", "/v1/notifications", {"params": {"limit": "101"}}, 422),
    ("limit negative", "GET", "/v1/notifications", {"params": {"limit": "-1"}}, 422),
    ("limit text", "GET", "/v1/notifications", {"params": {"limit": "abc"}}, 422),
    ("limit exponent", "GET", "/v1/notifications", {"params": {"limit": "1e3"}}, 422),
    ("limit NUL", "GET", "/v1/notifications", {"params": {"limit": "\x00"}}, 422),
    ("limit superscript", "GET", "/v1/notifications", {"params": {"limit": "²"}}, 422),
    ("before not hex", "GET", "/v1/notifications", {"params": {"before": "zzz"}}, 422),
    ("before injection", "GET", "/v1/notifications", {"params": {"before": "' OR 1=1 --"}}, 422),
    ("before operator", "GET", "/v1/notifications", {"params": {"before": '{"$gt": ""}'}}, 422),
    ("before upper hex", "GET", "/v1/notifications", {"params": {"before": "A" * 24}}, 422),
    ("unread not bool", "GET", "/v1/notifications", {"params": {"unread": "maybe"}}, 422),
    ("misspelt filter", "GET", "/v1/notifications", {"params": {"unraed": "true"}}, 422),
    ("operator in query name", "GET", "/v1/webhooks", {"params": {"$where": "1"}}, 422),
    ("mark read long id", "POST", "/v1/notifications/" + "f" * 65 + "/read", {}, 404),
    ("mark read NUL id", "POST", "/v1/notifications/%00/read", {}, 404),
    ("mark read operator id", "POST", "/v1/notifications/$where/read", {}, 404),
    ("delete unknown webhook", "DELETE", "/v1/webhooks/unknown", {}, 404),
    ("delete operator webhook", "DELETE", '/v1/webhooks/{"$ne":null}', {}, 404),
    ("unknown path", "GET", "/v1/nope", {}, 404),
    ("PATCH webhooks", "PATCH", "/v1/webhooks", {"json": {}}, 405),
    ("PUT notifications", "PUT", "/v1/notifications", {"json": {}}, 405),
    ("DELETE preferences", "DELETE", "/v1/preferences", {}, 405),
    ("webhook body not JSON", "POST", "/v1/webhooks", {"content": b"{url:", "headers": {"content-type": "application/json"}}, 422),
    ("webhook body array", "POST", "/v1/webhooks", {"json": [PUBLIC_HOOK]}, 422),
    ("webhook body empty object", "POST", "/v1/webhooks", {"json": {}}, 422),
    ("webhook no scheme", "POST", "/v1/webhooks", {"json": {"url": "93.184.216.34/hook"}}, 422),
    ("webhook ftp", "POST", "/v1/webhooks", {"json": {"url": "ftp://93.184.216.34/hook"}}, 422),
    ("webhook javascript", "POST", "/v1/webhooks", {"json": {"url": "javascript:alert(1)"}}, 422),
    ("webhook file", "POST", "/v1/webhooks", {"json": {"url": "file:///etc/passwd"}}, 422),
    ("webhook metadata address", "POST", "/v1/webhooks", {"json": {"url": "http://169.254.169.254/latest/meta-data"}}, 422),
    ("webhook loopback", "POST", "/v1/webhooks", {"json": {"url": "http://127.0.0.1:8002/v1/preferences"}}, 422),
    ("webhook IPv6 loopback", "POST", "/v1/webhooks", {"json": {"url": "http://[::1]/hook"}}, 422),
    ("webhook mapped IPv6", "POST", "/v1/webhooks", {"json": {"url": "http://[::ffff:10.0.0.1]/hook"}}, 422),
    ("webhook private", "POST", "/v1/webhooks", {"json": {"url": "http://10.1.2.3/hook"}}, 422),
    ("webhook credentials", "POST", "/v1/webhooks", {"json": {"url": "http://user:pw@93.184.216.34/hook"}}, 422),
    ("webhook too long", "POST", "/v1/webhooks", {"json": {"url": "https://93.184.216.34/" + "a" * 3000}}, 422),
    ("webhook CRLF", "POST", "/v1/webhooks", {"json": {"url": "https://93.184.216.34/x\r\nHost: evil"}}, 422),
    ("webhook url number", "POST", "/v1/webhooks", {"json": {"url": 12345678}}, 422),
    ("webhook short secret", "POST", "/v1/webhooks", {"json": {"url": PUBLIC_HOOK, "secret": "short"}}, 422),
    ("webhook secret with spaces", "POST", "/v1/webhooks", {"json": {"url": PUBLIC_HOOK, "secret": "a b c d e f g h i j k l"}}, 422),
    ("webhook secret control chars", "POST", "/v1/webhooks", {"json": {"url": PUBLIC_HOOK, "secret": "\x00" * 20}}, 422),
    ("webhook extra field", "POST", "/v1/webhooks", {"json": {"url": PUBLIC_HOOK, "active": False}}, 422),
    ("webhook unresolvable host", "POST", "/v1/webhooks", {"json": {"url": "https://no-such-host.invalid/hook"}}, 422),
    ("prefs unknown channel", "PUT", "/v1/preferences", {"json": {"channels": ["sms"]}}, 422),
    ("prefs channels not list", "PUT", "/v1/preferences", {"json": {"channels": "email"}}, 422),
    ("prefs unknown zone", "PUT", "/v1/preferences", {"json": {"timezone": "Mars/Olympus_Mons"}}, 422),
    ("prefs zone path", "PUT", "/v1/preferences", {"json": {"timezone": "../../etc/passwd"}}, 422),
    ("prefs empty quiet hours", "PUT", "/v1/preferences", {"json": {"quiet_hours": {"start": "22:00", "end": "22:00"}}}, 422),
    ("prefs quiet hours with zone", "PUT", "/v1/preferences", {"json": {"quiet_hours": {"start": "22:00+02:00", "end": "07:00"}}}, 422),
    ("prefs digest 5 minutes", "PUT", "/v1/preferences", {"json": {"digest_minutes": 5}}, 422),
    ("prefs digest huge", "PUT", "/v1/preferences", {"json": {"digest_minutes": 10**30}}, 422),
    ("prefs threshold 2", "PUT", "/v1/preferences", {"json": {"immediate_score_threshold": 2}}, 422),
    ("prefs threshold NaN", "PUT", "/v1/preferences", {"content": b'{"immediate_score_threshold": NaN}', "headers": {"content-type": "application/json"}}, 422),
    ("prefs language one letter", "PUT", "/v1/preferences", {"json": {"language": "x"}}, 422),
    ("prefs language NUL", "PUT", "/v1/preferences", {"json": {"language": "\x00fr"}}, 422),
    ("prefs language script", "PUT", "/v1/preferences", {"json": {"language": "<script>"}}, 422),
    ("prefs mode", "PUT", "/v1/preferences", {"json": {"mode": "hourly"}}, 422),
    ("prefs digest time", "PUT", "/v1/preferences", {"json": {"digest_time": "25:00"}}, 422),
    ("prefs not UTF-8", "PUT", "/v1/preferences", {"content": b'{"mode": "\xff\xfe"}', "headers": {"content-type": "application/json"}}, 422),
    ("prefs deeply nested", "PUT", "/v1/preferences", {"content": b"[" * 20000 + b"]" * 20000, "headers": {"content-type": "application/json"}}, 422),
    ("prefs text/plain", "PUT", "/v1/preferences", {"content": b'{"mode": "digest"}', "headers": {"content-type": "text/plain"}}, 422),
    ("prefs 70 KB", "PUT", "/v1/preferences", {"json": {"language": "en", "pad": "x" * BIG}}, 413),
    ("prefs 70 KB chunked", "PUT", "/v1/preferences", {"chunked": json.dumps({"pad": "x" * BIG}).encode()}, 413),
    ("prefs 30 MB", "PUT", "/v1/preferences", {"content": b'{"pad": "' + b"x" * (30 * 1024 * 1024) + b'"}', "headers": {"content-type": "application/json"}}, 413),
    ("webhook 70 KB chunked", "POST", "/v1/webhooks", {"chunked": json.dumps({"url": PUBLIC_HOOK, "pad": "x" * BIG}).encode()}, 413),
    ("content-length lies high", "PUT", "/v1/preferences", {"content": b"{}", "headers": {"content-type": "application/json", "content-length": str(10**9)}}, 413),
]


def test_the_table_has_at_least_50_rows_with_unique_names() -> None:
    assert len(ROWS) >= 50 and len({r[0] for r in ROWS}) == len(ROWS)


async def test_hostile_inputs_get_a_clear_4xx_and_lose_nothing(make_settings: Any, catalog_service: CatalogService) -> None:
    org = catalog_service.org("country_office")
    settings = make_settings(group_prefix=uid("g"), catalog_url=catalog_service.url, admin_token=ADMIN)
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify", timeout=60) as api:
        hook = await api.post("/v1/webhooks", json={"url": PUBLIC_HOOK, "secret": "s" * 20}, headers=org.headers)
        assert hook.status_code == 201, hook.text
        prefs = {"channels": ["inbox", "webhook"], "mode": "digest", "timezone": "Africa/Nairobi", "language": "fr"}
        assert (await api.put("/v1/preferences", json=prefs, headers=org.headers)).status_code == 200
        before = ((await api.get("/v1/webhooks", headers=org.headers)).json(), (await api.get("/v1/preferences", headers=org.headers)).json())

        failures = []
        for name, method, path, spec, want in ROWS:
            auth = spec.get("auth", "org")
            headers = dict(spec.get("headers", {}))
            if auth == "org":
                headers.update(org.headers)
            elif auth == "admin":
                headers["Authorization"] = f"Bearer {ADMIN}"
            elif auth != "none":
                headers["Authorization"] = auth if auth.isascii() else auth.encode("latin-1")
            kwargs: dict[str, Any] = {"headers": headers, "params": spec.get("params")}
            if "json" in spec:
                kwargs["json"] = spec["json"]
            if "content" in spec:
                kwargs["content"] = spec["content"]
            if "chunked" in spec:
                kwargs["content"] = _chunks(spec["chunked"])
                headers["content-type"] = "application/json"
            r = await api.request(method, path, **kwargs)
            body: Any = None
            with contextlib.suppress(ValueError):
                body = r.json()
            shaped = isinstance(body, dict) and isinstance(body.get("error"), dict) and {"code", "message", "details"} <= set(body["error"])
            if r.status_code != want or not shaped:
                failures.append(f"{name}: {r.status_code} (want {want}) {r.text[:200]}")
        assert failures == [], "\n".join(failures)

        after = ((await api.get("/v1/webhooks", headers=org.headers)).json(), (await api.get("/v1/preferences", headers=org.headers)).json())
        assert after == before  # nothing accepted earlier was lost or changed
        options = await api.options("/v1/webhooks", headers=org.headers)
        assert options.status_code == 204 and {"GET", "POST"} <= set(options.headers["Allow"].replace(" ", "").split(","))
        refused = await api.patch("/v1/webhooks", json={}, headers=org.headers)
        assert {"GET", "POST"} <= set(refused.headers["Allow"].replace(" ", "").split(","))


async def test_webhooks_per_organization_are_capped_and_tokens_rate_limited(make_settings: Any, catalog_service: CatalogService) -> None:
    org = catalog_service.org("solution_provider")
    settings = make_settings(group_prefix=uid("g"), catalog_url=catalog_service.url, notify_max_webhooks=3, notify_rate_limit="12/minute")
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify") as api:
        made = [await api.post("/v1/webhooks", json={"url": f"{PUBLIC_HOOK}/{i}"}, headers=org.headers) for i in range(4)]
        assert [r.status_code for r in made] == [201, 201, 201, 409]
        assert made[3].json()["error"]["code"] == "too_many_webhooks"
        assert (await api.delete(f"/v1/webhooks/{made[0].json()['id']}", headers=org.headers)).status_code == 200
        assert (await api.post("/v1/webhooks", json={"url": f"{PUBLIC_HOOK}/again"}, headers=org.headers)).status_code == 201
        statuses = [(await api.get("/v1/webhooks", headers=org.headers)).status_code for _ in range(10)]
        assert statuses.count(429) >= 1 and statuses[0] == 200  # 12 a minute: 6 calls above, then the limit
        limited = await api.get("/v1/webhooks", headers=org.headers)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
        other = catalog_service.org("solution_provider")
        assert (await api.get("/v1/webhooks", headers=other.headers)).status_code == 200  # per token
