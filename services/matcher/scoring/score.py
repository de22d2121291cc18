"""score_pair and its batch form: (need, offer, rules) → (score, explanation). Pure: no I/O.

Each item is prepared once (normalised text, bitmasks of codes, unit vector); a batch then scores
one item against many with rapidfuzz's cdist, one matrix product and a few vectorised bit
operations, so scoring keeps pace with raw string similarity. `score_pair` is the batch of one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process

from services.matcher.scoring.centering import LanguageCentroids
from services.matcher.scoring.model import MatchItem, Score
from services.matcher.scoring.rules import Rules
from services.matcher.scoring.text import normalize
from ssmatch import reference

CountryLookup = Callable[[str], Any]
SECTORS = tuple(sorted(reference.SECTOR_CODES))
MODALITIES = tuple(sorted(reference.MODALITY_CODES))
SECTOR_BIT = {c: i for i, c in enumerate(SECTORS)}
MODALITY_BIT = {c: i for i, c in enumerate(MODALITIES)}
_LANG_BIT: dict[str, int] = {}


def _lang_bit(code: str) -> int:
    if code not in _LANG_BIT:
        _LANG_BIT[code] = len(_LANG_BIT) % 63
    return _LANG_BIT[code]


def _mask(codes: Sequence[Any], bits: dict[Any, int] | Callable[[Any], int]) -> int:
    get = bits.get if isinstance(bits, dict) else None
    mask = 0
    for code in codes:
        bit = get(code) if get else bits(code)  # type: ignore[operator]
        if bit is not None:
            mask |= 1 << bit
    return mask


def item_text(item: MatchItem) -> str:
    """The text that is embedded and compared: title, description and keywords."""
    return ". ".join(p for p in (item.title.strip(), item.description.strip(), ", ".join(item.keywords)) if p)


@dataclass
class Prepared:
    """An item's features, computed once per revision and reused for every pair it is in."""

    item: MatchItem
    text: str
    sectors: int
    modalities: int
    sdgs: int
    languages: int
    usable: bool
    geography: float
    vector: np.ndarray | None
    delivery: frozenset[str] = field(default_factory=frozenset)


def _geography_value(item: MatchItem, rules: Rules, countries: CountryLookup) -> float:
    """For offers: how South-South the provider is. For needs: the LDC/LLDC/SIDS priority bonus."""
    g = rules.geography
    facts = countries(item.country)
    if item.kind == "need":
        return g.priority_bonus if facts is not None and (facts.ldc or facts.lldc or facts.sids) else 0.0
    if facts is not None and facts.global_south:
        return g.global_south_provider
    return g.triangular if item.triangular_partners else g.other


def prepare(
    item: MatchItem,
    rules: Rules,
    countries: CountryLookup | None = None,
    now: datetime | None = None,
    centroids: LanguageCentroids | None = None,
) -> Prepared:
    """Features of one item. Its vector is language-centred with `centroids` (default: the shipped
    per-language priors alone, which is what a corpus with no items of that language would use)."""
    lookup = countries or reference.country
    vector = None
    if item.embedding is not None:
        raw = np.asarray(item.embedding, dtype=np.float32)[None, :]
        vector = (centroids or LanguageCentroids(raw.shape[1], rules.semantic.language_prior_weight)).center(raw, [item.text_language])[0]
    now = now or datetime.now(UTC)
    expired = item.expires_at is not None and item.expires_at <= now
    return Prepared(
        item=item,
        text=normalize(item_text(item)),
        sectors=_mask(item.sectors, SECTOR_BIT),
        modalities=_mask(item.modalities, MODALITY_BIT),
        sdgs=_mask([s - 1 for s in item.sdgs if 1 <= s <= 17], lambda b: b),
        languages=_mask(item.languages, _lang_bit),
        usable=item.status == "open" and not expired,
        geography=_geography_value(item, rules, lookup),
        vector=vector,
        delivery=frozenset(item.delivery_countries),
    )


def _popcount(a: np.ndarray) -> np.ndarray:
    return np.bitwise_count(a).astype(np.float32)


class _Tables:
    """Bitmask forms of the rules' tables, built once per Rules object."""

    def __init__(self, rules: Rules) -> None:
        self.source = rules
        adj = rules.adjacent_sectors()
        self.sector_adj = [_mask(adj.get(code, ()), SECTOR_BIT) for code in SECTORS]
        comp = rules.modalities.compatible
        self.modality_comp = [_mask(comp.get(code, ()), MODALITY_BIT) for code in MODALITIES]
        self.weights = rules.weights.normalised()

    @classmethod
    def of(cls, rules: Rules) -> _Tables:
        # model_copy() copies private attributes: rebuild when the slot belongs to another Rules
        if rules._derived is None or rules._derived.source is not rules:  # noqa: SLF001
            rules._derived = cls(rules)  # noqa: SLF001
        return rules._derived  # type: ignore[no-any-return]


def _coverage(need: np.ndarray, offer: np.ndarray, related: list[int], credit: float, nbits: int) -> np.ndarray:
    """Share of the need's codes the offer covers: 1 for the same code, `credit` for a related one."""
    total = np.zeros(need.shape, dtype=np.float32)
    for bit in range(nbits):
        has = ((need >> bit) & 1).astype(bool)
        if not has.any():
            continue
        same = ((offer >> bit) & 1).astype(bool)
        near = (offer & related[bit]) != 0
        total += np.where(has, np.where(same, 1.0, np.where(near, credit, 0.0)), 0.0).astype(np.float32)
    count = _popcount(need)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


@dataclass
class BatchScores:
    """Scores of pairs (needs[i], offers[i]); explanations are built only when asked for."""

    needs: list[Prepared]
    offers: list[Prepared]
    rules: Rules
    total: np.ndarray
    excluded: np.ndarray
    components: dict[str, np.ndarray]
    cosine: np.ndarray
    exclusion_reasons: list[list[str]]

    def score(self, i: int) -> Score:
        need, offer = self.needs[i], self.offers[i]
        weights = _Tables.of(self.rules).weights
        shares = {k: round(float(weights[k] * v[i]), 4) for k, v in self.components.items()}
        if self.excluded[i]:
            return Score(total=0.0, components={k: 0.0 for k in shares}, reasons=self.exclusion_reasons[i],
                         excluded=True, rules_version=self.rules.version)
        return Score(total=round(float(self.total[i]), 4), components=shares, reasons=_reasons(need, offer, self, i),
                     excluded=False, rules_version=self.rules.version)


def _reasons(need: Prepared, offer: Prepared, batch: BatchScores, i: int) -> list[str]:
    n, o = need.item, offer.item
    out = [f"meaning of the texts: {batch.components['semantic'][i]:.0%} similar (cosine {batch.cosine[i]:.3f})"
           + (f", across languages ({n.text_language}→{o.text_language})" if n.text_language and o.text_language and n.text_language != o.text_language else "")]
    out.append(f"shared wording: {batch.components['text'][i]:.0%}")
    shared = sorted(set(n.sectors) & set(o.sectors))
    adjacent = batch.rules.adjacent_sectors()
    near = sorted({f"{a}~{b}" for a in n.sectors for b in o.sectors if a not in o.sectors and b in adjacent.get(a, ())})
    if shared:
        out.append(f"same sector: {', '.join(shared)}")
    if near:
        out.append(f"adjacent sector: {', '.join(near)}")
    if not shared and not near:
        out.append("no common or adjacent sector")
    same_mod = sorted(set(n.modalities) & set(o.modalities))
    out.append(f"modality fits: {', '.join(same_mod)}" if same_mod else
               f"modality partly fits ({batch.components['modalities'][i]:.0%})" if batch.components["modalities"][i] > 0 else "modalities differ")
    common_sdgs = sorted(set(n.sdgs) & set(o.sdgs))
    if common_sdgs:
        out.append("SDGs in common: " + ", ".join(str(s) for s in common_sdgs))
    if offer.geography >= batch.rules.geography.global_south_provider:
        out.append(f"South-South: provider in the Global South ({o.country})")
    elif o.triangular_partners:
        out.append(f"triangular: partners {', '.join(o.triangular_partners)}")
    if need.geography > 0:
        out.append(f"priority country: {n.country} is an LDC, LLDC or SIDS")
    return out


def _exclusions(need: Prepared, offer: Prepared) -> list[str]:
    n, o = need.item, offer.item
    reasons = []
    if not need.usable:
        reasons.append(f"need is not open (status {n.status}, or expired)")
    if not offer.usable:
        reasons.append(f"offer is not open (status {o.status}, or expired)")
    if n.organization_id == o.organization_id:
        reasons.append("need and offer belong to the same organization")
    if offer.delivery and n.country not in offer.delivery:
        reasons.append(f"the offer does not deliver to {n.country} (only {', '.join(sorted(offer.delivery))})")
    if not (need.languages & offer.languages) and not (n.accepts_interpretation or o.accepts_interpretation):
        reasons.append(f"no common working language ({', '.join(n.languages)} vs {', '.join(o.languages)}) and no interpretation accepted")
    return reasons


def score_prepared(needs: list[Prepared], offers: list[Prepared], rules: Rules) -> BatchScores:
    """Score pairs (needs[i], offers[i]); one side is usually the same item repeated."""
    if len(needs) != len(offers):
        raise ValueError("needs and offers must pair up")
    n_pairs = len(needs)
    tables = _Tables.of(rules)
    if n_pairs == 0:
        empty = np.zeros(0, dtype=np.float32)
        return BatchScores(needs, offers, rules, empty, np.zeros(0, dtype=bool), {k: empty for k in tables.weights}, empty, [])

    # text: one row of cdist when one side is a single item, else pairwise
    if all(n is needs[0] for n in needs):
        text = process.cdist([needs[0].text], [o.text for o in offers], scorer=fuzz.token_set_ratio, workers=-1, dtype=np.float32)[0] / 100.0
    elif all(o is offers[0] for o in offers):
        text = process.cdist([offers[0].text], [n.text for n in needs], scorer=fuzz.token_set_ratio, workers=-1, dtype=np.float32)[0] / 100.0
    else:
        text = np.array([fuzz.token_set_ratio(n.text, o.text) for n, o in zip(needs, offers, strict=True)], dtype=np.float32) / 100.0

    missing = [p.item.id for p in (*needs, *offers) if p.vector is None]
    if missing and tables.weights["semantic"] > 0:
        raise ValueError(f"items without an embedding cannot be scored: {', '.join(sorted(set(missing))[:5])}")
    if missing:
        cosine = np.zeros(n_pairs, dtype=np.float32)
    else:
        nv = np.stack([n.vector for n in needs]) if not all(n is needs[0] for n in needs) else needs[0].vector[None, :]  # type: ignore[index]
        ov = np.stack([o.vector for o in offers]) if not all(o is offers[0] for o in offers) else offers[0].vector[None, :]  # type: ignore[index]
        cosine = np.einsum("ij,ij->i", np.broadcast_to(nv, (n_pairs, nv.shape[1])), np.broadcast_to(ov, (n_pairs, ov.shape[1]))).astype(np.float32)
    s = rules.semantic
    semantic = np.clip((cosine - s.floor) / (s.ceiling - s.floor), 0.0, 1.0)

    def arr(side: list[Prepared], attr: str) -> np.ndarray:
        return np.fromiter((getattr(p, attr) for p in side), dtype=np.int64, count=n_pairs)

    n_sec, o_sec = arr(needs, "sectors"), arr(offers, "sectors")
    n_mod, o_mod = arr(needs, "modalities"), arr(offers, "modalities")
    n_sdg, o_sdg = arr(needs, "sdgs"), arr(offers, "sdgs")
    sectors = _coverage(n_sec, o_sec, tables.sector_adj, rules.sectors.adjacent_credit, len(SECTORS))
    modalities = _coverage(n_mod, o_mod, tables.modality_comp, rules.modalities.compatible_credit, len(MODALITIES))
    sdg_count = _popcount(n_sdg)
    sdgs = np.divide(_popcount(n_sdg & o_sdg), sdg_count, out=np.zeros(n_pairs, dtype=np.float32), where=sdg_count > 0)
    geography = np.minimum(1.0, np.fromiter((o.geography + n.geography for n, o in zip(needs, offers, strict=True)), dtype=np.float32, count=n_pairs))

    components = {"semantic": semantic, "text": text, "sectors": sectors, "modalities": modalities, "sdgs": sdgs, "geography": geography}
    total = sum(tables.weights[k] * v for k, v in components.items())

    # hard filters: cheap vectorised checks first, reasons only for the pairs they exclude
    quick = (
        ~np.fromiter((n.usable and o.usable for n, o in zip(needs, offers, strict=True)), dtype=bool, count=n_pairs)
        | (arr(needs, "languages") & arr(offers, "languages") == 0)
        | np.fromiter((n.item.organization_id == o.item.organization_id or (bool(o.delivery) and n.item.country not in o.delivery)
                       for n, o in zip(needs, offers, strict=True)), dtype=bool, count=n_pairs)
    )
    reasons: list[list[str]] = [[] for _ in range(n_pairs)]
    excluded = np.zeros(n_pairs, dtype=bool)
    for i in np.flatnonzero(quick):
        reasons[i] = _exclusions(needs[i], offers[i])
        excluded[i] = bool(reasons[i])
    total = np.where(excluded, 0.0, np.clip(total, 0.0, 1.0)).astype(np.float32)
    return BatchScores(needs, offers, rules, total, excluded, components, cosine, reasons)


def score_pair(need: MatchItem, offer: MatchItem, rules: Rules, countries: CountryLookup | None = None,
               now: datetime | None = None, centroids: LanguageCentroids | None = None) -> Score:
    """Score one pair; the same numbers as the batch functions give for it."""
    return score_prepared([prepare(need, rules, countries, now, centroids)], [prepare(offer, rules, countries, now, centroids)], rules).score(0)


def score_need_against_offers(need: MatchItem, offers: list[MatchItem], rules: Rules, countries: CountryLookup | None = None,
                              now: datetime | None = None, centroids: LanguageCentroids | None = None) -> list[Score]:
    p = prepare(need, rules, countries, now, centroids)
    batch = score_prepared([p] * len(offers), [prepare(o, rules, countries, now, centroids) for o in offers], rules)
    return [batch.score(i) for i in range(len(offers))]


def score_offer_against_needs(offer: MatchItem, needs: list[MatchItem], rules: Rules, countries: CountryLookup | None = None,
                              now: datetime | None = None, centroids: LanguageCentroids | None = None) -> list[Score]:
    p = prepare(offer, rules, countries, now, centroids)
    batch = score_prepared([prepare(n, rules, countries, now, centroids) for n in needs], [p] * len(needs), rules)
    return [batch.score(i) for i in range(len(needs))]
