"""Small text helpers shared by the services."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Case- and accent-fold for search: 'Sécurité' → 'securite'; CJK, Arabic, Cyrillic kept as is."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped).casefold()


def guess_script_language(text: str) -> str | None:
    """Language implied by the script alone (zh, ar, ru), else None: enough to label untagged text."""
    counts = {"zh": 0, "ar": 0, "ru": 0, "latin": 0}
    for ch in text[:2000]:
        o = ord(ch)
        if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF:
            counts["zh"] += 1
        elif 0x0600 <= o <= 0x06FF or 0x0750 <= o <= 0x077F:
            counts["ar"] += 1
        elif 0x0400 <= o <= 0x04FF:
            counts["ru"] += 1
        elif ch.isalpha():
            counts["latin"] += 1
    best = max(counts, key=lambda k: counts[k])
    return None if best == "latin" or counts[best] == 0 else best
