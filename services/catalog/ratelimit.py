"""Per-token rate limiting through the maintained ``limits`` library (moving windows).

A token may make ``burst`` requests in any second and ``per_minute`` requests in any minute; the admin
token is exempt and ``per_minute = 0`` disables limiting. Going over answers 429 with ``Retry-After``
(seconds until the oldest request leaves the window that is full) and the usual error body.

Where the windows live (``SSMATCH_RATE_LIMIT_STORAGE``):
- ``memory`` (default): in this process. With N catalog replicas behind a load balancer a token could
  make up to N times the limit.
- ``mongodb``: in the catalog's own database (``ratelimit_*`` collections, expired by the store), so
  every replica counts against the same windows. It costs one store round trip per request (~3 ms on
  the embedded store), which is why it is not the default for a single process.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Literal

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage, MongoDBStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from ssmatch.auth import Principal
from ssmatch.http import ApiError

StorageKind = Literal["memory", "mongodb"]


class RateLimiter:
    """``burst`` a second and ``per_minute`` a minute per bearer token, counted by ``limits``."""

    def __init__(self, per_minute: float, burst: int, storage: Storage | None = None, namespace: str = "catalog") -> None:
        self.per_minute = max(0, int(per_minute))
        self.burst = max(1, int(burst))
        self.items: list[RateLimitItem] = (
            [RateLimitItemPerSecond(self.burst), RateLimitItemPerMinute(self.per_minute)] if self.per_minute > 0 else []
        )
        self.storage = storage if storage is not None else MemoryStorage()
        self._blocking = not isinstance(self.storage, MemoryStorage)  # a store round trip: off the event loop
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.namespace = namespace
        self.limited_total = 0

    @classmethod
    def from_settings(cls, per_minute: float, burst: int, kind: StorageKind, mongodb_uri: str, database: str) -> RateLimiter:
        if kind == "mongodb":
            storage: Storage = MongoDBStorage(
                mongodb_uri, database_name=database, counter_collection_name="ratelimit_counters",
                window_collection_name="ratelimit_windows",
            )
            return cls(per_minute, burst, storage)
        return cls(per_minute, burst)

    @property
    def enabled(self) -> bool:
        return bool(self.items)

    async def check(self, principal: Principal) -> None:
        """Count one request for the caller, or raise ApiError(429) with Retry-After."""
        if not self.enabled or principal.is_admin:
            return
        key = principal.token_id or f"org:{principal.organization_id}"
        full = await asyncio.to_thread(self._take, key) if self._blocking else self._take(key)
        if full is None:
            return
        self.limited_total += 1
        retry_after = max(1, math.ceil(full - time.time()))
        raise ApiError(
            429,
            f"rate limit exceeded: at most {self.burst} requests a second and {self.per_minute} a minute per token",
            code="rate_limited",
            details={"retry_after_s": retry_after, "limit_per_minute": self.per_minute, "burst": self.burst},
            headers={"Retry-After": str(retry_after)},
        )

    def _take(self, key: str) -> float | None:
        """Hit every window if all have room (None); else the time the first full one frees a slot.

        Testing before hitting means a refused request uses no slot, so a client that backs off as told
        is served when Retry-After has passed."""
        for item in self.items:
            if not self.limiter.test(item, self.namespace, key):
                return float(self.limiter.get_window_stats(item, self.namespace, key).reset_time)
        for item in self.items:
            self.limiter.hit(item, self.namespace, key)
        return None
