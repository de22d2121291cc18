"""An in-memory MatcherStore for unit tests of the service layer (the Mongo one is tested in
tests/integration/matcher). Same contract: revision guards, compare-and-set on list versions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from services.matcher.lists import Key, ListState


class MemoryStore:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.vectors: dict[str, np.ndarray] = {}
        self.lists: dict[Key, tuple[ListState, list[str]]] = {}
        self.fail_sends = 0

    async def put_item(self, doc: dict[str, Any]) -> bool:
        held = self.items.get(doc["_id"])
        if held is not None and held["revision"] >= doc["revision"]:
            return False
        self.items[doc["_id"]] = dict(doc)
        return True

    async def put_items(self, docs: list[dict[str, Any]]) -> list[bool]:
        return [await self.put_item(doc) for doc in docs]

    async def withdraw_item(self, kind: str, item_id: str, organization_id: str, revision: int) -> bool:
        held = self.items.get(item_id)
        if held is not None and held["revision"] >= revision:
            return False
        base = held or {"_id": item_id, "kind": kind, "organization_id": organization_id}
        self.items[item_id] = {**base, "status": "withdrawn", "revision": revision}
        return True

    async def all_items(self) -> AsyncIterator[dict[str, Any]]:
        for doc in list(self.items.values()):
            yield dict(doc)

    async def get_item(self, item_id: str) -> dict[str, Any] | None:
        doc = self.items.get(item_id)
        return dict(doc) if doc else None

    async def cached_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        return {h: self.vectors[h] for h in hashes if h in self.vectors}

    async def cache_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors.update(vectors)

    async def load_lists(self, keys: list[Key]) -> dict[Key, tuple[ListState, list[str]]]:
        return {k: self.lists[k] for k in keys if k in self.lists}

    async def write_list(self, key: Key, previous_version: int, state: ListState, pending: list[str], extra: dict[str, Any]) -> bool:
        held = self.lists.get(key)
        if (held[0].version if held else 0) != previous_version:
            return False
        self.lists[key] = (state, pending)
        return True

    async def mark_sent(self, key: Key, version: int) -> None:
        held = self.lists.get(key)
        if held and held[0].version == version:
            self.lists[key] = (held[0], [])

    async def write_lists(self, steps: list[tuple[Key, int, ListState, list[str]]], extra: dict[str, Any] | None = None) -> list[bool]:
        return [await self.write_list(key, previous, state, pending, extra or {}) for key, previous, state, pending in steps]

    async def mark_sents(self, steps: list[tuple[Key, int]]) -> None:
        for key, version in steps:
            await self.mark_sent(key, version)
