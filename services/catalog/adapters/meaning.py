"""The matcher's search by meaning, over HTTP (`POST /v1/search` on the matcher).

The matcher holds every open item's multilingual vector; the catalog never reads its database. Any
failure (not running, slow, refusing) is an answer too: `MeaningUnavailable` with the reason, and the
catalog serves words only and says so.

Answers are kept for a few seconds (`CACHE_S`), and one request per distinct question is in flight:
the matcher's answer covers open items only and does not depend on the caller, so the next page, a
refreshed page or another caller's same search costs nothing; a new item's vector takes the matcher
longer than that to compute anyway, and what changed since is filtered again by the word index.

The call goes through aiohttp: one search's request and answer cost ~1.3 ms of the catalog's CPU
there against ~3.9 ms through httpx (measured on this machine, 100 hits), and the catalog's CPU is what
a fused search queues for under load.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from typing import Any

import aiohttp

from services.catalog.domain.search import MeaningHit, MeaningResult
from ssmatch.http import SEARCH_BUDGET_HEADER

log = logging.getLogger(__name__)

CACHE_S = 10.0
CACHE_SIZE = 1024


class MeaningUnavailable(RuntimeError):
    """The matcher could not answer in time; the message says why (shown to the caller)."""


class MeaningClient:
    def __init__(self, base_url: str | None, timeout_s: float = 1.0) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.timeout_s = timeout_s
        self._client: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.calls_total = 0
        self.failures_total = 0
        self.cache_hits_total = 0
        self._cache: OrderedDict[str, tuple[float, MeaningResult]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[MeaningResult]] = {}

    async def nearest(self, kind: str, q: str, k: int, filters: dict[str, list[Any]], credential: str | None) -> MeaningResult:
        """The `k` open items of `kind` nearest to `q` among those passing `filters` (field → allowed values)."""
        if self.base_url is None:
            raise MeaningUnavailable("search by meaning is not configured (no matcher URL)")
        key = json.dumps([kind, q, k, filters], sort_keys=True, default=str)
        held = self._cache.get(key)
        if held is not None and held[0] > time.monotonic():
            self.cache_hits_total += 1
            return held[1]
        pending = self._inflight.get(key)
        if pending is not None:  # the same question is being asked: share its answer
            return await asyncio.shield(pending)
        future: asyncio.Future[MeaningResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._ask(kind, q, k, filters, credential)
            future.set_result(result)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(key, None)
        self._cache[key] = (time.monotonic() + CACHE_S, result)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    async def _ask(self, kind: str, q: str, k: int, filters: dict[str, list[Any]], credential: str | None) -> MeaningResult:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.closed or self._loop is not loop:  # a session serves the loop it was made on
            self._client, self._loop = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)), loop
        self.calls_total += 1
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        headers[SEARCH_BUDGET_HEADER] = str(round(self.timeout_s * 1000))  # past it the matcher does not embed the query
        try:
            async with self._client.post(f"{self.base_url}/v1/search", json={"q": q, "kind": kind, "k": k, "filters": filters}, headers=headers) as r:
                status, raw = r.status, await r.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failures_total += 1
            raise MeaningUnavailable(f"the matcher did not answer ({type(exc).__name__})") from exc
        if status != 200:
            self.failures_total += 1
            raise MeaningUnavailable(f"the matcher answered HTTP {status}")
        try:
            body = json.loads(raw)
            hits = tuple(MeaningHit(str(h["id"]), float(h["similarity"])) for h in body["items"])
            corpus = body.get("corpus") or {}
            return MeaningResult(hits, float(corpus.get("mean", 0.0)), float(corpus.get("std", 0.0)), int(corpus.get("size", 0)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.failures_total += 1
            raise MeaningUnavailable("the matcher's answer was not understood") from exc

    async def close(self) -> None:
        if self._client is not None:
            if self._loop is asyncio.get_running_loop():
                await self._client.close()
            self._client = self._loop = None
