"""Language-aware text normalisation for lexical similarity (see `ssmatch.analysis`, shared with the
catalog's search index so both agree on what a word is)."""

from __future__ import annotations

from ssmatch.analysis import STOP_WORDS, fold, init, normalize, tokens

__all__ = ["STOP_WORDS", "fold", "init", "normalize", "tokens"]
