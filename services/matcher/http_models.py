"""What the matcher's HTTP API takes and answers, as pydantic models: they validate requests and
are the source of its OpenAPI document (`openapi.py`), so the document cannot drift from the code."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

MAX_BODY_BYTES = 1_000_000


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx: `{error: {code, message, details}}`, as in the catalog and notify."""

    error: ErrorDetail


class ItemInput(BaseModel):
    """A need or offer given in full (the catalog's JSON is accepted as is: unknown fields are ignored)."""

    model_config = ConfigDict(extra="ignore")
    title: str = Field(min_length=1, max_length=300)
    description: str = Field("", max_length=20_000)
    keywords: list[str] = Field(default_factory=list, max_length=50)
    text_language: str | None = Field(None, max_length=35)
    languages: list[str] = Field(default_factory=list, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{3}$")
    sdgs: list[int] = Field(default_factory=list, max_length=17)
    sectors: list[str] = Field(default_factory=list, max_length=30)
    modalities: list[str] = Field(default_factory=list, max_length=20)
    delivery_countries: list[str] = Field(default_factory=list, max_length=250)
    delivery_regions: list[str] = Field(default_factory=list, max_length=30)
    accepts_interpretation: bool = False
    triangular_partners: list[str] = Field(default_factory=list, max_length=20)
    embedding: list[FiniteFloat] | None = Field(None, max_length=4096, description="the item's text vector; computed when absent")


class ScoreRequest(BaseModel):
    """Each side either by the id of an item the matcher knows, or in full."""

    model_config = ConfigDict(extra="forbid")
    need_id: str | None = Field(None, min_length=1, max_length=64)
    offer_id: str | None = Field(None, min_length=1, max_length=64)
    need: ItemInput | None = None
    offer: ItemInput | None = None


class ScoreResponse(BaseModel):
    score: float = Field(ge=0, le=1)
    excluded: bool
    explanation: dict[str, Any]
    rules_version: str
    centring_version: str


class RulesResponse(BaseModel):
    version: str
    rules: dict[str, Any]
    centring_version: str | None


class CentringResponse(BaseModel):
    version: str
    items: int = Field(ge=0)
    languages: list[str]


class CentringRebuilt(BaseModel):
    version: str
    items: int = Field(ge=0)


class Health(BaseModel):
    status: Literal["ok", "starting"]
    assigned: bool
    state_loaded: bool
