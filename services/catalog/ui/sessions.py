"""Browser sessions: a token signs in once, the browser then holds only an opaque session cookie.

The session document (in the catalog's database) keeps the token so the pages can act as the user and
call notify with it; the cookie is HttpOnly and SameSite=Lax. Forms carry a CSRF token bound to the
session (for the sign-in form, to a pre-session cookie): a page on another site cannot post them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

SESSION_COOKIE = "ssm_session"
CSRF_COOKIE = "ssm_csrf"
SESSION_DAYS = 7


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


class Sessions:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.coll = db["ui_sessions"]

    async def init_indexes(self) -> None:
        await self.coll.create_index("expires_at", expireAfterSeconds=0)

    async def create(self, token: str) -> tuple[str, dict[str, Any]]:
        session_id = secrets.token_urlsafe(32)
        doc = {"_id": _key(session_id), "token": token, "csrf": new_csrf(), "created_at": datetime.now(UTC),
               "expires_at": datetime.now(UTC) + timedelta(days=SESSION_DAYS)}
        await self.coll.insert_one(doc)
        return session_id, doc

    async def get(self, session_id: str | None) -> dict[str, Any] | None:
        if not session_id or len(session_id) > 100:
            return None
        doc = await self.coll.find_one({"_id": _key(session_id)})
        if doc is None:
            return None
        expires = doc["expires_at"] if doc["expires_at"].tzinfo else doc["expires_at"].replace(tzinfo=UTC)
        return doc if expires > datetime.now(UTC) else None

    async def delete(self, session_id: str | None) -> None:
        if session_id:
            await self.coll.delete_one({"_id": _key(session_id)})
