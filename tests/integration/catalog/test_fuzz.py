"""Property-based fuzzing of the catalog API with schemathesis, against the app's own OpenAPI document.

The app runs in process (schemathesis drives it over ASGI and runs its lifespan) on the real document
store. Every operation gets a bounded number of generated requests, sent as the admin and as a country
office; every answer must be a non-5xx whose status code, content type, headers and body conform to what
the OpenAPI document declares (response models and error bodies are declared for each route).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from pymongo import MongoClient

from services.catalog.app import create_app
from ssmatch.auth import hash_token, new_token
from tests.helpers import uid

pytestmark = pytest.mark.integration

ADMIN = "fuzz-admin-token"


def _seed(mongodb_uri: str, db_name: str) -> dict[str, str]:
    """An office and its token written straight to the store (the app's lifespan runs in schemathesis' loop)."""
    from datetime import UTC, datetime

    office_id, token = uid("org"), new_token()
    with MongoClient(mongodb_uri) as client:
        db = client[db_name]
        db.organizations.insert_one({"_id": office_id, "name": "Fuzz office", "type": "country_office", "country": "MWI", "language": "en", "contact": None, "created_at": datetime.now(UTC)})
        db.tokens.insert_one({"_id": hash_token(token), "token_id": uid("tok"), "organization_id": office_id, "role": "seeker", "created_at": datetime.now(UTC), "expires_at": None, "revoked_at": None})
    return {"admin": ADMIN, "seeker": token}


class CurrentApp:
    """The ASGI app schemathesis calls: forwards to the app of the running test (each test gets a fresh one,
    on its own database; schemathesis starts its lifespan on first use and ends it with the test)."""

    target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


CURRENT = CurrentApp()


def _fuzz_app(make_settings: Any, role: str) -> Iterator[str]:
    """A fresh app on its own database behind CURRENT; yields the token of `role` to call it with."""
    cfg = make_settings(admin_token=ADMIN, rate_limit_per_minute=0)
    tokens = _seed(cfg.mongodb_uri, cfg.catalog_db)
    CURRENT.target = create_app(cfg, start_background=False)
    try:
        yield tokens[role]
    finally:
        with MongoClient(cfg.mongodb_uri) as client:
            client.drop_database(cfg.catalog_db)


@pytest.fixture
def admin_token(make_settings: Any) -> Iterator[str]:
    yield from _fuzz_app(make_settings, "admin")


@pytest.fixture
def seeker_token(make_settings: Any) -> Iterator[str]:
    yield from _fuzz_app(make_settings, "seeker")


# The document is the app's own; creating the app touches no server (that happens in its lifespan).
schema = schemathesis.openapi.from_dict(create_app().openapi())
schema.app = CURRENT
# A country office is refused these before anything else (403, proven by the authorization matrix);
# its fuzzing time goes to what it may call.
seeker_schema = schema.exclude(path_regex=r"^/v1/(organizations$|tokens|matches$|matches/.*/decision)").exclude(
    method=["POST", "PATCH", "DELETE"], path_regex=r"^/v1/offers"
)
FUZZ = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _call(case: Any, token: str) -> None:
    # Every built-in check except `positive_data_acceptance`: the API has rules a JSON Schema cannot state
    # (an imported file's contents, cursors it issued itself, blank-after-trimming text, time_window order),
    # so a schema-valid request may rightly get a 422. Everything it answers must still match the document.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )


@schema.parametrize()
@FUZZ
def test_api_as_admin_conforms_to_its_openapi(case: Any, admin_token: str) -> None:
    _call(case, admin_token)


@seeker_schema.parametrize()
@FUZZ
def test_api_as_country_office_conforms_to_its_openapi(case: Any, seeker_token: str) -> None:
    _call(case, seeker_token)
