"""The language of a document that declares none, from its text.

py3langid (langid.py's maintained fork; its model of 142 languages ships inside the
wheel, 4.5 MB, loaded in half a second) names the language of a sample of the book's
text: three slices spread through it, so that a foreword or a licence does not decide.
Varieties a voice is chosen for by their language (Moroccan and Egyptian Arabic, Ancient
Greek and Hebrew) count for it; "no linguistic content" is no language. A guess below
``MIN_CONFIDENCE`` (normalised probability), or from fewer than ``MIN_LETTERS`` letters,
is no guess: the language stays unknown. A declared language is never replaced.

Measured on the 19 documents of the corpus that declare a language (en, fr, zh, ja, ar,
...), on 200 and on 2,000 characters from a third of the way in: py3langid named all 19
right, as did lingua-language-detector, which takes 96 MB installed and 12 CPU seconds
to load its models against py3langid's half second.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from ..model import Book

MIN_LETTERS = 200
MIN_CONFIDENCE = 0.9
SLICE = 4000  # characters of each of the three slices sampled
# varieties folded into the language whose voices speak them
_FOLD = {"ary": "ar", "arz": "ar", "hbo": "he", "grc": "el", "uzs": "uz", "gug": "gn"}


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def sample(text: str) -> str:
    """Three slices of ``text``: its start, a third and two thirds of the way in."""
    if len(text) <= 3 * SLICE:
        return text
    starts = (0, len(text) // 3, 2 * len(text) // 3)
    return " ".join(text[s : s + SLICE] for s in starts)


def detect_language(text: str) -> str | None:
    """An ISO 639-1 code ("de", "zh") for ``text``, or None when unsure."""
    text = sample(text)
    if sum(c.isalpha() for c in text) < MIN_LETTERS:
        return None
    scores: dict[str, float] = {}
    for label, p in _identifier().rank(text):
        key = _FOLD.get(str(label), str(label))
        scores[key] = scores.get(key, 0.0) + float(p)
    lang, confidence = max(scores.items(), key=lambda kv: kv[1])
    if lang == "zxx" or confidence < MIN_CONFIDENCE:
        return None
    return lang


def with_language(book: Book) -> Book:
    """``book`` with a detected language where it declares none (a declared one wins)."""
    if book.language:
        return book
    text = "\n".join(b.text for ch in book.chapters for b in ch.blocks if b.kind != "code")
    lang = detect_language(text)
    return replace(book, language=lang, language_detected=True) if lang else book
