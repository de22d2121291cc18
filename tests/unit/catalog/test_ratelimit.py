"""The per-token token bucket, on a fake clock."""

from __future__ import annotations

import pytest

from services.catalog.ratelimit import RateLimiter
from ssmatch.auth import Principal
from ssmatch.http import ApiError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def caller(token: str = "t1") -> Principal:
    return Principal(role="seeker", organization_id="o1", token_id=token)


def test_burst_then_steady_rate_then_429_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    for _ in range(3):
        limiter.check(caller())
    with pytest.raises(ApiError) as exc:
        limiter.check(caller())
    assert exc.value.status == 429 and exc.value.code == "rate_limited"
    assert exc.value.headers == {"Retry-After": "1"}
    clock.now += 1.0  # one token back at 1/s
    limiter.check(caller())
    with pytest.raises(ApiError):
        limiter.check(caller())
    clock.now += 60  # refills to the burst, never above it
    for _ in range(3):
        limiter.check(caller())
    with pytest.raises(ApiError):
        limiter.check(caller())
    assert limiter.limited_total == 3


def test_buckets_are_per_token_and_admin_is_exempt() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, clock=Clock())
    limiter.check(caller("a"))
    limiter.check(caller("b"))
    with pytest.raises(ApiError):
        limiter.check(caller("a"))
    for _ in range(100):
        limiter.check(Principal(role="admin", organization_id=None))


def test_retry_after_rounds_up_and_zero_disables() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=6, burst=1, clock=clock)  # one token per 10 s
    limiter.check(caller())
    clock.now += 2.5
    with pytest.raises(ApiError) as exc:
        limiter.check(caller())
    assert exc.value.headers == {"Retry-After": "8"}  # 7.5 s left, rounded up
    unlimited = RateLimiter(per_minute=0, burst=1, clock=clock)
    for _ in range(1000):
        unlimited.check(caller())


def test_idle_buckets_are_pruned_when_the_table_is_full() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock, max_keys=10)
    for i in range(10):
        limiter.check(caller(f"t{i}"))
    clock.now += 5  # every bucket has refilled: forgetting them changes nothing
    limiter.check(caller("new"))
    assert len(limiter._buckets) == 1
