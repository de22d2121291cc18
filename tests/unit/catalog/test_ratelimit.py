"""The per-token limits (``limits`` moving windows, in memory): a burst a second, a rate a minute."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.catalog.ratelimit import RateLimiter
from ssmatch.auth import Principal
from ssmatch.http import ApiError


def caller(token: str = "t1") -> Principal:
    return Principal(role="seeker", organization_id="o1", token_id=token)


async def refused(limiter: RateLimiter, who: Principal) -> ApiError:
    with pytest.raises(ApiError) as exc:
        await limiter.check(who)
    return exc.value


async def test_a_burst_a_second_then_429_with_retry_after_and_a_refusal_uses_no_slot() -> None:
    limiter = RateLimiter(per_minute=600, burst=3)
    started = time.time()
    for _ in range(3):
        await limiter.check(caller())
    error = await refused(limiter, caller())
    assert error.status == 429 and error.code == "rate_limited"
    assert error.headers == {"Retry-After": "1"} and error.details["retry_after_s"] == 1
    for _ in range(5):  # refusals do not push the window further out
        await refused(limiter, caller())
    deadline = time.monotonic() + 10
    while True:  # the oldest request leaves the one-second window
        try:
            await limiter.check(caller())
            break
        except ApiError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    assert time.time() - started >= 0.99
    assert limiter.limited_total >= 6


async def test_the_minute_window_names_its_own_retry_after() -> None:
    limiter = RateLimiter(per_minute=4, burst=100)
    for _ in range(4):
        await limiter.check(caller())
    error = await refused(limiter, caller())
    assert 55 <= int(error.headers["Retry-After"]) <= 60
    assert error.details["limit_per_minute"] == 4


async def test_windows_are_per_token_the_admin_is_exempt_and_zero_disables() -> None:
    limiter = RateLimiter(per_minute=60, burst=1)
    await limiter.check(caller("a"))
    await limiter.check(caller("b"))
    await refused(limiter, caller("a"))
    for _ in range(100):
        await limiter.check(Principal(role="admin", organization_id=None))
    unlimited = RateLimiter(per_minute=0, burst=1)
    assert not unlimited.enabled
    for _ in range(1000):
        await unlimited.check(caller())
