"""Notify's authorization matrix: every operation under every kind of caller, and what one
organization can see or change of another's (nothing: another's resources answer 404, not 403, so
their existence does not leak)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.notify.app import create_app
from tests.helpers import uid
from tests.integration.notify.conftest import ADMIN, CatalogService

pytestmark = [pytest.mark.integration]

HOOK = "https://93.184.216.34/hooks/matrix"  # a public IP literal: accepted without DNS
MISSING = "0" * 24

# operation name → (method, path template, body); {hook} is the caller's own webhook, {theirs} another's
OPERATIONS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "list notifications": ("GET", "/v1/notifications", None),
    "unread count": ("GET", "/v1/notifications/unread_count", None),
    "mark read (unknown)": ("POST", f"/v1/notifications/{MISSING}/read", None),
    "add webhook": ("POST", "/v1/webhooks", {"url": HOOK}),
    "list webhooks": ("GET", "/v1/webhooks", None),
    "remove another's webhook": ("DELETE", "/v1/webhooks/{theirs}", None),
    "get preferences": ("GET", "/v1/preferences", None),
    "put preferences": ("PUT", "/v1/preferences", {"channels": ["inbox"], "mode": "immediate", "language": "es"}),
}
ORG = {"list notifications": 200, "unread count": 200, "mark read (unknown)": 404, "add webhook": 201, "list webhooks": 200,
       "remove another's webhook": 404, "get preferences": 200, "put preferences": 200}
EXPECTED: dict[str, dict[str, int]] = {
    "country office": ORG,
    "solution provider": ORG,
    "broker": ORG,  # brokers are organizations with an inbox of their own
    "admin": dict.fromkeys(OPERATIONS, 403),  # the admin token belongs to no organization
    "revoked token": dict.fromkeys(OPERATIONS, 401),
    "unknown token": dict.fromkeys(OPERATIONS, 401),
    "no token": dict.fromkeys(OPERATIONS, 401),
}


async def test_authorization_matrix(make_settings: Any, catalog_service: CatalogService) -> None:
    owner = catalog_service.org("country_office")
    callers: dict[str, dict[str, str]] = {
        "country office": catalog_service.org("country_office").headers,
        "solution provider": catalog_service.org("solution_provider").headers,
        "broker": catalog_service.org("broker").headers,
        "admin": {"Authorization": f"Bearer {ADMIN}"},
        "unknown token": {"Authorization": "Bearer ssm_" + "u" * 43},
        "no token": {},
    }
    revoked = catalog_service.org("country_office")
    catalog_service.revoke(revoked)  # revoked before its first use: nothing cached
    callers["revoked token"] = revoked.headers
    settings = make_settings(group_prefix=uid("g"), catalog_url=catalog_service.url, admin_token=ADMIN, notify_rate_limit="0")
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify", timeout=60) as api:
        theirs = await api.post("/v1/webhooks", json={"url": f"{HOOK}/owner"}, headers=owner.headers)
        assert theirs.status_code == 201, theirs.text
        prefs = {"channels": ["inbox", "webhook"], "mode": "digest", "timezone": "Africa/Nairobi", "language": "fr"}
        assert (await api.put("/v1/preferences", json=prefs, headers=owner.headers)).status_code == 200
        owner_view = ((await api.get("/v1/webhooks", headers=owner.headers)).json(), (await api.get("/v1/preferences", headers=owner.headers)).json())

        got: dict[str, dict[str, int]] = {}
        for who, headers in callers.items():
            row = got[who] = {}
            for name, (method, path, body) in OPERATIONS.items():
                r = await api.request(method, path.format(theirs=theirs.json()["id"]), json=body, headers=headers)
                row[name] = r.status_code
                if r.status_code >= 400:
                    assert set(r.json()["error"]) >= {"code", "message", "details"}, (who, name, r.text)
                if name == "list webhooks" and r.status_code == 200:  # another's webhook is never listed
                    assert theirs.json()["id"] not in {w["id"] for w in r.json()["items"]}, who
        assert got == EXPECTED
        # nobody else's call changed the owner's webhook or preferences
        after = ((await api.get("/v1/webhooks", headers=owner.headers)).json(), (await api.get("/v1/preferences", headers=owner.headers)).json())
        assert after == owner_view
