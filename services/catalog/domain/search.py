"""Search by words and by meaning, pure: what a query asks for, why an item was found, and how the two
rankings are fused.

A query is analysed like the items (`ssmatch.analysis`: folding, Arabic normalisation, jieba), into
word tokens and runs of Chinese characters; a run is found as a substring (each character is indexed
at its position). Words find what the query says; the matcher's multilingual vectors find what it
means in any language. Reciprocal-rank fusion merges the two lists without comparing their scores
(BM25 and cosine live on different scales), and every result says why it is there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ssmatch.analysis import han_chars, index_tokens

#: at most this many query words are used: more adds cost, not precision
MAX_TERMS = 16
#: the usual RRF constant: damps the head of each list so that one list alone cannot dominate
RRF_K = 60
#: a meaning-only result must stand out from the query's similarity to the whole corpus by this many
#: standard deviations: raw cosines of e5 are compressed (~0.78–0.91), so only a relative cut is sound
MEANING_MIN_Z = 2.0
#: below this many items the corpus statistics say nothing; every neighbour counts
MEANING_MIN_CORPUS = 30
SIMILAR_MEANING = "similar meaning"
MATCHED_WORDS = "matched words"
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")


@dataclass(frozen=True)
class QueryTerms:
    """What a query asks the word index for: folded word tokens and runs of Chinese characters."""

    words: tuple[str, ...]
    han_runs: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.words and not self.han_runs


def analyse_query(q: str | None) -> QueryTerms:
    """Words of the query as the index holds them (Chinese runs are matched as substrings instead)."""
    if not q:
        return QueryTerms((), ())
    runs = tuple(dict.fromkeys(_HAN_RUN.findall(q)))[:MAX_TERMS]
    rest = _HAN_RUN.sub(" ", q)
    words = tuple(dict.fromkeys(index_tokens(rest)))[: MAX_TERMS - len(runs)]
    return QueryTerms(words, runs)


def item_text(doc: Mapping[str, Any]) -> str:
    """The text of an item that search looks at: title, description and keywords."""
    return " ".join([str(doc.get("title", "")), str(doc.get("description", "")), " ".join(doc.get("keywords") or [])])


@dataclass(frozen=True)
class ItemWords:
    """An item's analysed text: its word tokens and its Chinese characters in order. The word index
    stores them, so saying which words matched needs no re-analysis (~1 ms an item)."""

    tokens: frozenset[str]
    chars: str

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> ItemWords:
        text = item_text(doc)
        return cls(frozenset(index_tokens(text)), "".join(han_chars(text)))


def matched_words(terms: QueryTerms, item: Mapping[str, Any] | ItemWords) -> list[str]:
    """The query's words (and Chinese runs) that the item contains, in the query's order."""
    words = item if isinstance(item, ItemWords) else ItemWords.of(item)
    return [w for w in terms.words if w in words.tokens] + [r for r in terms.han_runs if r in words.chars]


def matches_all(terms: QueryTerms, item: Mapping[str, Any] | ItemWords) -> bool:
    """Every word of the query is in the item (the `q` filter of a newest-first list)."""
    return not terms.empty and len(matched_words(terms, item)) == len(terms.words) + len(terms.han_runs)


@dataclass(frozen=True)
class MeaningHit:
    id: str
    similarity: float


@dataclass(frozen=True)
class MeaningResult:
    """The matcher's nearest items to the query, with the query's similarity to its whole corpus."""

    hits: tuple[MeaningHit, ...]
    corpus_mean: float = 0.0
    corpus_std: float = 0.0
    corpus_size: int = 0

    def standing_out(self) -> list[MeaningHit]:
        """Neighbours whose similarity stands out from the corpus (all of them in a tiny corpus)."""
        if self.corpus_size < MEANING_MIN_CORPUS or self.corpus_std <= 0:
            return list(self.hits)
        floor = self.corpus_mean + MEANING_MIN_Z * self.corpus_std
        return [h for h in self.hits if h.similarity >= floor]


@dataclass
class Found:
    """One fused result and why it is there."""

    id: str
    score: float = 0.0
    word_rank: int | None = None
    meaning_rank: int | None = None
    similarity: float | None = None
    matched_words: list[str] = field(default_factory=list)

    def reasons(self) -> list[str]:
        out = []
        if self.word_rank is not None:
            out.append(MATCHED_WORDS)
        if self.meaning_rank is not None:
            out.append(SIMILAR_MEANING)
        return out

    def view(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 6),
            "reasons": self.reasons(),
            "matched_words": self.matched_words,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
        }


def fuse(word_ids: Iterable[str], meaning: Iterable[MeaningHit], k: int = RRF_K) -> list[Found]:
    """Reciprocal-rank fusion: score = Σ 1 / (k + rank) over the lists an item is in; best first, ties by id."""
    page, _ = fuse_page(word_ids, meaning, 0, None, k)
    return page


def fuse_page(word_ids: Iterable[str], meaning: Iterable[MeaningHit], offset: int, limit: int | None,
              k: int = RRF_K) -> tuple[list[Found], int]:
    """The fused list's items from `offset` (at most `limit`, None: all) and how many it holds: the
    ranking is done on plain numbers and only the page's items are built (a search fuses ~400 ids to
    show 20)."""
    scores: dict[str, float] = {}
    word_rank: dict[str, int] = {}
    for rank, item_id in enumerate(word_ids, 1):
        word_rank[item_id] = rank
        scores[item_id] = 1.0 / (k + rank)
    near: dict[str, tuple[int, float]] = {}
    for rank, hit in enumerate(meaning, 1):
        near[hit.id] = (rank, hit.similarity)
        scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    window = ordered[offset:] if limit is None else ordered[offset : offset + limit]
    page = []
    for item_id, score in window:
        m_rank, similarity = near.get(item_id, (None, None))
        page.append(Found(item_id, score, word_rank.get(item_id), m_rank, similarity))
    return page, len(ordered)
