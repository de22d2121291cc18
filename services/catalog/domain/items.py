"""Needs and offers, pure: who sees and who changes an item, conditional updates, contact privacy."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.catalog.domain.errors import Conflict, Forbidden, NotFound, PreconditionFailed, PreconditionRequired
from ssmatch.auth import Principal

#: statuses only the owner, brokers and admins see (issue 11: drafts and withdrawn items are private)
PRIVATE_STATUSES = frozenset({"draft", "withdrawn"})
PUBLIC_STATUSES = ("open", "matched", "closed")
_REVISION = re.compile(r"[0-9]{1,12}")


def is_staff(principal: Principal) -> bool:
    return principal.role in ("admin", "broker")


def may_see_item(principal: Principal, item: Mapping[str, Any]) -> bool:
    if item.get("status") not in PRIVATE_STATUSES:
        return True
    return is_staff(principal) or principal.organization_id == item.get("organization_id")


def check_visible(kind: str, item: Mapping[str, Any] | None, principal: Principal, item_id: str) -> Mapping[str, Any]:
    """A private item of another organization is answered as unknown (404), so its existence does not leak."""
    if item is None or not may_see_item(principal, item):
        raise NotFound(f"{kind} {item_id} not found")
    return item


def check_owner(kind: str, item: Mapping[str, Any], principal: Principal) -> None:
    if principal.is_admin:
        return
    if item["organization_id"] != principal.organization_id:
        raise Forbidden(f"only the organization that owns this {kind} (or an admin) may change it")


def check_editable(kind: str, item: Mapping[str, Any]) -> None:
    if item["status"] == "withdrawn":
        raise Conflict(f"{kind} {item['_id']} was withdrawn and can no longer change", code="withdrawn")


def etag_for(revision: int) -> str:
    return f'"{revision}"'


def parse_if_match(header: str | None) -> int:
    """The revision an `If-Match` names. Missing → PreconditionRequired; anything that is not an ETag
    this API issued (`"7"`, `W/"7"`) names no revision (-1), so the update is refused as stale, never a 500.
    Only ASCII digits count: `"²"` is a digit to `str.isdigit` but not to `int`."""
    if header is None:
        raise PreconditionRequired("PATCH needs an If-Match header with the ETag from your last GET")
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    return int(value) if _REVISION.fullmatch(value) else -1


def check_revision(kind: str, item: Mapping[str, Any], expected: int) -> None:
    if expected != item["revision"]:
        raise PreconditionFailed(
            f"{kind} {item['_id']} changed since you read it (now at {etag_for(item['revision'])}); read it again",
            details={"current_etag": etag_for(item["revision"])},
        )


def list_scope(principal: Principal, status: str | None) -> dict[str, Any]:
    """The status/owner restriction a caller's list query gets.

    Staff see everything but withdrawn items by default. Others see public statuses by default, and
    ask for drafts or withdrawn items only of their own organization."""
    if is_staff(principal):
        return {"status": status} if status else {"status": {"$ne": "withdrawn"}}
    if status in PRIVATE_STATUSES:
        return {"status": status, "organization_id": principal.organization_id or "-"}
    if status:
        return {"status": status}
    return {"status": {"$in": list(PUBLIC_STATUSES)}}


def may_see_contact(principal: Principal, org_id: str, approved_counterpart: bool) -> bool:
    """Introductions are the broker's job: a contact is visible to its own organization, brokers and
    admins, and to the other party of an approved match — nobody else."""
    return is_staff(principal) or principal.organization_id == org_id or approved_counterpart
