"""Per-token rate limiting: a token bucket per bearer token, kept in this process.

Each token may make `burst` requests at once and then `per_minute` requests a minute (the bucket refills
continuously). The admin token is exempt. Going over answers 429 with `Retry-After` (seconds) and the
usual error body.

In-process on purpose: the catalog runs as one process per deployment today, so the limit is exact.
With N catalog replicas behind a load balancer each keeps its own buckets, so a token could make up to
N times the limit; a shared store (e.g. a Redis `INCR`/TTL or a MongoDB counter) would be needed then.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ssmatch.auth import Principal
from ssmatch.http import ApiError


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, clock: object = time.monotonic, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0  # tokens per second; 0 disables limiting
        self.burst = max(1, int(burst))
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys
        self.limited_total = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _now(self) -> float:
        return self._clock()  # type: ignore[operator, no-any-return]

    def check(self, principal: Principal) -> None:
        """Take one token from the caller's bucket or raise ApiError(429) with Retry-After."""
        if not self.enabled or principal.is_admin:
            return
        key = principal.token_id or f"org:{principal.organization_id}"
        now = self._now()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        self.limited_total += 1
        retry_after = max(1, math.ceil((1.0 - bucket.tokens) / self.rate))
        raise ApiError(
            429,
            f"rate limit exceeded: at most {self.rate * 60:g} requests a minute (bursts of {self.burst}) per token",
            code="rate_limited",
            details={"retry_after_s": retry_after, "limit_per_minute": self.rate * 60, "burst": self.burst},
            headers={"Retry-After": str(retry_after)},
        )

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled completely (they behave exactly like new ones)."""
        full_after = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:  # still full: drop the oldest half
            for key, _ in sorted(self._buckets.items(), key=lambda kv: kv[1].updated)[: self._max_keys // 2]:
                del self._buckets[key]
