"""Request and response models of the catalog API.

Validation lives here so that nothing a client sends reaches MongoDB unchecked: codes come from the
canonical taxonomy, text is NFC-normalised and bounded, and free-form `attributes` may not carry
Mongo operators (`$` keys) or dotted paths.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ssmatch import reference

ISO639_1 = re.compile(r"^[a-z]{2}$")
MAX_ATTRIBUTES_BYTES = 8192


def _nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value).strip()


def _sector(code: str) -> str:
    if code not in reference.SECTOR_CODES:
        raise ValueError(f"unknown sector code {code!r}; see /v1/taxonomy/sectors")
    return code


def _modality(code: str) -> str:
    if code not in reference.MODALITY_CODES:
        raise ValueError(f"unknown modality code {code!r}; see /v1/taxonomy/modalities")
    return code


def _country(code: str) -> str:
    if reference.country(code) is None:
        raise ValueError(f"unknown country {code!r}: use an ISO 3166-1 alpha-3 code such as 'MWI'")
    return code


def _language(code: str) -> str:
    if not ISO639_1.match(code):
        raise ValueError(f"{code!r} is not an ISO 639-1 language code such as 'fr'")
    return code


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _check_attributes(value: dict[str, Any]) -> dict[str, Any]:
    def walk(node: Any, depth: int, path: str) -> None:
        if depth > 5:
            raise ValueError(f"attributes nest too deeply at {path}")
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\x00" in key:
                    raise ValueError(f"attribute key {key!r} at {path} may not be empty, start with '$' or contain '.'")
                walk(child, depth + 1, f"{path}.{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, depth + 1, f"{path}[{i}]")
        elif isinstance(node, str):
            if len(node) > 2000:
                raise ValueError(f"attribute value at {path} is over 2000 characters")
        elif node is not None and not isinstance(node, (bool, int, float)):
            raise ValueError(f"attribute value at {path} has an unsupported type")

    walk(value, 0, "attributes")
    import json

    if len(json.dumps(value, ensure_ascii=False)) > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"attributes are over {MAX_ATTRIBUTES_BYTES} bytes")
    return value


Text = Annotated[str, AfterValidator(_nfc)]
Title = Annotated[str, AfterValidator(_nfc), Field(min_length=3, max_length=200)]
Description = Annotated[str, AfterValidator(_nfc), Field(min_length=1, max_length=5000)]
Keyword = Annotated[str, AfterValidator(_nfc), Field(min_length=1, max_length=60)]
SectorCode = Annotated[str, AfterValidator(_sector)]
ModalityCode = Annotated[str, AfterValidator(_modality)]
CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$"), AfterValidator(_country)]
LanguageCode = Annotated[str, AfterValidator(_language)]
Sdg = Annotated[int, Field(ge=1, le=17)]
Attributes = Annotated[dict[str, Any], AfterValidator(_check_attributes)]

ItemStatus = Literal["draft", "open", "matched", "closed", "withdrawn"]
EditableStatus = Literal["draft", "open", "matched", "closed"]
OrgType = Literal["country_office", "solution_provider", "broker"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=10000)


class ItemFields(_Input):
    """Fields shared by needs and offers."""

    title: Title
    description: Description
    keywords: Annotated[list[Keyword], Field(max_length=30)] = []
    sdgs: Annotated[list[Sdg], Field(min_length=1, max_length=17), AfterValidator(_unique)]
    sectors: Annotated[list[SectorCode], Field(min_length=1, max_length=8), AfterValidator(_unique)]
    modalities: Annotated[list[ModalityCode], Field(min_length=1, max_length=9), AfterValidator(_unique)]
    languages: Annotated[list[LanguageCode], Field(min_length=1, max_length=10), AfterValidator(_unique)]
    text_language: LanguageCode | None = None
    country: CountryCode | None = None
    status: EditableStatus = "open"
    expires_at: datetime | None = None
    accepts_interpretation: bool = False
    gender_responsive: bool = False
    attributes: Attributes = {}

    @model_validator(mode="after")
    def _aware_expiry(self) -> ItemFields:
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a time zone, e.g. 2027-01-31T00:00:00Z")
        return self


class TimeWindow(_Input):
    start: date | None = None
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.start and self.end and self.end < self.start:
            raise ValueError("time_window.end is before time_window.start")
        return self


class Money(_Input):
    amount: Annotated[float, Field(ge=0, le=1e12)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


class NeedCreate(ItemFields):
    urgency: Literal["low", "medium", "high"] = "medium"
    budget: Money | None = None
    cost_sharing: bool = False
    time_window: TimeWindow | None = None


class OfferCreate(ItemFields):
    delivery_countries: Annotated[list[CountryCode], Field(max_length=250), AfterValidator(_unique)] = []
    capacity: Annotated[int, Field(ge=1, le=10000)] | None = None
    cost_terms: Annotated[Text, Field(max_length=1000)] | None = None
    triangular_partners: Annotated[list[Annotated[Text, Field(min_length=1, max_length=120)]], Field(max_length=10)] = []


class Contact(_Input):
    name: Annotated[Text, Field(min_length=1, max_length=120)]
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
    phone: Annotated[Text, Field(max_length=40)] | None = None


class OrganizationCreate(_Input):
    name: Annotated[Text, Field(min_length=2, max_length=200)]
    type: OrgType
    country: CountryCode
    contact: Contact | None = None
    language: LanguageCode = "en"


class TokenCreate(_Input):
    organization_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = 365


class DecisionIn(_Input):
    decision: Literal["approve", "reject"]
    note: Annotated[Text, Field(max_length=2000)] | None = None
