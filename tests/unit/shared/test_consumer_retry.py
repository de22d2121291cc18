"""The consumers' retry policy (tenacity): transient failures are retried until they pass; a handler's
permanent refusal and a cancellation go through at once."""

from __future__ import annotations

import asyncio

import pytest

from ssmatch.consumer import PermanentEventError, forever


async def run(fail_times: int, error: BaseException) -> int:
    calls = 0
    async for attempt in forever("test retry", 0.3):
        with attempt:
            calls += 1
            if calls <= fail_times:
                raise error
    return calls


async def test_a_transient_failure_is_retried_until_it_passes() -> None:
    assert await run(2, ConnectionError("store down")) == 3


async def test_a_permanent_refusal_is_not_retried() -> None:
    with pytest.raises(PermanentEventError):
        await run(5, PermanentEventError("contradicts stored state"))


async def test_a_cancellation_is_not_retried() -> None:
    with pytest.raises(asyncio.CancelledError):
        await run(5, asyncio.CancelledError())
