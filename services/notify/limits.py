"""Notify's edge limits: request body size (413, chunked bodies included) and a per-token rate limit.

The rate limit uses the maintained ``limits`` library (moving window) with in-memory storage, so it
is per replica: with N notify replicas a token gets up to N times ``SSMATCH_NOTIFY_RATE_LIMIT``.
Pointing ``limits`` at a shared storage (``storage_from_string("redis://…")``) makes it global
without other changes.
"""

from __future__ import annotations

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ssmatch.auth import Principal
from ssmatch.http import ApiError, error_response

#: Notify's bodies are a webhook URL or a preferences object: a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024


class BufferedBodyLimit:
    """Reads the whole body (it is small) before the app sees it, refusing it with 413 as soon as it
    passes ``max_bytes``, whether it came with a Content-Length or chunked."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        too_large = error_response(413, "payload_too_large", f"request body over {self.max_bytes} bytes",
                                   {"max_bytes": self.max_bytes})
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.strip().isdigit() and value.strip().isascii() and int(value) > self.max_bytes:
                await too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class TokenRateLimit:
    """``limit`` (e.g. ``"300/minute"``) per bearer token; the admin token is exempt."""

    def __init__(self, limit: str) -> None:
        self.item = parse(limit) if limit.strip() not in ("", "0") else None
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.limited_total = 0

    async def check(self, principal: Principal) -> None:
        if self.item is None or principal.is_admin:
            return
        key = principal.token_id or f"org:{principal.organization_id}"
        if await self.limiter.hit(self.item, "notify", key):
            return
        self.limited_total += 1
        stats = await self.limiter.get_window_stats(self.item, "notify", key)
        import time

        retry_after = max(1, int(stats.reset_time - time.time()) + 1)
        raise ApiError(429, f"rate limit exceeded: at most {self.item.amount} requests per {self.item.multiples} {self.item.GRANULARITY.name} per token",
                       details={"retry_after_s": retry_after, "limit": str(self.item)}, headers={"Retry-After": str(retry_after)})
