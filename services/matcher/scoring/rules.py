"""The versioned rules file: weights, thresholds and tables, validated before the matcher starts."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ssmatch import reference

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "rules.v1.toml"
COMPONENTS = ("semantic", "text", "sectors", "modalities", "sdgs", "geography")


class RulesError(ValueError):
    """The rules file cannot be used; the message names the file and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weights(_Strict):
    semantic: float = Field(ge=0)
    text: float = Field(ge=0)
    sectors: float = Field(ge=0)
    modalities: float = Field(ge=0)
    sdgs: float = Field(ge=0)
    geography: float = Field(ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> Weights:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("at least one weight must be positive")
        return self

    def normalised(self) -> dict[str, float]:
        total = sum(self.model_dump().values())
        return {k: v / total for k, v in self.model_dump().items()}


class SemanticRules(_Strict):
    floor: float = Field(ge=-1, le=1)
    ceiling: float = Field(ge=-1, le=1)
    language_prior_weight: float = Field(default=2.0, ge=0)
    centring: Literal["mean", "density"] = "mean"
    similar_from: float = Field(default=0.25, ge=-1, le=1)
    similar_full: float = Field(default=0.5, ge=-1, le=1)
    sector_cap: float = Field(default=0.0, ge=0, le=100_000)

    def centring_options(self) -> dict[str, Any]:
        """Keyword arguments of LanguageCentroids.from_vectors for these rules (pass the items'
        sectors as `topics` too: `sector_cap` needs them)."""
        return {"prior_weight": self.language_prior_weight, "method": self.centring,
                "similar_from": self.similar_from, "similar_full": self.similar_full, "topic_cap": self.sector_cap}

    @model_validator(mode="after")
    def _ordered(self) -> SemanticRules:
        if self.ceiling <= self.floor:
            raise ValueError(f"semantic.ceiling ({self.ceiling}) must be above semantic.floor ({self.floor})")
        if 0 < self.sector_cap < 1:
            raise ValueError(f"semantic.sector_cap ({self.sector_cap}) must be 0 (off) or at least 1 item")
        return self


class SectorRules(_Strict):
    adjacent_credit: float = Field(ge=0, le=1)
    adjacency: list[list[str]]

    @model_validator(mode="after")
    def _codes(self) -> SectorRules:
        for group in self.adjacency:
            unknown = [c for c in group if c not in reference.SECTOR_CODES]
            if unknown:
                raise ValueError(f"sectors.adjacency names unknown sector codes: {', '.join(unknown)}")
        return self


class ModalityRules(_Strict):
    compatible_credit: float = Field(ge=0, le=1)
    mismatch_factor: float = Field(default=1.0, ge=0, le=1)
    compatible: dict[str, list[str]]

    @model_validator(mode="after")
    def _codes(self) -> ModalityRules:
        named = set(self.compatible) | {m for ms in self.compatible.values() for m in ms}
        unknown = sorted(named - set(reference.MODALITY_CODES))
        if unknown:
            raise ValueError(f"modalities.compatible names unknown modality codes: {', '.join(unknown)}")
        return self


class GeographyRules(_Strict):
    global_south_provider: float = Field(ge=0, le=1)
    triangular: float = Field(ge=0, le=1)
    other: float = Field(ge=0, le=1)
    priority_bonus: float = Field(ge=0, le=1)


class CodeRules(_Strict):
    """How far declared codes (sectors, modalities, SDGs) may count: they confirm the texts."""

    semantic_gate: float = Field(default=0.0, ge=0, le=1)
    breadth_allowance: int = Field(default=-1, ge=-1, le=30)
    breadth_discounts_texts: bool = False


class ProposalRules(_Strict):
    top_k: int = Field(ge=1, le=100)
    min_score: float = Field(ge=0, le=1)


class Rules(_Strict):
    version: str = Field(min_length=1, max_length=40)
    weights: Weights
    semantic: SemanticRules
    sectors: SectorRules
    modalities: ModalityRules
    geography: GeographyRules
    codes: CodeRules = CodeRules()
    text_follows_semantic: bool = False
    proposals: ProposalRules
    _derived: Any = PrivateAttr(default=None)  # bitmask tables built once by the scorer

    @property
    def top_k(self) -> int:
        return self.proposals.top_k

    @property
    def min_score(self) -> float:
        return self.proposals.min_score

    def adjacent_sectors(self) -> dict[str, frozenset[str]]:
        adj: dict[str, set[str]] = {}
        for group in self.sectors.adjacency:
            for code in group:
                adj.setdefault(code, set()).update(c for c in group if c != code)
        return {k: frozenset(v) for k, v in adj.items()}


def parse_rules(data: dict[str, Any], source: str = "<rules>") -> Rules:
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise RulesError(f"rules file {source} is not valid: {problems}") from exc


def load_rules(path: str | Path | None = None) -> Rules:
    """Read and validate a rules file (default: rules/rules.v1.toml); RulesError says what is wrong."""
    file = Path(path) if path else DEFAULT_RULES
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RulesError(f"rules file {file} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"rules file {file} is not valid TOML: {exc}") from exc
    return parse_rules(data, str(file))
