from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.catalog.app import create_app

ADMIN = "test-admin-token"


@dataclass
class Api:
    client: httpx.AsyncClient
    app: Any

    async def org(self, type_: str = "country_office", country: str = "MWI", name: str = "Org") -> tuple[str, dict[str, str]]:
        r = await self.client.post("/v1/organizations", json={"name": name, "type": type_, "country": country}, headers=admin())
        assert r.status_code == 201, r.text
        t = await self.client.post("/v1/tokens", json={"organization_id": r.json()["id"]}, headers=admin())
        assert t.status_code == 201, t.text
        return r.json()["id"], {"Authorization": f"Bearer {t.json()['token']}"}


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


@asynccontextmanager
async def open_api(settings: Any, *, start_background: bool = False, start_search: bool | None = None, drop: bool = True) -> AsyncIterator[Api]:
    """The catalog app in process (lifespan running), an httpx client on it; drops its database after
    (unless `drop` is false: a test that restarts the app opens it again)."""
    app = create_app(settings, start_background=start_background, start_search=start_search)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
            yield Api(client, app)
        if drop:
            await app.state.store.client.drop_database(settings.catalog_db)


@pytest.fixture
async def api(make_settings: Any) -> AsyncIterator[Api]:
    async with open_api(make_settings(admin_token=ADMIN)) as opened:
        yield opened


NEED: dict[str, Any] = {
    "title": "Sécurité alimentaire et alimentation scolaire",
    "description": "Le ministère cherche un appui pour les cantines scolaires.",
    "sdgs": [2, 4],
    "sectors": ["food_security"],
    "modalities": ["capacity_development"],
    "languages": ["fr"],
}
OFFER: dict[str, Any] = {
    "title": "School feeding programme design",
    "description": "Centre of excellence with ten years of school feeding experience.",
    "sdgs": [2],
    "sectors": ["food_security", "nutrition"],
    "modalities": ["capacity_development"],
    "languages": ["en", "fr", "pt"],
    "delivery_countries": ["SEN", "MLI"],
}


async def propose(api: Api, need: dict[str, Any], offer: dict[str, Any], score: float = 0.8, at: Any = None) -> str:
    """A match proposal as the matcher's event would project it (through the projection's own method)."""
    from datetime import UTC, datetime

    from ssmatch.events import MatchProposedPayload

    payload = MatchProposedPayload(
        match_id=f"{need['id']}.{offer['id']}", need_id=need["id"], offer_id=offer["id"],
        need_organization_id=need["organization_id"], offer_organization_id=offer["organization_id"],
        need_title=need["title"], offer_title=offer["title"], score=score,
        explanation={"components": {"text": score}}, rules_version="1", need_revision=need["revision"], offer_revision=offer["revision"],
    )
    assert await api.app.state.store.apply_match_proposed(payload, at or datetime.now(UTC))
    return payload.match_id


async def post(api: Api, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    r = await api.client.post(path, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())
