"""What the matcher's HTTP API takes and answers, as pydantic models: they validate requests and
are the source of its OpenAPI document (`openapi.py`), so the document cannot drift from the code."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator

#: the list filters a search may carry (field of the item → allowed values); see services/matcher/search.py
SEARCH_FILTER_FIELDS = frozenset({"sdgs", "sectors", "modalities", "languages", "country", "organization_id"})

MAX_BODY_BYTES = 1_000_000


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


class SearchRequest(BaseModel):
    """A search by meaning: the query text, the kind of item, how many, and the list filters."""

    model_config = ConfigDict(extra="forbid")
    q: str = Field(min_length=1, max_length=1000)
    kind: Literal["need", "offer"]
    k: int = Field(20, ge=1, le=200)
    filters: dict[str, list[str | int]] = Field(default_factory=dict, description=f"any of {sorted(SEARCH_FILTER_FIELDS)}")

    @field_validator("q")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip() or any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
            raise ValueError("q must hold text without control characters")
        return value

    @field_validator("filters")
    @classmethod
    def _known(cls, value: dict[str, list[str | int]]) -> dict[str, list[str | int]]:
        unknown = sorted(set(value) - SEARCH_FILTER_FIELDS)
        if unknown:
            raise ValueError(f"unknown filters {unknown}: use {sorted(SEARCH_FILTER_FIELDS)}")
        return value


class SearchHit(BaseModel):
    id: str
    similarity: float


class SearchCorpus(BaseModel):
    """The query's similarity to every open item of the kind: whether a hit stands out is judged against it."""

    mean: float
    std: float
    size: int = Field(ge=0)


class SearchResponse(BaseModel):
    items: list[SearchHit]
    corpus: SearchCorpus
