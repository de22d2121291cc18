"""Notify's projection of organizations and items, written a fetch at a time (the catch-up path):
the newest revision wins whatever the order inside a batch, across batches and against what is stored."""

from __future__ import annotations

from typing import Any

import pytest

from services.notify.directory import Directory
from ssmatch.events import ItemWithdrawnPayload, OrganizationPayload
from ssmatch.mongo import make_client
from tests.helpers import item_payload, uid

pytestmark = [pytest.mark.integration]


def org(org_id: str, revision: int, name: str) -> OrganizationPayload:
    return OrganizationPayload.model_validate({"organization_id": org_id, "revision": revision, "name": name, "type": "broker",
                                               "country": "KEN", "language": "en"})


async def test_a_batch_keeps_the_newest_revision_of_each_entity_and_never_goes_back(make_settings: Any) -> None:
    settings = make_settings()
    client = make_client(settings.mongodb_uri)
    try:
        directory = Directory(client, settings.notify_db)
        await directory.init()
        o, n, w = uid("o"), uid("n"), uid("w")
        first = [org(o, 2, "second"), org(o, 1, "first"), item_payload("need", id=n, organization_id=o, revision=1, title="Seeds v1"),
                 item_payload("need", id=w, organization_id=o, revision=1, title="Pumps")]
        assert await directory.apply_many(first) == 3
        assert (await directory.orgs_by_id([o]))[o]["name"] == "second"
        # a later fetch: an older org revision (ignored), a newer need, a withdrawal, and a brand-new org
        o2 = uid("o")
        later = [org(o, 1, "stale"), item_payload("need", id=n, organization_id=o, revision=3, title="Seeds v3"),
                 ItemWithdrawnPayload.model_validate({"id": w, "kind": "need", "organization_id": o, "revision": 2}), org(o2, 1, "new")]
        await directory.apply_many(later)
        orgs = await directory.orgs_by_id([o, o2])
        assert orgs[o]["name"] == "second" and orgs[o2]["name"] == "new"
        items = {d["_id"]: d async for d in directory.items.find({"_id": {"$in": [n, w]}})}
        assert items[n]["title"] == "Seeds v3" and items[n]["revision"] == 3
        assert items[w]["status"] == "withdrawn" and items[w]["title"] == "Pumps"
        # replaying everything changes nothing
        await directory.apply_many(first + later)
        again = {d["_id"]: d async for d in directory.items.find({"_id": {"$in": [n, w]}})}
        assert again == items
        assert await directory.apply_many([]) == 0
    finally:
        await client.drop_database(settings.notify_db)
        await client.close()
