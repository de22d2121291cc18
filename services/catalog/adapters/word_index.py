"""The word index: a tantivy inverted index of needs and offers, a read model of the catalog's store.

Text is analysed in Python (`ssmatch.analysis`: folding, Arabic normalisation, jieba), so the index
holds ready tokens and splits them on spaces only; Chinese characters are also indexed one per
position so that any run of them is found as a substring. The list filters (status, sectors, SDGs,
modalities, country, languages, organization) are indexed fields, so a query with a selective filter
reads only its postings. The index lives on disk beside a small meta file (format version and the
watermark: the latest `updated_at` it holds); `IndexSync` keeps it fresh and rebuilds it when it is
missing, of another format, or disagrees with the store.

Each entry also stores the item's public JSON and its analysed words, so a page (and why each item
was found) is answered from the index alone: reading a page's 20 documents back from SecantusDB cost
~7 ms of CPU between the two processes (20k items, measured), the index's search ~1.5 ms. Writes known
to this process but not yet committed here are *staged* (`stage`): this process's own writes at once
(read-your-writes), and the change stream's deliveries until their commit; lists read staged copies
before the index's.

Filters arrive as the store's own list query (`CatalogStore.list_query`) and are translated here, so
the index and the store can never disagree on what a filter means; an operator this translation does
not know raises `UnsupportedFilter` and the caller falls back to the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import tantivy

from services.catalog.domain.search import ItemWords, QueryTerms, item_text
from services.catalog.store import as_stored, public_json
from ssmatch.analysis import han_chars, index_tokens

log = logging.getLogger(__name__)

#: bump when the schema or the analysis changes: an index of another format is rebuilt
FORMAT_VERSION = 2
META_FILE = "ssmatch-word-index.json"
FILTER_FIELDS = ("kind", "status", "sectors", "sdgs", "modalities", "country", "languages", "organization_id")
TITLE_BOOST = 2.0
#: a newest-first search fetches this many hits past its page, so that the group of hits sharing the
#: lowest high half fetched rarely has to be read whole (see `WordIndex._newest`)
NEWEST_SLACK = 64
#: an `$in` (or `$nin`) of at most this many values is a union of term queries, walked alongside the
#: other clauses; a set query builds a bitset of every document holding any value (0.77 ms against
#: 0.26 ms for the three public statuses at 100,000 items, measured), which pays only for long lists
SMALL_SET = 8
#: a staged write the index has not committed within this long is dropped (the sync is failing, and
#: catches up from the store when it recovers)
STAGE_TTL_S = 60.0
#: the status of a change-stream deletion (the API never deletes items; an operator might)
DELETED = "deleted"
_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


class IndexUnavailable(RuntimeError):
    """The index cannot answer this query: the caller answers from the store instead."""


class UnsupportedFilter(IndexUnavailable):
    """A list filter the index cannot express."""


def passes(doc: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    """Whether a stored item passes the store's list query, evaluated here (same operators as the
    index's translation): a staged write is shown or hidden by it before the index holds it."""
    for name, cond in filters.items():
        value = doc.get(name)
        values = [str(v) for v in value] if isinstance(value, list) else ([] if value is None else [str(value)])
        if not isinstance(cond, dict):
            if str(cond) not in values:
                return False
            continue
        for op, wanted in cond.items():
            allowed = {str(v) for v in wanted} if isinstance(wanted, list | tuple | set) else {str(wanted)}
            if op == "$in" and not allowed.intersection(values):
                return False
            if op in ("$ne", "$nin") and allowed.intersection(values):
                return False
            if op not in ("$in", "$ne", "$nin"):
                raise UnsupportedFilter(f"{name}.{op}")
    return True


def _guarded(call: Any) -> Any:
    """Run a tantivy call; its Rust panics (a BaseException) become IndexUnavailable, never a crash."""
    try:
        return call()
    except (ValueError, RuntimeError) as exc:
        raise IndexUnavailable(str(exc)) from exc
    except BaseException as exc:
        if type(exc).__name__ == "PanicException":
            raise IndexUnavailable(str(exc)) from exc
        raise


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw", fast=True)
    sb.add_unsigned_field("rev", stored=True, indexed=False)
    # the 96-bit ObjectId as two u64 halves: the keyset cursor of a newest-first page is a range on them
    sb.add_unsigned_field("hi", indexed=True, fast=True)
    sb.add_unsigned_field("lo", indexed=True, fast=True)
    sb.add_text_field("title", tokenizer_name="whitespace", index_option="freq")
    sb.add_text_field("body", stored=True, tokenizer_name="whitespace", index_option="freq")
    sb.add_text_field("han", stored=True, tokenizer_name="whitespace", index_option="position")
    sb.add_bytes_field("view", stored=True, indexed=False)  # the item's public JSON
    for name in FILTER_FIELDS:
        sb.add_text_field(name, tokenizer_name="raw", index_option="basic")
    return sb.build()


def _halves(item_id: str) -> tuple[int, int]:
    if not _OBJECT_ID.fullmatch(item_id):
        return 0, 0
    return int(item_id[:16], 16), int(item_id[16:], 16)


def to_document(doc: Mapping[str, Any]) -> tantivy.Document:
    """The index entry of a stored need or offer."""
    hi, lo = _halves(doc["_id"])
    out = tantivy.Document()
    out.add_text("id", doc["_id"])
    out.add_unsigned("rev", int(doc.get("revision", 0)))
    out.add_unsigned("hi", hi)
    out.add_unsigned("lo", lo)
    text = item_text(doc)
    for name, value in (("title", " ".join(index_tokens(str(doc.get("title", ""))))),
                        ("body", " ".join(index_tokens(text))), ("han", " ".join(han_chars(text)))):
        if value:
            out.add_text(name, value)
    for name in FILTER_FIELDS:
        value = doc.get(name)
        for v in value if isinstance(value, list) else ([] if value is None else [value]):
            out.add_text(name, str(v))
    out.add_bytes("view", public_json(doc))
    return out


class Entry:
    """An item as the index holds it: its public JSON and its analysed words. The words are split out
    of the stored text only when asked (which words matched): a filter-only page never needs them."""

    __slots__ = ("_body", "_han", "_words", "id", "view")

    def __init__(self, item_id: str, view: dict[str, Any], words: ItemWords | None = None, body: str = "", han: str = "") -> None:
        self.id, self.view, self._words, self._body, self._han = item_id, view, words, body, han

    @property
    def words(self) -> ItemWords:
        if self._words is None:
            self._words = ItemWords(frozenset(self._body.split()), self._han.replace(" ", ""))
        return self._words

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Entry:
        """The entry of a stored document (a staged write): what the index would hold for it."""
        return cls(doc["_id"], json.loads(public_json(dict(doc))), ItemWords.of(doc))

    @classmethod
    def stored(cls, fields: Mapping[str, list[Any]]) -> Entry:
        body, han = fields.get("body") or [""], fields.get("han") or [""]
        return cls(fields["id"][0], json.loads(fields["view"][0]), body=body[0], han=han[0])


@dataclass(frozen=True)
class WordHit:
    id: str
    score: float
    entry: Entry | None = None


class WordIndex:
    """One tantivy index (both kinds) on disk, with its meta file. Writes are serialised by the caller
    (`IndexSync` is the only writer); searches may run at any time and see the last commit."""

    def __init__(self, path: Path | None) -> None:
        self.schema = _schema()
        self._owner: int | None = None  # the open, locked owner file of `path` (see _claim)
        self.path = path if path is not None and self._claim(path) else None
        self.persistent = self.path is not None
        self.rebuilt = False
        self._lock = threading.Lock()
        self.index, self.meta = self._open()
        self.writer = self._writer()
        self.ready = False  # set by IndexSync once the index agrees with the store
        self._staged: dict[str, tuple[float, dict[str, Any]]] = {}
        self._stage_lock = threading.Lock()

    # ---- staged writes: known here, not yet committed to the index --------------------------------
    def stage(self, doc: Mapping[str, Any]) -> None:
        """A write this process made (or the stream delivered) that lists must show before the index
        commits it; a later revision wins, and the commit of the same or a later one unstages it."""
        doc = as_stored(dict(doc))
        with self._stage_lock:
            held = self._staged.get(doc["_id"])
            if held is None or int(held[1].get("revision", 0)) <= int(doc.get("revision", 0)):
                self._staged[doc["_id"]] = (time.monotonic(), doc)

    def staged(self, kind: str) -> dict[str, dict[str, Any]]:
        """The staged documents of `kind` (by id); stale ones are dropped (the sync catches up). Take
        them *before* searching: a commit unstages only after the searcher sees it, so every write is
        in one or the other."""
        cutoff = time.monotonic() - STAGE_TTL_S
        with self._stage_lock:
            for item_id in [i for i, (at, _) in self._staged.items() if at < cutoff]:
                del self._staged[item_id]
            return {i: d for i, (_, d) in self._staged.items() if d.get("kind") == kind}

    def _unstage(self, doc: Mapping[str, Any]) -> None:
        with self._stage_lock:
            held = self._staged.get(doc["_id"])
            if held is not None and (doc.get("status") == DELETED or int(held[1].get("revision", 0)) <= int(doc.get("revision", 0))):
                del self._staged[doc["_id"]]

    # ---- opening -------------------------------------------------------------------------------
    def _claim(self, path: Path) -> bool:
        """Whether this process may own the directory: an exclusive lock on `<path>.owner` beside it,
        held until `close` (or the process's death: the kernel drops it, kill -9 included). Two catalog
        processes given one directory (one store, one host) would otherwise wipe and rebuild it under
        each other: the loser of a start-up race failed to open an index the winner had just removed.
        A second process keeps its own index in memory, rebuilt from the store like a missing one."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path.parent / f"{path.name}.owner", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            log.warning("word index at %s cannot be claimed; this process keeps its own in memory", path, exc_info=True)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            log.warning("word index at %s is owned by another process; this one keeps its own in memory", path)
            return False
        self._owner = fd
        return True

    def _open(self) -> tuple[tantivy.Index, dict[str, Any]]:
        if self.path is None:
            return tantivy.Index(self.schema), {}
        meta = self._read_meta()
        if meta.get("format") != FORMAT_VERSION or not tantivy.Index.exists(str(self.path)):
            self._wipe()
            meta = {}
        try:
            return tantivy.Index(self.schema, path=str(self.path), reuse=True), meta
        except Exception:
            log.warning("word index at %s cannot be opened; rebuilding it", self.path, exc_info=True)
            self._wipe()
        try:
            return tantivy.Index(self.schema, path=str(self.path), reuse=True), {}
        except Exception:  # a read model: the store still answers, so start without the disk
            log.error("word index at %s cannot be created; this process keeps its own in memory", self.path, exc_info=True)
            self._release()
            return tantivy.Index(self.schema), {}

    def _release(self) -> None:
        """Give up the directory and keep the index in memory from here on."""
        self.path, self.persistent = None, False
        self._drop_owner()

    def _drop_owner(self) -> None:
        if self._owner is not None:
            with contextlib.suppress(OSError):
                os.close(self._owner)  # closing the descriptor releases the lock
            self._owner = None

    def _writer(self) -> tantivy.IndexWriter:
        try:
            return self.index.writer(heap_size=50_000_000, num_threads=1)
        except Exception:  # noqa: BLE001 - a writer outside ssmatch holds tantivy's own lock on the directory
            log.warning("word index at %s is locked by another writer; this one keeps its own in memory", self.path)
            self._release()
            self.meta = {}
            self.index = tantivy.Index(self.schema)
            return self.index.writer(heap_size=50_000_000, num_threads=1)

    def _wipe(self) -> None:
        assert self.path is not None
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        self.rebuilt = True

    def _read_meta(self) -> dict[str, Any]:
        assert self.path is not None
        try:
            return dict(json.loads((self.path / META_FILE).read_text()))
        except (OSError, ValueError):
            return {}

    @property
    def watermark(self) -> datetime | None:
        """The latest `updated_at` this index holds: a restart catches up from there."""
        raw = self.meta.get("watermark")
        return datetime.fromisoformat(raw) if raw else None

    # ---- writing (one writer: IndexSync) -------------------------------------------------------------
    def apply(self, docs: Iterable[Mapping[str, Any]], watermark: datetime | None) -> int:
        """Replace these items' entries and commit; the meta file is written after the commit, so a
        crash in between only makes the next start re-read a little more."""
        docs = list(docs)
        with self._lock:
            try:
                for doc in docs:
                    self.writer.delete_documents_by_term("id", doc["_id"])
                    if doc.get("status") != DELETED:  # removed from the store by an operator
                        self.writer.add_document(to_document(doc))
                self.writer.commit()
            except Exception:
                self.writer.rollback()
                raise
            self.index.reload()
            for doc in docs:
                self._unstage(doc)
            if watermark is not None and (self.watermark is None or watermark > self.watermark):
                self.meta["watermark"] = watermark.isoformat()
            self.meta["format"] = FORMAT_VERSION
            self._write_meta()
        return len(docs)

    def clear(self) -> None:
        with self._lock:
            self.writer.delete_all_documents()
            self.writer.commit()
            self.index.reload()
            self.meta = {"format": FORMAT_VERSION}
            self._write_meta()
            self.rebuilt = True

    def _write_meta(self) -> None:
        if self.path is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".meta-")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.meta, fh)
        os.replace(tmp, self.path / META_FILE)

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(Exception):  # closing; the next start checks the index anyway
                self.writer.wait_merging_threads()
            self._drop_owner()

    # ---- reading ---------------------------------------------------------------------------------
    def count(self, kind: str) -> int:
        searcher = self.index.searcher()
        return int(_guarded(lambda: searcher.search(self._term("kind", kind), 1, count=True).count))

    def search(
        self,
        kind: str,
        terms: QueryTerms | None,
        filters: Mapping[str, Any],
        *,
        mode: Literal["all", "any"],
        limit: int,
        before_id: str | None = None,
        with_entries: bool = False,
    ) -> list[WordHit]:
        """Items of `kind` passing `filters` that contain every term (`all`, newest first, from
        `before_id` down) or any term (`any`, best BM25 first, title words count double). Without
        terms (a filter-only list), every item passing the filters, newest first. `with_entries`
        (newest first only): each hit carries its entry, read in the same pass."""
        if terms is not None and terms.empty:
            return []
        clauses = [] if terms is None else [self._term_clause(w) for w in terms.words] + [self._han_clause(r) for r in terms.han_runs]
        if terms is None:
            text = tantivy.Query.all_query()
        elif mode == "all":
            text = tantivy.Query.boolean_query([(tantivy.Occur.Must, c) for c in clauses])
        else:
            text = tantivy.Query.boolean_query([(tantivy.Occur.Should, c) for c in clauses])
        sieve = [(tantivy.Occur.Must, self._term("kind", kind)), *self.filter_clauses(filters)]
        if before_id is not None:
            sieve.append((tantivy.Occur.Must, self._before(before_id)))
        # the filters only admit: scored, a term of a multi-valued field (sectors, SDGs) would add its
        # own BM25 share, larger for an item with fewer codes, and reorder the words' ranking
        query = tantivy.Query.boolean_query([(tantivy.Occur.Must, text), (tantivy.Occur.Must, tantivy.Query.const_score_query(tantivy.Query.boolean_query(sieve), 0.0))])
        return list(_guarded(lambda: self._run(query, mode, limit, with_entries)))

    def _run(self, query: tantivy.Query, mode: str, limit: int, with_entries: bool = False) -> list[WordHit]:
        searcher = self.index.searcher()
        if mode == "all":  # newest first: ObjectIds sort by creation time
            ranked = self._newest(searcher, query, limit)
            if ranked is None:  # an id that is not an ObjectId: ordered by the ids' text
                result = searcher.search(query, limit, count=False, order_by_field="id", order=tantivy.Order.Desc)
                ranked = [(str(key), addr) for key, addr in result.hits]
            return [WordHit(item_id, 0.0, Entry.stored(searcher.doc(addr).to_dict()) if with_entries else None) for item_id, addr in ranked]
        result = searcher.search(query, limit, count=False)
        addrs = [addr for _, addr in result.hits]
        ids = [self._id_of(searcher, addr, hi, lo) for addr, hi, lo in
               zip(addrs, searcher.fast_field_values("hi", addrs), searcher.fast_field_values("lo", addrs), strict=True)]
        hits = [WordHit(item_id, round(float(score), 4)) for (score, _), item_id in zip(result.hits, ids, strict=True)]
        # equal scores in a stable order (newest first), whatever the segments' layout: a rebuilt index answers alike
        return sorted(hits, key=lambda h: (h.score, h.id), reverse=True)

    def _newest(self, searcher: tantivy.Searcher, query: tantivy.Query, limit: int) -> list[tuple[str, tantivy.DocAddress]] | None:
        """The `limit` hits with the greatest ids, greatest first, ordered on the ids' two u64 halves
        (None when a hit's id is not an ObjectId). Ordering on the id's text read every matching
        document's string (~2.4 ms for 850 of 100,000 items, measured), on a u64 ~0.2 ms: the top
        `limit + NEWEST_SLACK` by the high half, ranked by both halves. Hits sharing the lowest high
        half fetched (one process's ids in one second do) may continue past the fetch: only when that
        group reaches into the first `limit` is it read whole, by the low half (a second search, ~0.8 ms
        at 100,000 items, that a page of a catalogue written at the usual pace never needs)."""
        fetch = limit + NEWEST_SLACK
        top = [addr for _, addr in searcher.search(query, fetch, count=False, order_by_field="hi", order=tantivy.Order.Desc).hits]
        if not top:
            return []
        his, los = searcher.fast_field_values("hi", top), searcher.fast_field_values("lo", top)
        keyed = list(zip(his, los, top, strict=True))
        if any(not hi and not lo for hi, lo, _ in keyed):
            return None
        if len(keyed) == fetch:  # more hits may share the lowest high half fetched
            edge = min(hi for hi, _, _ in keyed)
            above = [k for k in keyed if k[0] > edge]
            if len(above) >= limit:
                keyed = above
            else:  # the edge group reaches into the page: rank that whole group by the low half
                tied = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, "hi", edge))])
                group = [addr for _, addr in searcher.search(tied, limit - len(above), count=False, order_by_field="lo", order=tantivy.Order.Desc).hits]
                keyed = above + list(zip([edge] * len(group), searcher.fast_field_values("lo", group), group, strict=True))
        keyed.sort(key=lambda k: (k[0], k[1]), reverse=True)
        return [(f"{hi:016x}{lo:08x}", addr) for hi, lo, addr in keyed[:limit]]

    @staticmethod
    def _id_of(searcher: tantivy.Searcher, addr: tantivy.DocAddress, hi: int | None, lo: int | None) -> str:
        """An ObjectId from its two fast-field halves (no stored-document read: the entry holds the
        item's whole JSON); any other id from the stored document."""
        if hi or lo:
            return f"{hi:016x}{lo:08x}"
        return str(searcher.doc(addr)["id"][0])

    def entries(self, kind: str, ids: list[str], filters: Mapping[str, Any]) -> dict[str, Entry]:
        """The entries of those of `ids` that pass `filters` (the same clauses as a search: what the
        caller may not see is never returned), by id."""
        if not ids:
            return {}
        parts = [(tantivy.Occur.Must, tantivy.Query.term_set_query(self.schema, "id", list(ids))),
                 (tantivy.Occur.Must, self._term("kind", kind)), *self.filter_clauses(filters)]

        def run() -> dict[str, Entry]:
            searcher = self.index.searcher()
            result = searcher.search(tantivy.Query.boolean_query(parts), len(ids), count=False)
            found = (Entry.stored(searcher.doc(addr).to_dict()) for _, addr in result.hits)
            return {e.id: e for e in found}

        return dict(_guarded(run))

    def _term(self, field: str, value: str) -> tantivy.Query:
        return tantivy.Query.term_query(self.schema, field, value)

    def _any_of(self, field: str, values: list[str]) -> tantivy.Query:
        if not values:
            return tantivy.Query.empty_query()
        if len(values) == 1:
            return self._term(field, values[0])
        if len(values) <= SMALL_SET:
            return tantivy.Query.boolean_query([(tantivy.Occur.Should, self._term(field, v)) for v in values])
        return tantivy.Query.term_set_query(self.schema, field, values)

    def _term_clause(self, word: str) -> tantivy.Query:
        title = tantivy.Query.boost_query(self._term("title", word), TITLE_BOOST)
        return tantivy.Query.boolean_query([(tantivy.Occur.Should, title), (tantivy.Occur.Should, self._term("body", word))])

    def _han_clause(self, run: str) -> tantivy.Query:
        chars = list(run)
        return self._term("han", chars[0]) if len(chars) == 1 else tantivy.Query.phrase_query(self.schema, "han", chars)

    def _before(self, item_id: str) -> tantivy.Query:
        """`_id < item_id` on the two halves: hi < h, or hi = h and lo < l."""
        hi, lo = _halves(item_id)
        below = tantivy.Query.range_query(self.schema, "hi", tantivy.FieldType.Unsigned, 0, hi, include_lower=True, include_upper=False)
        same = tantivy.Query.boolean_query([
            (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, "hi", hi)),
            (tantivy.Occur.Must, tantivy.Query.range_query(self.schema, "lo", tantivy.FieldType.Unsigned, 0, lo, include_lower=True, include_upper=False)),
        ])
        return tantivy.Query.boolean_query([(tantivy.Occur.Should, below), (tantivy.Occur.Should, same)])

    def filter_clauses(self, filters: Mapping[str, Any]) -> list[tuple[tantivy.Occur, tantivy.Query]]:
        """The store's list query as index clauses: equality, `$in`, `$ne`, `$nin` on indexed fields."""
        out: list[tuple[tantivy.Occur, tantivy.Query]] = []
        for name, cond in filters.items():
            if name not in FILTER_FIELDS:
                raise UnsupportedFilter(name)
            if not isinstance(cond, dict):
                out.append((tantivy.Occur.Must, self._term(name, str(cond))))
                continue
            for op, value in cond.items():
                values = [str(v) for v in value] if isinstance(value, list | tuple | set) else [str(value)]
                if op == "$in":
                    out.append((tantivy.Occur.Must, self._any_of(name, values)))
                elif op in ("$ne", "$nin"):
                    if len(values) <= SMALL_SET:
                        out += [(tantivy.Occur.MustNot, self._term(name, v)) for v in values]
                    else:
                        out.append((tantivy.Occur.MustNot, tantivy.Query.term_set_query(self.schema, name, values)))
                else:
                    raise UnsupportedFilter(f"{name}.{op}")
        return out
