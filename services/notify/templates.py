"""Notification texts: one TOML catalogue per language in ``templates/``, rendered with ``string.Template``.

Why this design:

* Translators edit plain TOML (``templates/<lang>.toml``); adding a language is adding a file.
  A phrase missing from a catalogue falls back to English, and an unknown language (or one we do
  not have yet) falls back to English as a whole, so a notification is never lost to a gap in a
  translation.
* ``string.Template`` substitutes in a single pass and has no logic, loops or attribute access, so
  a title such as ``"$need_title {{7*7}}"`` is printed verbatim, never evaluated. What little logic
  there is (plurals, optional lines, the digest list, explaining a score in words) is Python here.
* In HTML every value from the context is escaped; only blocks this module builds itself from
  trusted catalogue snippets are inserted raw. Links are kept only if they are http(s).

Context keys per kind (titles may be missing or None: they render as "(untitled)"):

* ``match_proposed``: ``score`` (0–1, required), ``need_title``, ``offer_title``, ``explanation``
  (the matcher's object, or already-worded text), ``url``.
* ``match_approved``: ``role`` ("need" for the country office, "offer" for the provider; required),
  ``counterpart_organization`` and ``counterpart_contact_name`` (required),
  ``counterpart_contact_email``, ``need_title``, ``offer_title``, ``explanation``, ``note``, ``url``.
* ``match_rejected``: ``need_title``, ``offer_title``, ``note``, ``url``.
* ``match_lifecycle``: ``event`` ("declined" | "agreement_reached" | "completed"; required),
  ``need_title``, ``offer_title``, ``counterpart_organization``, ``note``, ``url``.
* ``expiry_reminder``: ``item_kind`` ("need" | "offer"; required), ``days`` (int >= 0; required),
  ``item_title``, ``expires_on`` (date, datetime or ISO string), ``url``.
* ``digest``: ``matches`` (non-empty list of dicts with the ``match_proposed`` keys; required), ``url``.

Every kind also takes ``recipient_name`` (for the greeting).
"""

from __future__ import annotations

import html as html_lib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache, lru_cache
from pathlib import Path
from string import Template
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date

KINDS: tuple[str, ...] = (
    "match_proposed",
    "match_approved",
    "match_rejected",
    "match_lifecycle",
    "expiry_reminder",
    "digest",
)
LIFECYCLE_EVENTS: tuple[str, ...] = ("declined", "agreement_reached", "completed")
DEFAULT_LANGUAGE = "en"
TEMPLATE_DIR = Path(__file__).with_name("templates")
_LANG_FILE = re.compile(r"^[a-z]{2,3}$")
_MAX_EXPLAINED_COMPONENTS = 4


@dataclass(frozen=True)
class Rendered:
    """A rendered notification; ``language`` is the catalogue actually used (after fallback)."""

    subject: str
    text: str
    html: str
    language: str = DEFAULT_LANGUAGE


class TemplateContextError(ValueError):
    """The context lacks something the kind needs, or has an invalid value for it."""


# --------------------------------------------------------------------------------------------------
# Catalogues


@lru_cache(maxsize=1)
def available_languages() -> tuple[str, ...]:
    """Languages with a catalogue file, sorted."""
    return tuple(sorted(p.stem for p in TEMPLATE_DIR.glob("*.toml") if _LANG_FILE.match(p.stem)))


@cache
def _catalogue(language: str) -> dict[str, Any]:
    with (TEMPLATE_DIR / f"{language}.toml").open("rb") as fh:
        return tomllib.load(fh)


@lru_cache(maxsize=1)
def _layout() -> Template:
    return Template((TEMPLATE_DIR / "layout.html").read_text(encoding="utf-8"))


def resolve_language(lang: str | None) -> str:
    """Best catalogue for a preference such as "fr", "fr-CA" or "es_AR"; English otherwise."""
    if lang:
        primary = re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0]
        if primary in available_languages():
            return primary
    return DEFAULT_LANGUAGE


class _Phrases:
    """Look-ups in one language's catalogue with a per-phrase fallback to English."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._tables = [_catalogue(language)] if language == DEFAULT_LANGUAGE else [
            _catalogue(language),
            _catalogue(DEFAULT_LANGUAGE),
        ]

    def get(self, section: str, key: str) -> str | None:
        for table in self._tables:
            value = table.get(section, {}).get(key)
            if isinstance(value, str):
                return value
        return None

    def __call__(self, section: str, key: str) -> str:
        value = self.get(section, key)
        if value is None:
            raise KeyError(f"no phrase {section}.{key} in {self.language} or {DEFAULT_LANGUAGE}")
        return value

    def fill(self, section: str, key: str, **values: str) -> str:
        """A phrase with its placeholders filled (values inserted as given)."""
        return Template(self(section, key)).substitute(values)

    def plural(self, section: str, stem: str, n: int) -> str:
        """``<stem>_<CLDR category>`` by the language's rule (Babel), with ``$n`` filled; a catalogue
        that lacks the category (e.g. Arabic's ``few`` before a translator adds it) falls back to
        ``<stem>_other``."""
        key = f"{stem}_{_plural_category(self.language, n)}"
        if self.get(section, key) is None:
            key = f"{stem}_other"
        return self.fill(section, key, n=str(n))

    def percent(self, fraction: float) -> str:
        return self.fill("common", "percent", n=str(round(fraction * 100)))


def _plural_category(language: str, n: int) -> str:
    """CLDR cardinal category of ``n`` in ``language`` (French: 0 and 1 are "one"; Arabic has six)."""
    try:
        return str(Locale.parse(language).plural_form(n))
    except (ValueError, UnknownLocaleError):
        return "one" if n == 1 else "other"


# --------------------------------------------------------------------------------------------------
# Values: every key exists twice, as plain text and as HTML-safe text


class _Values:
    def __init__(self, phrases: _Phrases) -> None:
        self.p = phrases
        self.text: dict[str, str] = {}
        self.html: dict[str, str] = {}

    def put(self, key: str, value: str) -> None:
        """An untrusted value: escaped for HTML."""
        self.text[key] = value
        self.html[key] = html_lib.escape(value, quote=True)

    def put_block(self, key: str, text: str, html: str) -> None:
        """A block built here from catalogue snippets whose values were escaped already."""
        self.text[key] = text
        self.html[key] = html

    def put_phrase(self, key: str, section: str, phrase: str, **values: str) -> None:
        """A catalogue phrase with untrusted ``values`` filled in (escaped on the HTML side)."""
        template = Template(self.p(section, phrase))
        self.text[key] = template.substitute(values)
        self.html[key] = template.substitute({k: html_lib.escape(v, quote=True) for k, v in values.items()})


def _str(value: Any) -> str:
    return "" if value is None else " ".join(str(value).split())


def _require(context: Mapping[str, Any], key: str, kind: str) -> Any:
    value = context.get(key)
    if value is None or value == "":
        raise TemplateContextError(f"{kind}: context needs {key!r}")
    return value


def _title(v: _Values, context: Mapping[str, Any], key: str) -> str:
    return _str(context.get(key)) or v.p("common", "untitled")


def _score(v: _Values, raw: Any, kind: str) -> str:
    try:
        score = float(raw)
    except (TypeError, ValueError):
        raise TemplateContextError(f"{kind}: score must be a number, got {raw!r}") from None
    if not 0.0 <= score <= 1.0:
        raise TemplateContextError(f"{kind}: score must be within [0, 1], got {score}")
    return v.p.percent(score)


def _safe_url(raw: Any) -> str | None:
    url = _str(raw)
    return url if re.match(r"^https?://[^\s<>\"']+$", url) else None


def _optional_line(v: _Values, key: str, section: str, phrase: str, raw: Any, name: str) -> None:
    """An optional line (note, contact, ...) that disappears with its label when the value is empty."""
    value = _str(raw)
    if value:
        v.put_phrase(key, section, phrase, **{name: value})
    else:
        v.put_block(key, "", "")


def _link(v: _Values, context: Mapping[str, Any]) -> None:
    url = _safe_url(context.get("url"))
    if url:
        v.put_phrase("link_block", "common", "link", url=url)
        v.html["link_block"] = Template(v.p("common", "link_html")).substitute(url=html_lib.escape(url, quote=True))
    else:
        v.put_block("link_block", "", "")


def explain(explanation: Any, lang: str) -> str:
    """The matcher's explanation in plain words, in ``lang`` (English fallback).

    The matcher sends ``{"components": {name: share}, "reasons": [...]}``; we name the largest
    components with their weight in the total ("shared sectors (60%) and shared wording (40%)").
    The matcher's reasons are English, so they are appended only where the catalogue's
    ``explanation.details`` phrase is not empty (English). Text is passed through; anything else
    gives a neutral sentence rather than an error: the explanation informs, it is not essential.
    """
    return _explain(_Phrases(resolve_language(lang)), explanation)


def _explain(p: _Phrases, explanation: Any) -> str:
    if isinstance(explanation, str) and explanation.strip():
        return _str(explanation)
    if not isinstance(explanation, Mapping):
        return p("explanation", "none")
    components = explanation.get("components")
    shares: dict[str, float] = {}
    if isinstance(components, Mapping):
        for name, share in components.items():
            if isinstance(share, int | float) and not isinstance(share, bool) and share > 0:
                shares[str(name)] = float(share)
    total = sum(shares.values())
    sentences: list[str] = []
    if total > 0:
        top = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))[:_MAX_EXPLAINED_COMPONENTS]
        parts = [
            p.fill("explanation", "part", label=p.get("components", name.lower()) or name.replace("_", " "),
                   percent=p.percent(share / total))
            for name, share in top
        ]
        joined = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} {p('explanation', 'and')} {parts[-1]}"
        sentences.append(p.fill("explanation", "rests_on", parts=joined))
    reasons = explanation.get("reasons")
    if isinstance(reasons, list) and p("explanation", "details"):
        words = [_str(r) for r in reasons if _str(r)]
        if words:
            sentences.append(p.fill("explanation", "details", reasons="; ".join(words)))
    return " ".join(sentences) if sentences else p("explanation", "none")


# --------------------------------------------------------------------------------------------------
# Per-kind preparation


def _prepare_proposed(v: _Values, c: Mapping[str, Any]) -> None:
    v.put("score", _score(v, _require(c, "score", "match_proposed"), "match_proposed"))
    v.put("need_title", _title(v, c, "need_title"))
    v.put("offer_title", _title(v, c, "offer_title"))
    v.put("explanation", _explain(v.p, c.get("explanation")))


def _prepare_approved(v: _Values, c: Mapping[str, Any]) -> None:
    role = _require(c, "role", "match_approved")
    if role not in ("need", "offer"):
        raise TemplateContextError(f"match_approved: role must be 'need' or 'offer', got {role!r}")
    need, offer = _title(v, c, "need_title"), _title(v, c, "offer_title")
    org = _str(_require(c, "counterpart_organization", "match_approved"))
    contact = _str(_require(c, "counterpart_contact_name", "match_approved"))
    v.put("need_title", need)
    v.put("offer_title", offer)
    v.put("counterpart_organization", org)
    v.put("counterpart_contact_name", contact)
    v.put_phrase("intro", "match_approved", f"intro_{role}", need_title=need, offer_title=offer, organization=org)
    _optional_line(v, "contact_email_block", "common", "email_line", c.get("counterpart_contact_email"), "email")
    v.put("explanation", _explain(v.p, c.get("explanation")))
    _optional_line(v, "note_block", "common", "note", c.get("note"), "note")


def _prepare_rejected(v: _Values, c: Mapping[str, Any]) -> None:
    v.put("need_title", _title(v, c, "need_title"))
    v.put("offer_title", _title(v, c, "offer_title"))
    _optional_line(v, "note_block", "common", "note", c.get("note"), "note")


def _prepare_lifecycle(v: _Values, c: Mapping[str, Any]) -> None:
    event = _require(c, "event", "match_lifecycle")
    if event not in LIFECYCLE_EVENTS:
        raise TemplateContextError(f"match_lifecycle: event must be one of {LIFECYCLE_EVENTS}, got {event!r}")
    need, offer = _title(v, c, "need_title"), _title(v, c, "offer_title")
    v.put("need_title", need)
    v.put("offer_title", offer)
    v.put("event_label", v.p("match_lifecycle", f"label_{event}"))
    v.put_phrase("event_sentence", "match_lifecycle", f"sentence_{event}", need_title=need, offer_title=offer)
    _optional_line(v, "counterpart_block", "common", "partner_line", c.get("counterpart_organization"), "organization")
    _optional_line(v, "note_block", "common", "note", c.get("note"), "note")


def _format_date(raw: Any, language: str = DEFAULT_LANGUAGE) -> str:
    """The day in the reader's words (Babel's long format, e.g. "30 juin 2026") with the ISO date
    after it, so a reader and a mail filter both understand it."""
    day: date | None = raw.date() if isinstance(raw, datetime) else raw if isinstance(raw, date) else None
    if day is None:
        try:
            day = date.fromisoformat(_str(raw)[:10])
        except ValueError:
            return _str(raw)[:10]
    try:
        words = format_date(day, format="long", locale=language)
    except (ValueError, UnknownLocaleError):
        return day.isoformat()
    return f"{words} ({day.isoformat()})"


def _prepare_expiry(v: _Values, c: Mapping[str, Any]) -> None:
    item_kind = _require(c, "item_kind", "expiry_reminder")
    if item_kind not in ("need", "offer"):
        raise TemplateContextError(f"expiry_reminder: item_kind must be 'need' or 'offer', got {item_kind!r}")
    raw_days = c.get("days")
    if raw_days is None:
        raise TemplateContextError("expiry_reminder: context needs 'days'")
    if isinstance(raw_days, bool) or not isinstance(raw_days, int) or raw_days < 0:
        raise TemplateContextError(f"expiry_reminder: days must be an integer >= 0, got {raw_days!r}")
    v.put("item_label", v.p("expiry_reminder", f"your_{item_kind}"))
    v.put("item_title", _title(v, c, "item_title"))
    when = v.p("expiry_reminder", "today") if raw_days == 0 else v.p.plural("expiry_reminder", "in_days", raw_days)
    v.put("when", when)
    _optional_line(v, "expires_on_block", "expiry_reminder", "expires_on", (_format_date(c.get("expires_on"), v.p.language) if c.get("expires_on") else None), "date")


def _prepare_digest(v: _Values, c: Mapping[str, Any]) -> None:
    matches = _require(c, "matches", "digest")
    if not isinstance(matches, list) or not matches or not all(isinstance(m, Mapping) for m in matches):
        raise TemplateContextError("digest: matches must be a non-empty list of objects")
    v.put("count_text", v.p.plural("digest", "matches", len(matches)))
    text_items: list[str] = []
    html_items: list[str] = []
    for index, match in enumerate(matches, start=1):
        item = _Values(v.p)
        item.put("n", str(index))
        _prepare_proposed(item, match)
        _link(item, match)
        text_items.append(Template(v.p("digest", "item_text")).substitute(item.text).rstrip())
        html_items.append(Template(v.p("digest", "item_html")).substitute(item.html).strip())
    v.put_block("items", "\n\n".join(text_items), "\n".join(html_items))


_PREPARERS: dict[str, Callable[[_Values, Mapping[str, Any]], None]] = {
    "match_proposed": _prepare_proposed,
    "match_approved": _prepare_approved,
    "match_rejected": _prepare_rejected,
    "match_lifecycle": _prepare_lifecycle,
    "expiry_reminder": _prepare_expiry,
    "digest": _prepare_digest,
}


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def _tidy_html(html: str) -> str:
    """Drop the paragraphs of optional lines that came out empty, and blank lines."""
    html = re.sub(r"<p>\s*</p>", "", html.strip())
    return re.sub(r"\n\s*\n+", "\n", html)


def render(kind: str, lang: str | None, context: Mapping[str, Any]) -> Rendered:
    """Subject, plain text and HTML of a ``kind`` notification in ``lang`` (English fallback).

    Raises ``ValueError`` for an unknown kind and ``TemplateContextError`` when ``context`` lacks a
    required key (see the module docstring).
    """
    if kind not in _PREPARERS:
        raise ValueError(f"unknown notification kind {kind!r}; known: {', '.join(KINDS)}")
    language = resolve_language(lang)
    p = _Phrases(language)
    v = _Values(p)
    name = _str(context.get("recipient_name"))
    if name:
        v.put_phrase("greeting", "common", "greeting_named", name=name)
    else:
        v.put("greeting", p("common", "greeting"))
    v.put("brand", p("common", "brand"))
    _link(v, context)
    _PREPARERS[kind](v, context)

    subject = " ".join(Template(p(kind, "subject")).substitute(v.text).split())
    footer = p("common", "footer")
    text = _tidy_text(Template(p(kind, "text")).substitute(v.text)) + f"\n-- \n{footer}\n"
    body = _tidy_html(Template(p(kind, "html")).substitute(v.html))
    html = _layout().substitute(
        lang=language,
        title=html_lib.escape(subject, quote=True),
        body=body,
        footer=html_lib.escape(footer, quote=True),
    )
    return Rendered(subject=subject, text=text, html=html, language=language)
