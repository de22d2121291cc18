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

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

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


def _region(name: str) -> str:
    if not reference.region_members(name):
        raise ValueError(f"unknown region {name!r}: use a UN M49 region, sub-region or intermediate region name such as 'Western Africa', or LDC, LLDC, SIDS")
    return name


SDG_TARGET = re.compile(r"^(1[0-7]|[1-9])\.([1-9][0-9]?|[a-d])$")


def _sdg_target(code: str) -> str:
    if not SDG_TARGET.match(code):
        raise ValueError(f"{code!r} is not an SDG target such as '2.4' or '17.a'")
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
# The JSON Schema of each code names the valid values, so the OpenAPI document says what the API accepts.
SectorCode = Annotated[str, AfterValidator(_sector), Field(json_schema_extra={"enum": sorted(reference.SECTOR_CODES)})]
ModalityCode = Annotated[str, AfterValidator(_modality), Field(json_schema_extra={"enum": sorted(reference.MODALITY_CODES)})]
CountryCode = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", json_schema_extra={"enum": sorted(c.code for c in reference.countries())}), AfterValidator(_country)
]
LanguageCode = Annotated[str, AfterValidator(_language), Field(json_schema_extra={"pattern": ISO639_1.pattern})]
Sdg = Annotated[int, Strict(), Field(ge=1, le=17)]
# JSON types are taken as the schema states them: no "2" for 2, "true" for true or 0 for a date
# (the bulk importer converts its text cells to these types before validating).
Flag = Annotated[bool, Strict()]


def _iso_text(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("use an ISO 8601 string such as 2027-01-31 (or 2027-01-31T00:00:00Z)")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_text)]
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_text)]
Attributes = Annotated[
    dict[str, Any],
    AfterValidator(_check_attributes),
    Field(json_schema_extra={"propertyNames": {"pattern": r"^[^$.\u0000][^.\u0000]*$"}, "description": "free-form; keys may not start with '$' or contain '.'"}),
]

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
    sdg_targets: Annotated[list[Annotated[str, AfterValidator(_sdg_target)]], Field(max_length=30), AfterValidator(_unique)] = []
    sectors: Annotated[list[SectorCode], Field(min_length=1, max_length=8), AfterValidator(_unique)]
    modalities: Annotated[list[ModalityCode], Field(min_length=1, max_length=9), AfterValidator(_unique)]
    languages: Annotated[list[LanguageCode], Field(min_length=1, max_length=10), AfterValidator(_unique)]
    text_language: LanguageCode | None = None
    country: CountryCode | None = None
    status: EditableStatus = "open"
    expires_at: IsoDateTime | None = None
    accepts_interpretation: Flag = False
    gender_responsive: Flag = False
    attributes: Attributes = {}

    @model_validator(mode="after")
    def _targets_of_listed_goals(self) -> ItemFields:
        stray = [t for t in self.sdg_targets if int(t.split(".")[0]) not in self.sdgs]
        if stray:
            raise ValueError(f"sdg_targets {', '.join(stray)} belong to goals not listed in sdgs")
        return self

    @model_validator(mode="after")
    def _aware_expiry(self) -> ItemFields:
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a time zone, e.g. 2027-01-31T00:00:00Z")
        return self


class TimeWindow(_Input):
    start: IsoDate | None = None
    end: IsoDate | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.start and self.end and self.end < self.start:
            raise ValueError("time_window.end is before time_window.start")
        return self


class Money(_Input):
    amount: Annotated[float, Strict(), Field(ge=0, le=1e12)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


class NeedCreate(ItemFields):
    urgency: Literal["low", "medium", "high"] = "medium"
    budget: Money | None = None
    cost_sharing: Flag = False
    time_window: TimeWindow | None = None


class OfferCreate(ItemFields):
    delivery_countries: Annotated[list[CountryCode], Field(max_length=250), AfterValidator(_unique)] = []
    # regions the offer also delivers to (expanded to member countries by the matcher); with no
    # countries and no regions, the offer delivers anywhere
    delivery_regions: Annotated[list[Annotated[str, Field(min_length=2, max_length=80), AfterValidator(_region)]], Field(max_length=30), AfterValidator(_unique)] = []
    capacity: Annotated[int, Strict(), Field(ge=1, le=10000)] | None = None
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


class OrganizationUpdate(_Input):
    """What an organization may change about itself: its name, working language and contact (null
    removes the contact). Its type and country are fixed (its tokens' role and its items follow them)."""

    name: Annotated[Text, Field(min_length=2, max_length=200)] | None = None
    language: LanguageCode | None = None
    contact: Contact | None = None

    @model_validator(mode="after")
    def _something(self) -> OrganizationUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one of name, language, contact")
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be removed")
        if "language" in self.model_fields_set and self.language is None:
            raise ValueError("language cannot be removed")
        return self


def _whole_number(value: Any) -> Any:
    """JSON Schema's `integer` includes 84.0 (a number with no fraction): accept it as 84, as the spec
    says; refuse booleans, strings and real fractions."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a whole number of days")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number of days")
        return int(value)
    return value


class TokenCreate(_Input):
    organization_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    expires_in_days: Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=3650)] | None = 365


class DecisionIn(_Input):
    decision: Literal["approve", "reject"]
    note: Annotated[Text, Field(max_length=2000)] | None = None


LifecycleEvent = Literal["interested", "not_interested", "agreement_reached", "in_progress", "completed", "declined"]
Note = Annotated[Text, Field(max_length=2000)]


class ResourcesMobilised(_Input):
    amount: Annotated[float, Strict(), Field(ge=0, le=1e13)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


class Outcome(_Input):
    """What a completed partnership achieved (reported with `completed`)."""

    results: Annotated[Text, Field(max_length=5000)] = ""
    people_trained: Annotated[int, Strict(), Field(ge=0, le=100_000_000)] = 0
    beneficiaries: Annotated[int, Strict(), Field(ge=0, le=10_000_000_000)] = 0
    countries: Annotated[list[CountryCode], Field(max_length=250), AfterValidator(_unique)] = []
    resources_mobilised: ResourcesMobilised | None = None
    gender_responsive: Flag = False


class LifecycleIn(_Input):
    """A step after an approved introduction (reported by a party, a broker or an admin).

    `interested` / `not_interested` are a party's response: a party answers for its own side; a broker
    or admin answering for a party names it in `party`. `outcome` goes with `completed` only."""

    event: LifecycleEvent
    note: Note | None = None
    party: Literal["need", "offer"] | None = None
    outcome: Outcome | None = None

    @model_validator(mode="after")
    def _outcome_with_completed(self) -> LifecycleIn:
        if self.outcome is not None and self.event != "completed":
            raise ValueError("outcome goes with the completed event only")
        return self


MATCH_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$"
MatchId = Annotated[str, Field(min_length=3, max_length=130, pattern=MATCH_ID_PATTERN)]


class BulkDecision(_Input):
    match_id: MatchId
    decision: Literal["approve", "reject"]
    note: Note | None = None


class BulkDecisionsIn(_Input):
    """Up to 50 decisions; each is applied or refused on its own."""

    decisions: Annotated[list[BulkDecision], Field(min_length=1, max_length=50)]


def _printable(value: str | None) -> str | None:
    """Search text may not carry control characters (a NUL byte cannot reach a regex)."""
    if value is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("text may not contain control characters")
    return value


PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


class ItemListIn(_Input):
    """Query of GET /v1/needs and /v1/offers (and the pages that list items)."""

    sdg: Annotated[int, Field(ge=1, le=17)] | None = None
    sector: Annotated[str, Field(max_length=40, pattern=r"^[a-z_]+$")] | None = None
    modality: Annotated[str, Field(max_length=40, pattern=r"^[a-z_]+$")] | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    region: Annotated[str, Field(max_length=80)] | None = None
    group: Literal["LDC", "LLDC", "SIDS"] | None = None
    status: ItemStatus | None = None
    language: Annotated[str, Field(pattern=r"^[a-z]{2}$")] | None = None
    q: Annotated[str, Field(max_length=200), AfterValidator(_printable)] | None = None
    organization_id: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = None
    sort: Literal["recency", "relevance"] = "recency"
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(max_length=100)] | None = None


MatchStatusName = Literal["proposed", "approved", "rejected", "retracted"]
Group = Literal["LDC", "LLDC", "SIDS"]


class QueueFilters(_Input):
    """Filters of the broker queue and of the reports (all optional; together they narrow).

    `region` is the UN M49 region/sub-region of the need's country; `group` a UN group of either
    party's country; `need_language`/`offer_language` a language each side works in (a language pair);
    `min_age_days`/`max_age_days` bound how long ago the match was proposed."""

    status: MatchStatusName | None = None
    sdg: Annotated[int, Field(ge=1, le=17)] | None = None
    sector: Annotated[str, Field(max_length=40, pattern=r"^[a-z_]+$")] | None = None
    modality: Annotated[str, Field(max_length=40, pattern=r"^[a-z_]+$")] | None = None
    region: Annotated[str, Field(max_length=80)] | None = None
    group: Group | None = None
    need_language: Annotated[str, Field(pattern=r"^[a-z]{2}$")] | None = None
    offer_language: Annotated[str, Field(pattern=r"^[a-z]{2}$")] | None = None
    min_score: Annotated[float, Field(ge=0, le=1)] | None = None
    max_score: Annotated[float, Field(ge=0, le=1)] | None = None
    min_age_days: Annotated[float, Field(ge=0, le=36500)] | None = None
    max_age_days: Annotated[float, Field(ge=0, le=36500)] | None = None

    @model_validator(mode="after")
    def _known_region(self) -> QueueFilters:
        if self.region is not None and not reference.region_members(self.region):
            raise ValueError(f"unknown region {self.region[:80]!r}: use a UN M49 region or sub-region name such as 'Africa' or 'Eastern Africa'")
        return self


class QueuePageIn(QueueFilters):
    sort: Literal["score", "age"] = "score"
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: Annotated[str, Field(max_length=200)] | None = None


# ---- response models ---------------------------------------------------------------------------
# Documented in the OpenAPI schema so that clients (and the schemathesis fuzz test) can check what the
# API answers. Handlers return JSONResponse directly, so these describe the output without paying for
# a second validation on every request. `extra="allow"`: the API may add fields, never remove them.


class _Output(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorInfo(_Output):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: `{"error": {"code", "message", "details"}}`."""

    error: ErrorInfo


class OrganizationOut(_Output):
    id: str
    name: str
    type: OrgType
    country: str
    contact: dict[str, Any] | None = None
    language: str = "en"
    created_at: datetime
    region: str | None = Field(None, description="UN M49 region of the country (derived)")
    subregion: str | None = Field(None, description="UN M49 sub-region of the country (derived)")
    intermediate_region: str | None = Field(None, description="UN M49 intermediate region, e.g. Eastern Africa (derived)")
    groups: list[Literal["LDC", "LLDC", "SIDS"]] = Field([], description="UN country groups of the country (derived)")


class OrganizationPage(_Output):
    items: list[OrganizationOut]


class TokenOut(_Output):
    token: str
    id: str
    organization_id: str
    role: Literal["seeker", "provider", "broker", "admin"]
    expires_at: datetime | None


class TokenRevoked(_Output):
    id: str
    revoked: bool


class ItemOut(_Output):
    id: str
    kind: Literal["need", "offer"]
    organization_id: str
    title: str
    description: str
    keywords: list[str] = []
    sdgs: list[int]
    sdg_targets: list[str] = []
    sectors: list[str]
    modalities: list[str]
    languages: list[str]
    text_language: str | None = None
    country: str
    status: ItemStatus
    expires_at: datetime | None = None
    accepts_interpretation: bool = False
    gender_responsive: bool = False
    attributes: dict[str, Any] = {}
    revision: int = Field(ge=1)
    created_at: datetime
    updated_at: datetime
    withdrawn_at: datetime | None = None


class NeedOut(ItemOut):
    urgency: Literal["low", "medium", "high"] = "medium"
    budget: dict[str, Any] | None = None
    cost_sharing: bool = False
    time_window: dict[str, Any] | None = None


class OfferOut(ItemOut):
    delivery_countries: list[str] = []
    delivery_regions: list[str] = []
    capacity: int | None = None
    cost_terms: str | None = None
    triangular_partners: list[str] = []


class FoundBy(_Output):
    """Why a listed item was found by `q` (present on every item of a list with `q`)."""

    score: float | None = Field(None, description="fused rank score (reciprocal-rank fusion), higher is better; null newest first")
    reasons: list[Literal["matched words", "similar meaning"]]
    matched_words: list[str] = Field(description="the query's words (folded) and Chinese runs the item contains")
    similarity: float | None = Field(None, description="cosine of the query's and the item's multilingual vectors, when found by meaning")


class SearchInfo(_Output):
    """How a list with `q` was answered: `words` from the index (or a store scan while it is built),
    `meaning` used, not used (newest-first lists, non-open statuses) or unavailable (with why)."""

    words: Literal["index", "store"]
    meaning: Literal["used", "not used", "unavailable"]
    message: str | None = None


class NeedOutFound(NeedOut):
    search: FoundBy | None = None


class OfferOutFound(OfferOut):
    search: FoundBy | None = None


class NeedPage(_Output):
    items: list[NeedOutFound]
    next_cursor: str | None
    search: SearchInfo | None = Field(None, description="present when `q` was given")


class OfferPage(_Output):
    items: list[OfferOutFound]
    next_cursor: str | None
    search: SearchInfo | None = Field(None, description="present when `q` was given")


class MatchOut(_Output):
    id: str
    need_id: str
    offer_id: str
    score: float = Field(ge=0, le=1)
    explanation: dict[str, Any]
    status: Literal["proposed", "approved", "rejected", "retracted"]
    lifecycle: LifecycleEvent | None = Field(None, description="the last step after approval (null right after it)")
    claimed_by: str | None = Field(None, description="the broker organization reviewing it now (null when free)")
    claimed_until: datetime | None = None
    responses: dict[str, Any] | None = Field(None, description="`need` / `offer`: {response, note, by, at}")
    outcome: dict[str, Any] | None = None
    lifecycle_history: list[dict[str, Any]] | None = Field(None, description="every step: {event, party, note, by, at}")


class MatchPage(_Output):
    items: list[MatchOut]
    next_cursor: str | None = None


class ClaimOut(_Output):
    match_id: str
    claimed_by: str | None
    claimed_until: datetime | None


class BulkDecisionResult(_Output):
    match_id: str
    status: str | None = Field(description="the match's status after this call (null when unknown)")
    http_status: int = Field(description="what the single-match call would have answered (200, 403, 404, 409)")
    error: ErrorInfo | None = Field(description="null when applied")


class BulkDecisionsOut(_Output):
    results: list[BulkDecisionResult]


class TaxonomyPage(_Output):
    items: list[dict[str, Any]]


class ImportError_(_Output):
    row: int = Field(description="row number as a spreadsheet shows it (the header is row 1)")
    column: str | None = Field(description="the column (API field name) at fault, or null for the whole row")
    reason: str


class ImportResult(_Output):
    kind: Literal["need", "offer"]
    dry_run: bool
    rows: int = Field(description="data rows read")
    created: int = Field(description="rows created by this call")
    existing: int = Field(description="rows already imported by an earlier upload of the same file")
    valid: int = Field(description="rows that passed validation")
    failed: int
    errors: list[ImportError_]


class ReportCounts(_Output):
    needs: int
    offers: int
    matches: int
    partnerships: int


class ReportSummary(_Output):
    """GET /v1/reports/summary; every key always present (see services/catalog/domain/reports.py)."""

    filters: dict[str, Any]
    generated_at: datetime
    totals: ReportCounts
    by_sdg: list[dict[str, Any]] = Field(description="[{sdg, needs, offers, matches, partnerships}] for SDG 1..17")
    by_region: list[dict[str, Any]] = Field(description="[{region, needs, offers, matches, partnerships}] per UN M49 region")
    by_sector: list[dict[str, Any]] = Field(description="[{sector, needs, offers, matches, partnerships}] per sector code")
    funnel: dict[str, int] = Field(description="{posted, matched, approved, agreement, completed}: needs at each step")
    shares: dict[str, Any] = Field(description="{base, count, LDC, LLDC, SIDS, gender_responsive}: shares of the matches, 0..1 or null")
    median_days: dict[str, float | None] = Field(description="{posting_to_first_match, posting_to_introduction}")
    outcomes: dict[str, Any] = Field(description="completed partnerships' outcomes summed")
    time_series: list[dict[str, Any]] = Field(description="[{month, needs, offers, matches, approved, partnerships, completed}], oldest first")
