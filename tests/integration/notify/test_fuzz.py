"""Property-based fuzzing of notify's API with schemathesis against its own OpenAPI document, under an
admin, a broker and a country office token (issued by a real catalog process, checked by notify over
HTTP). Every answer must be a non-5xx that conforms to the document (status, content type, headers,
body); each operation gets FUZZ_EXAMPLES generated requests per token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from services.notify.app import create_app
from tests.integration.notify.conftest import ADMIN, CatalogService

pytestmark = pytest.mark.integration
FUZZ_EXAMPLES = 30


class CurrentApp:
    """The ASGI app schemathesis calls: the notify app of the running test (schemathesis runs its lifespan)."""

    target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


CURRENT = CurrentApp()


def _fuzz_app(make_settings: Any, catalog_service: CatalogService, role: str) -> Iterator[str]:
    from pymongo import MongoClient

    from tests.helpers import uid

    cfg = make_settings(admin_token=ADMIN, catalog_url=catalog_service.url, notify_rate_limit="0", group_prefix=uid("fz"))
    token = ADMIN if role == "admin" else catalog_service.org(role).token
    CURRENT.target = create_app(cfg, start_background=False)  # the API alone: no consumer to join a group
    try:
        yield token
    finally:
        with MongoClient(cfg.mongodb_uri) as client:
            client.drop_database(cfg.notify_db)


@pytest.fixture
def admin_token(make_settings: Any, catalog_service: CatalogService) -> Iterator[str]:
    yield from _fuzz_app(make_settings, catalog_service, "admin")


@pytest.fixture
def broker_token(make_settings: Any, catalog_service: CatalogService) -> Iterator[str]:
    yield from _fuzz_app(make_settings, catalog_service, "broker")


@pytest.fixture
def office_token(make_settings: Any, catalog_service: CatalogService) -> Iterator[str]:
    yield from _fuzz_app(make_settings, catalog_service, "country_office")


schema = schemathesis.openapi.from_dict(create_app().openapi())
schema.app = CURRENT
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _call(case: Any, token: str) -> None:
    # `positive_data_acceptance` is left out: a schema-valid webhook URL may rightly be refused (422) when it
    # resolves to a private address or not at all, which a JSON Schema cannot state.
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                           excluded_checks=[schemathesis.checks.positive_data_acceptance])


def test_the_document_declares_4xx_for_every_operation() -> None:
    for path, operations in create_app().openapi()["paths"].items():
        for method, op in operations.items():
            codes = set(op["responses"])
            assert {"401", "422", "429"} <= codes, (method, path, codes)
            assert op["security"] == [{"bearer": []}], (method, path)


@schema.parametrize()
@FUZZ
def test_notify_as_admin_conforms_to_its_openapi(case: Any, admin_token: str) -> None:
    _call(case, admin_token)


@schema.parametrize()
@FUZZ
def test_notify_as_broker_conforms_to_its_openapi(case: Any, broker_token: str) -> None:
    _call(case, broker_token)


@schema.parametrize()
@FUZZ
def test_notify_as_country_office_conforms_to_its_openapi(case: Any, office_token: str) -> None:
    _call(case, office_token)
