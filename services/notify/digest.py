"""Digest e-mails: which claimed delivery records share one message, and what that message says.

Pure functions (no I/O, no clock) used by the DeliveryWorker. The consumer plans one e-mail record
per proposal with ``digest: True`` and ``deliver_at`` = the recipient's next digest slot; when such
records fall due together they go out as ONE e-mail per (organization, address), rendered with the
``digest`` template. Each record is still marked on its own (sent, retried or failed), so a record
that has been marked sent is never part of a later digest.
"""

from __future__ import annotations

import hashlib
from typing import Any

#: Kinds whose per-alert context is a ``match_proposed`` context, i.e. what the digest template lists.
DIGEST_KINDS: frozenset[str] = frozenset({"match_proposed"})

GroupKey = tuple[str, str]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_digest_record(d: dict[str, Any]) -> bool:
    """An e-mail record planned for a digest whose context the digest template can list.

    Anything else (another kind, a context without a score) goes out on its own, so one malformed
    record fails alone instead of holding back the whole digest.
    """
    ctx = d.get("context")
    return (d.get("channel") == "email" and bool(d.get("digest")) and d.get("kind") in DIGEST_KINDS
            and isinstance(ctx, dict) and _number(ctx.get("score")))


def split_due(due: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[GroupKey, list[dict[str, Any]]]]:
    """(records sent one by one, digest groups keyed by (organization id, e-mail address)).

    Addresses are compared case-insensitively (one mailbox, one message); the order of records
    inside a group follows the claim order.
    """
    single: list[dict[str, Any]] = []
    groups: dict[GroupKey, list[dict[str, Any]]] = {}
    for d in due:
        if is_digest_record(d):
            groups.setdefault((d["organization_id"], str(d["target"]).strip().lower()), []).append(d)
        else:
            single.append(d)
    return single, groups


def _score(d: dict[str, Any]) -> float:
    score = d["context"].get("score")
    return float(score) if _number(score) else -1.0


def ordered(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best match first; ties by creation time then id, so a re-sent digest reads the same."""
    return sorted(group, key=lambda d: (-_score(d), str(d.get("created_at") or ""), d["_id"]))


def digest_language(group: list[dict[str, Any]]) -> str:
    """The language of the most recently planned record (preferences may have changed since)."""
    latest = max(group, key=lambda d: (str(d.get("created_at") or ""), d["_id"]))
    return latest.get("language") or "en"


def digest_context(group: list[dict[str, Any]], base_url: str) -> dict[str, Any]:
    """The ``digest`` template context: one entry per record, best first."""
    records = ordered(group)
    name = next((d["context"].get("recipient_name") for d in records if d["context"].get("recipient_name")), None)
    keys = ("score", "need_title", "offer_title", "explanation", "url")
    return {
        "matches": [{k: d["context"].get(k) for k in keys} for d in records],
        "url": f"{base_url.rstrip('/')}/v1/matches?status=proposed",
        "recipient_name": name,
    }


def digest_message_id(group: list[dict[str, Any]]) -> str:
    """Same records → same Message-ID (a re-send after a crash collapses in mail clients);
    different records → a different one. A digest of hundreds of records still gets a short id."""
    digest = hashlib.sha256("\n".join(sorted(d["_id"] for d in group)).encode()).hexdigest()[:32]
    return f"digest.{digest}@ssmatch"
