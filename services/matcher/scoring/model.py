"""Domain objects of the matcher: what is scored and what a score says."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


def language_tag(tag: str) -> str | None:
    """The primary language subtag, lower-cased: `zh-CN`, `zh_Hans`, `ZH` -> `zh`; empty -> None.
    Scoring compares languages (centroids, shared working languages), not regional variants."""
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return sys.intern(primary) if primary else None  # a handful of tags shared by every item


class MatchItem(BaseModel):
    """A need or an offer as the matcher sees it (from an event, the catalog, or an eval set)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    kind: Literal["need", "offer"]
    organization_id: str
    title: str
    description: str = ""
    keywords: list[str] = Field(default_factory=list)
    text_language: str | None = None
    languages: list[str] = Field(default_factory=list)
    country: str
    sdgs: list[int] = Field(default_factory=list)
    sectors: list[str] = Field(default_factory=list)
    modalities: list[str] = Field(default_factory=list)
    delivery_countries: list[str] = Field(default_factory=list)
    delivery_regions: list[str] = Field(default_factory=list)
    status: str = "open"
    expires_at: datetime | None = None
    accepts_interpretation: bool = False
    triangular_partners: list[str] = Field(default_factory=list)
    embedding: list[float] | None = None

    @field_validator("text_language", mode="before")
    @classmethod
    def _language(cls, value: object) -> object:
        return language_tag(value) if isinstance(value, str) else value

    @field_validator("languages", mode="before")
    @classmethod
    def _languages(cls, value: object) -> object:
        if isinstance(value, list):
            tags = (language_tag(v) if isinstance(v, str) else v for v in value)
            return list(dict.fromkeys(t for t in tags if t is not None))
        return value

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        """A date without a zone is taken as UTC, so comparisons never mix naive and aware."""
        from datetime import UTC

        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @classmethod
    def from_eval(cls, raw: dict[str, Any], kind: Literal["need", "offer"]) -> MatchItem:
        return cls.model_validate({**raw, "kind": kind, "organization_id": raw.get("organization", raw["id"])})


class Score(BaseModel):
    """A pair's score: total in [0, 1], each component's share of it, and reasons in words beside
    the same reasons as stable codes with parameters (`reason_codes`, one per reason, same order;
    codes and templates in scoring/REASONS.md) so clients can say them in any language."""

    total: float
    components: dict[str, float]
    reasons: list[str]
    excluded: bool
    rules_version: str
    reason_codes: list[dict[str, Any]] = Field(default_factory=list)

    def explanation(self) -> dict[str, Any]:
        return {"rules_version": self.rules_version, "components": self.components, "reasons": self.reasons,
                "reason_codes": self.reason_codes, "excluded": self.excluded}
