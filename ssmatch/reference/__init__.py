"""Reference data: canonical taxonomy, SDGs and countries with UN M49 regions and UN country groups.

Why a package of plain JSON files: every service validates codes and shows names in several
languages, and none of them should need network access or extra packages to do so. The JSON files
are checked in; ``countries.json`` is generated from maintained packages by ``build_countries.py``
(see its docstring for the sources and the ``global_south`` rule) and LDC/LLDC/SIDS membership comes
from ``country_groups.csv`` (UN-OHRLLS / UN DESA lists, source and date in its header).

Loading is lazy and cached (``functools.cache``): the files are read once per process, on first use,
and the returned models are frozen so that callers cannot corrupt the shared copies.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "LANGUAGES",
    "MODALITY_CODES",
    "SDG_CODES",
    "SECTOR_CODES",
    "Country",
    "Sdg",
    "TaxonomyEntry",
    "countries",
    "country",
    "country_groups",
    "modalities",
    "modality",
    "name_in",
    "region_members",
    "sdg",
    "sdgs",
    "sector",
    "sectors",
]

HERE = Path(__file__).resolve().parent
#: Languages whose names every SDG carries (six UN languages plus Portuguese).
LANGUAGES: tuple[str, ...] = ("ar", "zh", "en", "fr", "ru", "es", "pt")
Group = Literal["LDC", "LLDC", "SIDS"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class TaxonomyEntry(_Frozen):
    """A sector or a modality: ``code`` is canonical (TAXONOMY.md), ``name`` is English."""

    code: str
    name: str
    names: dict[str, str]
    description: str = ""
    #: Sectors that appear together with this one in seed cases (DOMAIN.md §4); empty for modalities.
    related: tuple[str, ...] = ()


class Sdg(_Frozen):
    """A Sustainable Development Goal; ``code`` is its number 1..17, ``name`` the English short title."""

    code: int = Field(ge=1, le=17)
    name: str
    names: dict[str, str]


class Country(_Frozen):
    """An ISO 3166-1 country or territory with its UN M49 placement and UN group flags."""

    code: str = Field(pattern=r"^[A-Z]{3}$")
    name: str
    names: dict[str, str] = {}
    iso2: str | None = None
    m49: int | None = None
    region: str | None = None
    subregion: str | None = None
    intermediate_region: str | None = None
    independent: bool = True
    ldc: bool = False
    lldc: bool = False
    sids: bool = False
    global_south: bool = False


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def names(self) -> dict[str, str]: ...


def _read(name: str) -> Any:
    return json.loads((HERE / name).read_text(encoding="utf-8"))


@cache
def _taxonomy() -> dict[str, tuple[TaxonomyEntry, ...]]:
    doc = _read("taxonomy.json")
    return {kind: tuple(TaxonomyEntry.model_validate(e) for e in doc[kind]) for kind in ("sectors", "modalities")}


@cache
def _sdgs() -> tuple[Sdg, ...]:
    return tuple(Sdg.model_validate(e) for e in _read("sdgs.json")["sdgs"])


@cache
def _countries() -> dict[str, Country]:
    return {c["code"]: Country.model_validate(c) for c in _read("countries.json")["countries"]}


def sectors() -> list[TaxonomyEntry]:
    """All canonical sectors, in TAXONOMY.md order."""
    return list(_taxonomy()["sectors"])


def modalities() -> list[TaxonomyEntry]:
    """All canonical modalities, in TAXONOMY.md order."""
    return list(_taxonomy()["modalities"])


def sector(code: str) -> TaxonomyEntry | None:
    return next((e for e in _taxonomy()["sectors"] if e.code == code), None)


def modality(code: str) -> TaxonomyEntry | None:
    return next((e for e in _taxonomy()["modalities"] if e.code == code), None)


def sdgs() -> list[Sdg]:
    """The 17 SDGs, 1..17."""
    return list(_sdgs())


def sdg(number: int) -> Sdg | None:
    return _sdgs()[number - 1] if isinstance(number, int) and 1 <= number <= 17 else None


def countries() -> list[Country]:
    """Every ISO 3166-1 alpha-3 entry, sorted by code."""
    return list(_countries().values())


def country(code: str) -> Country | None:
    """The country with this ISO alpha-3 code (exact, upper case), or None: codes are validated, not guessed."""
    return _countries().get(code) if isinstance(code, str) else None


def name_in(entry: _Named, lang: str) -> str:
    """The entry's name in ``lang`` (ISO 639-1, region subtags such as ``pt-BR`` ignored), else English."""
    base = (lang or "en").split("-")[0].split("_")[0].lower()
    return entry.names.get(base) or entry.names.get("en") or entry.name


def country_groups(code: str) -> set[str]:
    """UN country groups of a country: a subset of ``{"LDC", "LLDC", "SIDS"}`` (e.g. Kiribati gives
    ``{"LDC", "SIDS"}``); empty for an unknown code. Global South is a separate flag, ``country(code).global_south``."""
    c = country(code)
    if c is None:
        return set()
    flags: dict[Group, bool] = {"LDC": c.ldc, "LLDC": c.lldc, "SIDS": c.sids}
    return {g for g, on in flags.items() if on}


@cache
def _region_index() -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    for c in _countries().values():
        for name in (c.region, c.subregion, c.intermediate_region):
            if name:
                index.setdefault(name.casefold(), set()).add(c.code)
        for group in country_groups(c.code) | ({"GLOBAL_SOUTH", "Global South"} if c.global_south else set()):
            index.setdefault(group.casefold(), set()).add(c.code)
    return {k: frozenset(v) for k, v in index.items()}


def region_members(region_name: str) -> set[str]:
    """ISO3 codes in an M49 region, sub-region or intermediate region (case-insensitive), e.g.
    ``"Africa"``, ``"Western Africa"``, ``"Latin America and the Caribbean"``; group names ``LDC``,
    ``LLDC``, ``SIDS`` and ``Global South`` (or ``GLOBAL_SOUTH``) work too. Unknown names give an empty set."""
    return set(_region_index().get((region_name or "").strip().casefold(), frozenset()))


SECTOR_CODES: frozenset[str] = frozenset(e.code for e in sectors())
MODALITY_CODES: frozenset[str] = frozenset(e.code for e in modalities())
SDG_CODES: frozenset[int] = frozenset(range(1, 18))
