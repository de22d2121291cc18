"""Organization and token events, written to the catalog's outbox in the same transaction as the change.

The catalog owns organizations and tokens; other services (notify) learn of them only through these
events on ``ssmatch.organizations`` and keep their own projection. Kept apart from ``store.py`` so
the store's methods stay one call each.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from ssmatch.events import Envelope, OrganizationPayload, TokenRevokedPayload, make_event
from ssmatch.mongo import in_transaction

if TYPE_CHECKING:
    from services.catalog.store import CatalogStore

PRODUCER = "catalog"
OrgAction = Literal["created", "updated", "contact_changed"]


def organization_event(action: OrgAction, doc: dict[str, Any]) -> Envelope:
    """``organization.<action>`` carrying the full snapshot (consumers keep the highest revision)."""
    payload = OrganizationPayload(
        organization_id=doc["_id"], name=doc["name"], type=doc["type"], country=doc["country"],
        language=doc.get("language") or "en", contact=doc.get("contact"), revision=int(doc.get("revision") or 1),
    )
    return make_event(f"organization.{action}", "organization", doc["_id"], payload, producer=PRODUCER)


def token_revoked_event(doc: dict[str, Any]) -> Envelope:
    payload = TokenRevokedPayload(token_id=doc["token_id"], organization_id=doc["organization_id"], revoked_at=doc["revoked_at"])
    return make_event("token.revoked", "token", doc["token_id"], payload, producer=PRODUCER)


async def insert_org(store: CatalogStore, doc: dict[str, Any]) -> None:
    """Insert the organization and its ``organization.created`` event atomically."""
    doc.setdefault("revision", 1)

    async def work(session: AsyncClientSession) -> None:
        await store.orgs.insert_one(doc, session=session)
        await store._emit(session, organization_event("created", doc))

    await in_transaction(store.client, work)
    store._on_outbox_write()


async def update_org(store: CatalogStore, org_id: str, changes: dict[str, Any], action: OrgAction) -> dict[str, Any] | None:
    """Apply `changes`, bump the revision and publish ``organization.<action>`` atomically; None if no
    such organization."""

    async def work(session: AsyncClientSession) -> dict[str, Any] | None:
        doc = await store.orgs.find_one_and_update(
            {"_id": org_id}, {"$set": changes, "$inc": {"revision": 1}}, return_document=ReturnDocument.AFTER, session=session,
        )
        if doc is not None:
            await store._emit(session, organization_event(action, doc))
        return doc

    updated = await in_transaction(store.client, work)
    store.forget_org(org_id)
    if updated is not None:
        store._on_outbox_write()
    return updated


async def revoke_token(store: CatalogStore, token_id: str) -> bool:
    """Mark the token revoked and publish ``token.revoked`` atomically; False if no active token has that id."""

    async def work(session: AsyncClientSession) -> dict[str, Any] | None:
        doc = await store.tokens.find_one_and_update(
            {"token_id": token_id, "revoked_at": None}, {"$set": {"revoked_at": datetime.now(UTC)}},
            return_document=ReturnDocument.AFTER, session=session,
        )
        if doc is not None:
            await store._emit(session, token_revoked_event(doc))
        return doc

    revoked = await in_transaction(store.client, work)
    if revoked is not None:
        store._on_outbox_write()
    return revoked is not None
