"""MongoDB access shared by the services (pymongo's asyncio client)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

T = TypeVar("T")


def make_client(uri: str) -> AsyncMongoClient[dict[str, Any]]:
    # tz_aware: every datetime we read back is UTC-aware, like the ones we write.
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10000, appname="ssmatch")


async def ping(client: AsyncMongoClient[dict[str, Any]]) -> None:
    await client.admin.command("ping")


async def in_transaction(client: AsyncMongoClient[dict[str, Any]], work: Callable[[AsyncClientSession], Awaitable[T]]) -> T:
    """Run `work` in one multi-document transaction (retried on transient errors by pymongo)."""
    async with client.start_session() as session:
        return await session.with_transaction(work)


def database(client: AsyncMongoClient[dict[str, Any]], name: str) -> AsyncDatabase[dict[str, Any]]:
    return client.get_database(name)


async def bulk_refusals(collection: Any, ops: list[Any]) -> list[bool]:
    """Run `ops` unordered in one round trip; False for each op refused as a duplicate key (a guarded
    upsert or insert whose guard failed: someone else wrote first), True for the others. Any other
    write error is raised."""
    if not ops:
        return []
    try:
        await collection.bulk_write(ops, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors):
            raise
        refused = {int(e["index"]) for e in errors}
        return [i not in refused for i in range(len(ops))]
    return [True] * len(ops)
