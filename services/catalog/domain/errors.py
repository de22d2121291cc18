"""Domain errors: what went wrong in the catalog's own terms, mapped to HTTP only at the edge.

Each carries a stable machine `code` (the contract's `error.code`), a human `message` and optional
`details`. The class says which kind of refusal it is; `services/catalog/api/errors.py` maps each
class to one HTTP status.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every refusal the catalog's use cases raise."""

    default_code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details


class NotFound(DomainError):
    """The entity does not exist, or the caller may not know it exists (→ 404)."""

    default_code = "not_found"


class Forbidden(DomainError):
    """The caller is known but lacks the right (→ 403)."""

    default_code = "forbidden"


class Conflict(DomainError):
    """The request does not follow from the entity's current state (→ 409)."""

    default_code = "conflict"


class Invalid(DomainError):
    """The input is well-formed JSON but not acceptable (→ 422); `details` names the fields."""

    default_code = "validation_failed"


class PreconditionFailed(DomainError):
    """The caller's copy is stale (If-Match does not match the current revision) (→ 412)."""

    default_code = "precondition_failed"


class PreconditionRequired(DomainError):
    """A conditional request was required (If-Match missing) (→ 428)."""

    default_code = "precondition_required"
