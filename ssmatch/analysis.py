"""Language-aware text analysis shared by the matcher's scorer and the catalog's word index.

Case and accent folding (Latin letters only), Arabic letter normalisation and article stripping, stop
words for en/fr/es/pt (short lists for ru/ar), and word segmentation for Chinese (jieba) so that
移民统计数据库 becomes 移民 / 统计 / 数据库 instead of one opaque token. One module, so that a word
the scorer counts as shared is a word the search index finds.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

_STOP = {
    "en": "a an and are as at be been by can for from has have in into is it its of on or our over such that the their them these they this to was we were which will with within who whose you your also more most other than then there would should could may",
    "fr": "a au aux avec ce ces cette dans de des du elle en et est il ils la le les leur leurs mais nos notre nous ou par pas pour qui que quoi sa se ses son sur un une vos votre vous été être sont ont afin ainsi entre plus comme dont tout tous toutes",
    "es": "a al con como de del el ella en entre es esta este estos las los lo más mediante nos nuestra nuestro nuestros o para por que se sin sobre su sus también un una uno y ya son ha han hemos cada",
    "pt": "a ao aos as com como da das de do dos e em entre é foi mais na nas no nos nossa nosso nossos o os ou para pela pelo por que se sem sua suas seu seus também um uma são tem",
    "ru": "и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только ее мне было вот от меня еще нет о из ему для при это эти этой этого наш наши также или",
    "ar": "في من على إلى عن مع هذا هذه التي الذي و أو ثم كما لدى بين كل قد",
}
STOP_WORDS: frozenset[str] = frozenset(w for words in _STOP.values() for w in words.split())
_WORD = re.compile(r"\w+", re.UNICODE)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_jieba_lock = threading.Lock()
_jieba_ready = False


_ARABIC_DIACRITICS = re.compile(r"[\u064B-\u065F\u0670\u0640]")  # tashkeel, dagger alif, tatweel
_ARABIC_LETTERS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي"})
_ARABIC_PREFIX = re.compile(r"^(?:وال|بال|كال|فال|لل|ال)(?=\w{3,})")


def _is_latin(ch: str) -> bool:
    return ch.isascii() or "LATIN" in unicodedata.name(ch, "")


def fold(text: str) -> str:
    """Case-fold; strip accents from Latin letters only (é → e, but Cyrillic й and ё stay letters);
    normalise Arabic letter variants and drop its diacritics. CJK is kept as is."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        if not ch.isascii() and ch.isalpha() and _is_latin(ch):
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            out.append(base or ch)
        else:
            out.append(ch)
    folded = "".join(out).casefold()
    return _ARABIC_DIACRITICS.sub("", folded).translate(_ARABIC_LETTERS)


def _arabic_stem(word: str) -> str:
    """Drop the article and its common proclitics (وال, بال, ...) so التدريب ~ تدريب ~ والتدريب."""
    return _ARABIC_PREFIX.sub("", word)


def _jieba() -> Any:
    global _jieba_ready
    import jieba

    if not _jieba_ready:
        with _jieba_lock:
            if not _jieba_ready:
                jieba.setLogLevel(logging.WARNING)
                jieba.dt.tmp_dir = os.environ.get("SSMATCH_JIEBA_CACHE_DIR", tempfile.gettempdir())
                jieba.initialize()
                _jieba_ready = True
    return jieba


def _words(text: str) -> Iterator[tuple[str, bool]]:
    """(token, cut by jieba) for every folded word that is not a stop word; Arabic articles dropped."""
    for word in _WORD.findall(fold(text)):
        if _HAN.search(word):
            yield from ((t, True) for t in _jieba().lcut(word) if t.strip() and t not in STOP_WORDS)
        elif word not in STOP_WORDS:
            yield (_arabic_stem(word) if "\u0600" <= word[0] <= "\u06ff" else word), False


def tokens(text: str) -> list[str]:
    """Folded word tokens without stop words, digits or one-letter words; Chinese runs cut with jieba."""
    return [t for t, han in _words(text) if han or (len(t) > 1 and not t.isdigit())]


def index_tokens(text: str) -> list[str]:
    """Tokens for the search index: as `tokens`, but digits and one-letter words are kept (a query for
    "numero 3" must find "numéro 3")."""
    return [t for t, _ in _words(text)]


def han_chars(text: str) -> list[str]:
    """The Chinese characters of `text`, in order: indexed one per position, so that any run of them
    (a substring jieba would not cut out, e.g. 数据 inside 数据库) is found by a phrase query."""
    return _HAN.findall(text)


@lru_cache(maxsize=4096)  # repeats are a scoring call's or an evaluation's: a big cache holds every text twice
def normalize(text: str) -> str:
    return " ".join(tokens(text))


def init() -> None:
    """Build jieba's dictionary cache at start-up instead of on the first Chinese text."""
    _jieba()
