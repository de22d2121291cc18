"""Languages of the workspace: en (the message ids), fr and es from Babel message catalogs.

The .po files are the source; they are compiled to in-memory .mo at start-up so a clean clone needs no
build step. The page language is the user's choice (`?lang=` or the cookie it sets), else the best
`Accept-Language` match, else English.
"""

from __future__ import annotations

import gettext
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES: tuple[str, ...] = ("en", "fr", "es")
LOCALES_DIR = Path(__file__).resolve().parent / "locales"
LANG_COOKIE = "ssm_lang"


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """Compiled catalog for `lang` (English is the identity)."""
    po = LOCALES_DIR / lang / "LC_MESSAGES" / "messages.po"
    if lang == "en" or not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(fp=buf)


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags of an Accept-Language header, best first (q-values honoured)."""
    out: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and q > 0:
            out.append((-q, i, tag.strip().lower()))
    return [t for _, _, t in sorted(out)]


def negotiate(choice: str | None, accept_language: str | None) -> str:
    """The user's explicit choice if supported, else the first supported Accept-Language, else en."""
    if choice in LANGUAGES:
        return choice
    for tag in parse_accept_language(accept_language):
        base = tag.split("-")[0]
        if base in LANGUAGES:
            return base
    return "en"


def language_name(lang: str) -> str:
    """The language's name in itself (Français, Español)."""
    return Locale.parse(lang).get_display_name(lang).capitalize()


def gettext_for(lang: str) -> Any:
    return translations(lang).gettext


def ngettext_for(lang: str) -> Any:
    return translations(lang).ngettext
