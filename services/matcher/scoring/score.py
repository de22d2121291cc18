"""score_pair and its batch form: (need, offer, rules) → (score, explanation). Pure: no I/O.

Each item is prepared once (normalised text, bitmasks of codes, unit vector); a batch then scores
one item against many with rapidfuzz's cdist, one matrix product and a few vectorised bit
operations, so scoring keeps pace with raw string similarity. `score_pair` is the batch of one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process

from services.matcher.scoring.centering import LanguageCentroids
from services.matcher.scoring.model import MatchItem, Score, language_tag
from services.matcher.scoring.reasons import Reason
from services.matcher.scoring.rules import Rules
from services.matcher.scoring.text import normalize
from ssmatch import reference

CountryLookup = Callable[[str], Any]
SECTORS = tuple(sorted(reference.SECTOR_CODES))
MODALITIES = tuple(sorted(reference.MODALITY_CODES))
SECTOR_BIT = {c: i for i, c in enumerate(SECTORS)}
MODALITY_BIT = {c: i for i, c in enumerate(MODALITIES)}
_LANG_BIT: dict[str, int] = {}
LANGUAGE_BITS: Mapping[str, int] = _LANG_BIT  # read-only view for the search's filter columns


OTHER_LANGUAGES_BIT = 62  # shared by every code past the first 62: pairs relying on it are checked exactly


def lang_bit(code: str) -> int:
    if code not in _LANG_BIT:
        _LANG_BIT[code] = min(len(_LANG_BIT), OTHER_LANGUAGES_BIT)
    return _LANG_BIT[code]


def _mask(codes: Iterable[Any], bits: dict[Any, int] | Callable[[Any], int]) -> int:
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


@dataclass(slots=True)
class Prepared:
    """An item's features, computed once per revision and reused for every pair it is in."""

    item: MatchItem
    text: str
    sectors: int
    modalities: int
    sdgs: int
    languages: int
    open: bool
    expires_ts: float  # POSIX seconds, inf when it never expires
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


def prepare(item: MatchItem, rules: Rules, countries: CountryLookup | None = None) -> Prepared:
    """Features of one item, computed once per revision. The vector stays raw: it is language-
    centred in the batch, against the corpus centroids of that moment."""
    lookup = countries or reference.country
    item = _normalised_tags(item)
    return Prepared(
        item=item,
        text=normalize(item_text(item)),
        sectors=_mask(item.sectors, SECTOR_BIT),
        modalities=_mask(item.modalities, MODALITY_BIT),
        sdgs=_mask([s - 1 for s in item.sdgs if 1 <= s <= 17], lambda b: b),
        languages=_mask(item.languages, lang_bit),
        open=item.status == "open",
        expires_ts=item.expires_at.timestamp() if item.expires_at is not None else float("inf"),
        geography=_geography_value(item, rules, lookup),
        vector=np.asarray(item.embedding, dtype=np.float32) if item.embedding is not None else None,
        delivery=_delivery_area(item),
    )


def _normalised_tags(item: MatchItem) -> MatchItem:
    """The item with its language tags reduced to primary subtags (`zh-CN`, `ZH_Hans` -> `zh`).
    MatchItem's validators do this on parsing, but `model_copy(update=...)` and `model_construct`
    skip validation; everything the scorer reads a language from (centroids, the common-language
    filter, the cross-language reason) goes through here."""
    text = language_tag(item.text_language) if item.text_language else None
    langs = list(dict.fromkeys(t for t in (language_tag(v) for v in item.languages) if t))
    if text == item.text_language and langs == item.languages:
        return item
    return item.model_copy(update={"text_language": text, "languages": langs})


def _delivery_area(item: MatchItem) -> frozenset[str]:
    """Countries the offer delivers to: its countries plus the members of its regions (empty: anywhere)."""
    if not item.delivery_countries and not item.delivery_regions:
        return ANYWHERE
    area = set(item.delivery_countries)
    for region in item.delivery_regions:
        area |= reference.region_members(region)
    return frozenset(area)


ANYWHERE: frozenset[str] = frozenset()  # one shared empty area, not one per item (~0.2 KB each)


def _popcount(a: np.ndarray) -> np.ndarray:
    counts: np.ndarray = np.bitwise_count(a).astype(np.float32)
    return counts


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
        if rules._derived is None or rules._derived.source is not rules:
            rules._derived = cls(rules)
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
    shares: np.ndarray = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return shares


def _related(need: np.ndarray, related: list[int], nbits: int) -> np.ndarray:
    """Per pair, the codes that would serve the need: its own plus the related ones (adjacent, compatible)."""
    out = need.copy()
    for bit in range(nbits):
        if related[bit]:
            out |= np.where((need >> bit) & 1 == 1, related[bit], 0)
    return out


def _breadth(need_related: np.ndarray, offer: np.ndarray, allowance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(factor, matched, claimed): code credit scales by min(1, (matched + allowance) / claimed), so an
    offer claiming a few codes beyond the need keeps its credit and one claiming everything does not."""
    claimed = _popcount(offer)
    matched = _popcount(offer & need_related)
    factor = np.minimum(1.0, np.divide(matched + allowance, claimed, out=np.ones_like(claimed), where=claimed > 0))
    return factor.astype(np.float32), matched, claimed


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
    exclusion_codes: dict[int, list[Reason]] = field(default_factory=dict)
    code_gate: np.ndarray | None = None  # share of code credit the texts confirm (1: all)
    breadth: np.ndarray | None = None  # share of code credit left after the breadth discount (1: all)
    unmatched_codes: np.ndarray | None = None
    claimed_codes: np.ndarray | None = None
    scale: np.ndarray | None = None  # factor on every component's share (modality mismatch), 1: none
    resolved: np.ndarray | None = None  # pairs whose total is exact (None: all); see score_against's text_where

    @property
    def exclusion_reasons(self) -> dict[int, list[str]]:
        """The exclusions in words, built on demand: a batch scores thousands of pairs and only what is
        emitted or explained needs its text."""
        return {i: [r.text() for r in rs] for i, rs in self.exclusion_codes.items()}

    def score(self, i: int) -> Score:
        if self.resolved is not None and not self.excluded[i] and not self.resolved[i]:
            raise ValueError(f"pair {i} was only bounded, not scored (see score_against's text_where)")
        need, offer = self.needs[i], self.offers[i]
        weights = _Tables.of(self.rules).weights
        factor = float(self.scale[i]) if self.scale is not None else 1.0
        shares = {k: round(float(weights[k] * v[i] * factor), 4) for k, v in self.components.items()}
        if self.excluded[i]:
            why = self.exclusion_codes.get(i, [])
            return Score(total=0.0, components={k: 0.0 for k in shares}, reasons=[r.text() for r in why],
                         reason_codes=[r.as_dict() for r in why], excluded=True, rules_version=self.rules.version)
        why = _reasons(need, offer, self, i)
        return Score(total=round(float(self.total[i]), 4), components=shares, reasons=[r.text() for r in why],
                     reason_codes=[r.as_dict() for r in why], excluded=False, rules_version=self.rules.version)


def _reasons(need: Prepared, offer: Prepared, batch: BatchScores, i: int) -> list[Reason]:
    n, o = need.item, offer.item
    out = [Reason("semantic_similarity", {"similarity": round(float(batch.components["semantic"][i]), 4), "cosine": round(float(batch.cosine[i]), 4)})]
    if n.text_language and o.text_language and n.text_language != o.text_language:
        out.append(Reason("cross_language", {"need_language": n.text_language, "offer_language": o.text_language}))
    out.append(Reason("shared_wording", {"similarity": round(float(batch.components["text"][i]), 4)}))
    shared = sorted(set(n.sectors) & set(o.sectors))
    adjacent = batch.rules.adjacent_sectors()
    near = sorted({(a, b) for a in n.sectors for b in o.sectors if a not in o.sectors and b in adjacent.get(a, ())})
    if shared:
        out.append(Reason("same_sector", {"sectors": shared}))
    if near:
        out.append(Reason("adjacent_sector", {"pairs": [list(p) for p in near]}))
    if not shared and not near:
        out.append(Reason("no_common_sector"))
    same_mod = sorted(set(n.modalities) & set(o.modalities))
    if same_mod:
        out.append(Reason("same_modality", {"modalities": same_mod}))
    elif batch.components["modalities"][i] > 0:
        out.append(Reason("compatible_modality", {"share": round(float(batch.components["modalities"][i]), 4)}))
    else:
        out.append(Reason("modalities_differ"))
    common_sdgs = sorted(set(n.sdgs) & set(o.sdgs))
    if common_sdgs:
        out.append(Reason("common_sdgs", {"sdgs": common_sdgs}))
    coded = bool(shared or near or same_mod or common_sdgs) or any(float(batch.components[k][i]) > 0 for k in ("modalities",))
    if coded and batch.code_gate is not None and float(batch.code_gate[i]) < 0.995:
        out.append(Reason("codes_unconfirmed", {"credit": round(float(batch.code_gate[i]), 4)}))
    if batch.breadth is not None and batch.unmatched_codes is not None and batch.claimed_codes is not None and float(batch.breadth[i]) < 0.995:
        out.append(Reason("broad_offer", {"unmatched": int(batch.unmatched_codes[i]), "claimed": int(batch.claimed_codes[i])}))
    if offer.geography >= batch.rules.geography.global_south_provider:
        out.append(Reason("south_south", {"country": o.country}))
    elif o.triangular_partners:
        out.append(Reason("triangular", {"partners": list(o.triangular_partners)}))
    if need.geography > 0:
        out.append(Reason("priority_country", {"country": n.country}))
    return out


def _exclusions(need: Prepared, offer: Prepared, now_ts: float) -> list[Reason]:
    n, o = need.item, offer.item
    reasons = []
    for side, p in (("need", need), ("offer", offer)):
        if not p.open:
            reasons.append(Reason("excluded_not_open", {"side": side, "status": p.item.status}))
        elif p.expires_ts <= now_ts:
            reasons.append(Reason("excluded_expired", {"side": side, "date": f"{p.item.expires_at:%Y-%m-%d}"}))
    if n.organization_id == o.organization_id:
        reasons.append(Reason("excluded_same_org"))
    if offer.delivery and n.country not in offer.delivery:
        where = sorted(o.delivery_countries) + sorted(o.delivery_regions) or sorted(offer.delivery)
        reasons.append(Reason("excluded_no_delivery", {"country": n.country, "delivery": where}))
    if not (set(n.languages) & set(o.languages)) and not (n.accepts_interpretation or o.accepts_interpretation):
        reasons.append(Reason("excluded_no_common_language", {"need_languages": list(n.languages), "offer_languages": list(o.languages)}))
    return reasons


@dataclass
class CandidateSet:
    """Many prepared items stacked once, so one item is scored against all of them with array
    operations only. Built per set of candidate revisions, like `prepare` per item."""

    items: list[Prepared]
    texts: list[str]
    vectors: np.ndarray | None
    sq_norms: np.ndarray | None
    lang_codes: list[str | None]
    lang_index: np.ndarray
    sectors: np.ndarray
    modalities: np.ndarray
    sdgs: np.ndarray
    languages: np.ndarray
    open: np.ndarray
    expires: np.ndarray
    geography: np.ndarray
    orgs: np.ndarray
    countries: np.ndarray
    has_delivery: np.ndarray

    @classmethod
    def build(cls, items: list[Prepared]) -> CandidateSet:
        n = len(items)
        codes: dict[str | None, int] = {}
        lang_index = np.fromiter((codes.setdefault(p.item.text_language, len(codes)) for p in items), dtype=np.int64, count=n)
        have_vectors = n > 0 and all(p.vector is not None for p in items)
        vectors = np.stack([p.vector for p in items]).astype(np.float32) if have_vectors else None  # type: ignore[misc]

        def ints(attr: str) -> np.ndarray:
            return np.fromiter((getattr(p, attr) for p in items), dtype=np.int64, count=n)

        return cls(
            items=items,
            texts=[p.text for p in items],
            vectors=vectors,
            sq_norms=np.einsum("ij,ij->i", vectors.astype(np.float64), vectors.astype(np.float64)) if vectors is not None else None,
            lang_codes=list(codes),
            lang_index=lang_index,
            sectors=ints("sectors"), modalities=ints("modalities"), sdgs=ints("sdgs"), languages=ints("languages"),
            open=np.fromiter((p.open for p in items), dtype=bool, count=n),
            expires=np.fromiter((p.expires_ts for p in items), dtype=np.float64, count=n),
            geography=np.fromiter((p.geography for p in items), dtype=np.float32, count=n),
            orgs=np.array([p.item.organization_id for p in items], dtype=object),
            countries=np.array([p.item.country for p in items], dtype=object),
            has_delivery=np.fromiter((bool(p.delivery) for p in items), dtype=bool, count=n),
        )


def _centred_cosines(one: Prepared, cset: CandidateSet, centroids: LanguageCentroids) -> np.ndarray:
    """cos(x - μ_x, o - μ_o) for every row o, by expanding the dot products: a few matrix-vector
    products on the raw vectors instead of centred copies of the whole set.

    In float64: the expansion subtracts nearly equal terms (vectors lie close to their language mean),
    and in float32 the result then depended on which side of the pair was `one` by up to 1e-4, enough
    to change a rounded score. A pair's score must not depend on the direction it is computed in."""
    assert one.vector is not None and cset.vectors is not None and cset.sq_norms is not None
    x = one.vector.astype(np.float64)
    mx = centroids.centroid(one.item.text_language).astype(np.float64)
    M = np.stack([centroids.centroid(code) for code in cset.lang_codes]).astype(np.float64)
    li = cset.lang_index
    O = cset.vectors.astype(np.float64)
    o_x = O @ x
    o_mx = O @ mx
    o_mo = np.einsum("ij,ij->i", O, M[li]) if len(cset.lang_codes) > 1 else O @ M[0]
    x_mo, mx_mo, mo_sq = (M @ x)[li], (M @ mx)[li], np.einsum("ij,ij->i", M, M)[li]
    numerator = o_x - x_mo - o_mx + mx_mo
    x_norm = np.sqrt(max(float(x @ x - 2 * (x @ mx) + mx @ mx), 1e-12))
    o_norm = np.sqrt(np.maximum(cset.sq_norms - 2 * o_mo + mo_sq, 1e-12))
    cosine: np.ndarray = (numerator / (x_norm * o_norm)).astype(np.float32)
    return cosine


TextWhere = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(lower, upper, excluded) → which pairs need their wording similarity: see `score_against`."""


def score_against(one: Prepared, cset: CandidateSet, rules: Rules, centroids: LanguageCentroids | None = None,
                  now: datetime | None = None, text_where: TextWhere | None = None) -> BatchScores:
    """Score one item against every item of a candidate set of the other kind, at `now` (expiry).

    The wording similarity (rapidfuzz) is the one costly component, and its weight is small. With
    `text_where`, every other component is computed first; the function is then given each pair's
    lowest and highest possible total (wording at its least and at 1) and the exclusions, and returns
    the pairs that need their exact total. Only those are compared by wording (`resolved`); the
    others keep the lower bound as their `total` and must not be used as scores. The totals of the
    resolved pairs are the ones an unbounded call gives, bit for bit."""
    now_ts = (now or datetime.now(UTC)).timestamp()
    n = len(cset.items)
    tables = _Tables.of(rules)
    one_is_need = one.item.kind == "need"
    needs = [one] * n if one_is_need else cset.items
    offers = cset.items if one_is_need else [one] * n
    if n == 0:
        empty = np.zeros(0, dtype=np.float32)
        return BatchScores(needs, offers, rules, empty, np.zeros(0, dtype=bool), {k: empty for k in tables.weights}, empty, {})

    if one.vector is None or cset.vectors is None:
        if tables.weights["semantic"] > 0:
            missing = [p.item.id for p in (one, *cset.items) if p.vector is None]
            raise ValueError(f"items without an embedding cannot be scored: {', '.join(sorted(set(missing))[:5])}")
        cosine = np.zeros(n, dtype=np.float32)
    else:
        dims = one.vector.shape[0]
        cosine = _centred_cosines(one, cset, centroids or LanguageCentroids(dims, rules.semantic.language_prior_weight))
    sem = rules.semantic
    semantic = np.clip((cosine - sem.floor) / (sem.ceiling - sem.floor), 0.0, 1.0)

    def sides(attr: str) -> tuple[np.ndarray, np.ndarray]:
        mine = np.full(n, getattr(one, attr), dtype=np.int64)
        theirs = getattr(cset, attr)
        return (mine, theirs) if one_is_need else (theirs, mine)

    n_sec, o_sec = sides("sectors")
    n_mod, o_mod = sides("modalities")
    n_sdg, o_sdg = sides("sdgs")
    sectors = _coverage(n_sec, o_sec, tables.sector_adj, rules.sectors.adjacent_credit, len(SECTORS))
    modalities = _coverage(n_mod, o_mod, tables.modality_comp, rules.modalities.compatible_credit, len(MODALITIES))
    sdg_count = _popcount(n_sdg)
    sdgs = np.divide(_popcount(n_sdg & o_sdg), sdg_count, out=np.zeros(n, dtype=np.float32), where=sdg_count > 0)
    codes = rules.codes
    # Codes confirm what the texts say: their credit scales with semantic agreement (v1.1.0)
    gate = np.minimum(1.0, semantic / codes.semantic_gate).astype(np.float32) if codes.semantic_gate > 0 else np.ones(n, dtype=np.float32)
    # Breadth is not free: claiming codes beyond the need discounts code credit (v1.1.0)
    breadth = np.ones(n, dtype=np.float32)
    unmatched = claimed = np.zeros(n, dtype=np.float32)
    if codes.breadth_allowance >= 0:
        parts = [_breadth(_related(n_sec, tables.sector_adj, len(SECTORS)), o_sec, codes.breadth_allowance),
                 _breadth(_related(n_mod, tables.modality_comp, len(MODALITIES)), o_mod, codes.breadth_allowance),
                 _breadth(n_sdg, o_sdg, codes.breadth_allowance)]
        breadth = np.prod([f for f, _, _ in parts], axis=0).astype(np.float32)
        claimed = sum(c for _, _, c in parts)  # type: ignore[assignment]
        unmatched = claimed - sum(m for _, m, _ in parts)
    sectors, modalities, sdgs = (sectors * gate * breadth, modalities * gate * breadth, sdgs * gate * breadth)
    geography = np.minimum(1.0, cset.geography + one.geography).astype(np.float32)
    # none of the ways the need asks for is offered: the whole pair is discounted (1.3.0)
    scale = np.where((modalities <= 0) & (n_mod != 0), rules.modalities.mismatch_factor, 1.0).astype(np.float32)
    excluded, reasons = _excluded(one, cset, needs, offers, one_is_need, now_ts)

    def totals(text: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The total with wording similarity `text` (raw, 0..1), and the components it is made of."""
        shown_semantic = semantic
        if rules.text_follows_semantic:
            # Shared wording is evidence only where it exceeds shared meaning (names, acronyms): otherwise
            # it rewards writing in the need's language or script (1.2.0, parity across languages).
            text = np.maximum(text, semantic)
        if codes.breadth_discounts_texts:  # a catch-all offer's text is near everything too (v1.1.0)
            shown_semantic, text = semantic * breadth, text * breadth
        parts = {"semantic": shown_semantic, "text": text, "sectors": sectors, "modalities": modalities, "sdgs": sdgs,
                 "geography": geography}
        total = sum(tables.weights[k] * v for k, v in parts.items()) * scale
        return np.where(excluded, 0.0, np.clip(total, 0.0, 1.0)).astype(np.float32), parts

    resolved: np.ndarray | None = None
    text = np.zeros(n, dtype=np.float32)
    if text_where is None:
        rows = np.arange(n)
    else:
        lower, _ = totals(np.zeros(n, dtype=np.float32))
        upper, _ = totals(np.ones(n, dtype=np.float32))
        resolved = np.asarray(text_where(lower, upper, excluded), dtype=bool) & ~excluded
        rows = np.flatnonzero(resolved)
    if len(rows):
        texts = cset.texts if len(rows) == n else [cset.texts[i] for i in rows]
        text[rows] = process.cdist([one.text], texts, scorer=fuzz.token_set_ratio, workers=-1 if len(rows) > 2000 else 1,
                                   dtype=np.float32)[0] / 100.0
    total, components = totals(text)
    return BatchScores(needs, offers, rules, total, excluded, components, cosine, reasons, gate, breadth, unmatched, claimed, scale,
                       resolved)


def _excluded(one: Prepared, cset: CandidateSet, needs: list[Prepared], offers: list[Prepared], one_is_need: bool,
              now_ts: float) -> tuple[np.ndarray, dict[int, list[Reason]]]:
    """The hard filters: vectorised flags first, reasons in words only for the pairs they exclude."""
    n = len(cset.items)
    one_usable = one.open and one.expires_ts > now_ts
    usable = cset.open & (cset.expires > now_ts) & one_usable
    # a common bit below OTHER_LANGUAGES_BIT is a common language; anything else is checked exactly
    flagged = ~usable | ((cset.languages & one.languages & ~(1 << OTHER_LANGUAGES_BIT)) == 0) | (cset.orgs == one.item.organization_id)
    if one_is_need:
        for i in np.flatnonzero(cset.has_delivery):
            flagged[i] |= one.item.country not in cset.items[i].delivery
    elif one.delivery:
        flagged |= ~np.isin(cset.countries, list(one.delivery))
    reasons: dict[int, list[Reason]] = {}
    excluded = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(flagged):
        why = _exclusions(needs[i], offers[i], now_ts)
        if why:
            reasons[int(i)] = why
            excluded[i] = True
    return excluded, reasons


def score_prepared(needs: list[Prepared], offers: list[Prepared], rules: Rules, centroids: LanguageCentroids | None = None,
                   now: datetime | None = None) -> BatchScores:
    """Score pairs (needs[i], offers[i]) where one side is a single item repeated (the case of
    scoring, evaluation and score_pair). Vectors are language-centred with `centroids` (the corpus
    being matched); without them, with the shipped per-language priors alone."""
    if len(needs) != len(offers):
        raise ValueError("needs and offers must pair up")
    if needs and all(n is needs[0] for n in needs):
        return score_against(needs[0], CandidateSet.build(offers), rules, centroids, now)
    if offers and all(o is offers[0] for o in offers):
        return score_against(offers[0], CandidateSet.build(needs), rules, centroids, now)
    if not needs:
        return _empty(rules)
    raise ValueError("score_prepared needs one side to be a single item repeated; score other pairs one by one")


def _empty(rules: Rules) -> BatchScores:
    empty = np.zeros(0, dtype=np.float32)
    return BatchScores([], [], rules, empty, np.zeros(0, dtype=bool), {k: empty for k in _Tables.of(rules).weights}, empty, {})


def score_pair(need: MatchItem, offer: MatchItem, rules: Rules, countries: CountryLookup | None = None,
               now: datetime | None = None, centroids: LanguageCentroids | None = None) -> Score:
    """Score one pair; the same numbers as the batch functions give for it."""
    return score_prepared([prepare(need, rules, countries)], [prepare(offer, rules, countries)], rules, centroids, now).score(0)


def score_need_against_offers(need: MatchItem, offers: list[MatchItem], rules: Rules, countries: CountryLookup | None = None,
                              now: datetime | None = None, centroids: LanguageCentroids | None = None) -> list[Score]:
    p = prepare(need, rules, countries)
    batch = score_prepared([p] * len(offers), [prepare(o, rules, countries) for o in offers], rules, centroids, now)
    return [batch.score(i) for i in range(len(offers))]


def score_offer_against_needs(offer: MatchItem, needs: list[MatchItem], rules: Rules, countries: CountryLookup | None = None,
                              now: datetime | None = None, centroids: LanguageCentroids | None = None) -> list[Score]:
    p = prepare(offer, rules, countries)
    batch = score_prepared([prepare(n, rules, countries) for n in needs], [p] * len(needs), rules, centroids, now)
    return [batch.score(i) for i in range(len(needs))]
