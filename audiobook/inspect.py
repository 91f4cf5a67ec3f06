"""A book's chapters as they will be sent, without synthesizing anything. Pure.

    info = inspect_book(book, render)
    info.chapters[0].chars, info.chapters[0].billable_chars, info.total_billable_chars
    info.as_dict()                       # the ``audiobook inspect --json`` contract
    text = spoken_text(book, render)     # what will be spoken, to proofread it
    findings = lint_book(book)           # what in it looks wrong (URLs, glyph codes...)

``chars`` counts every character of a chapter's rendered SSML (tags included);
``billable_chars`` what Polly bills for it (text outside tags, entities decoded), the
same count ``estimate`` uses.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .config import RenderOptions
from .model import Book
from .ssml import DEFAULT_OPTIONS, billable_chars, render_chapter, total_chars
from .ssml import spoken_text as ssml_spoken_text

__all__ = [
    "BookInfo",
    "ChapterInfo",
    "Finding",
    "inspect_book",
    "lint_book",
    "lint_summary",
    "spoken_text",
]


@dataclass(frozen=True)
class ChapterInfo:
    title: str
    level: int
    chars: int  # every character of the rendered SSML, tags included
    billable_chars: int  # what Polly bills: text outside tags


@dataclass(frozen=True)
class BookInfo:
    title: str
    authors: tuple[str, ...]
    language: str | None
    chapters: tuple[ChapterInfo, ...]
    left_out: tuple[str, ...] = ()  # what was read but will not be spoken, and why
    language_detected: bool = False  # the document declares none: found from its text

    @property
    def total_billable_chars(self) -> int:
        return sum(c.billable_chars for c in self.chapters)

    def as_dict(self) -> dict[str, Any]:
        """The ``inspect --json`` contract: {"title", "authors", "language", "chapters":
        [{"title", "level", "chars", "billable_chars"}], "total_billable_chars"}.
        ``left_out`` is shown by the table only, the contract stays as it is."""
        return {
            "title": self.title,
            "authors": list(self.authors),
            "language": self.language,
            "chapters": [
                {
                    "title": c.title,
                    "level": c.level,
                    "chars": c.chars,
                    "billable_chars": c.billable_chars,
                }
                for c in self.chapters
            ],
            "total_billable_chars": self.total_billable_chars,
        }


def inspect_book(book: Book, render: RenderOptions = DEFAULT_OPTIONS) -> BookInfo:
    """Every chapter of ``book`` with the characters of its rendered SSML (each chapter
    rendered once, both counts taken from that one rendering)."""
    chapters = []
    for idx, ch in enumerate(book.chapters):
        ssml = render_chapter(book, idx, render)
        chapters.append(
            ChapterInfo(
                title=ch.title,
                level=ch.level,
                chars=total_chars(ssml),
                billable_chars=billable_chars(ssml),
            )
        )
    return BookInfo(
        title=book.title,
        authors=tuple(book.authors),
        language=book.language,
        chapters=tuple(chapters),
        left_out=book.left_out,
        language_detected=book.language_detected,
    )


def pronunciation_notes(book: Book) -> list[str]:
    """What the book's own pronunciation (PLS lexicons, ``ssml:ph``) becomes: Polly
    applies both; espeak-ng, the local engine, reads the words as written."""
    from .engines.base import pronunciation_unhonoured

    notes = pronunciation_unhonoured(book, "local")
    return [
        n.replace("the local engine", "espeak-ng (the local engine; Polly applies it)")
        for n in notes
    ]


def spoken_text(book: Book, render: RenderOptions = DEFAULT_OPTIONS) -> str:
    """The text that will be spoken, chapter by chapter, each opened by ``# Title``
    (``##`` indented by two spaces for level 2, and so on)."""
    parts = []
    for idx, ch in enumerate(book.chapters):
        level = max(1, ch.level)
        head = "  " * (level - 1) + "#" * level + " " + ch.title
        text = ssml_spoken_text(render_chapter(book, idx, render)).strip()
        parts.append(head + "\n\n" + text + "\n")
    return "\n".join(parts)


# --- lint: spoken text that looks wrong --------------------------------------------------

LINT_KINDS = {
    "url": "web address",
    "glyph": "glyph codes",
    "repeated": "short line repeated in a chapter",
    "digits": "long run of digits",
    "script": "text in a script the voice cannot speak",
}
REPEAT_LIMIT = 3  # a short block spoken more often than this in one chapter is flagged
SHORT_LINE = 80
DIGIT_RUN = 9
FOREIGN_LETTERS = 20  # letters of another script in one chapter before it is flagged

_URL = re.compile(
    r"\b(?:https?://|ftp://|www\.)[^\s<>\"]+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|io|html?|php|aspx?)(?:/[^\s<>\"]*)?(?!\w)",
    re.IGNORECASE,
)
_GLYPH = re.compile(r"(?:/(?:g|G|cid|glyph)\d{1,6}|/uni[0-9A-Fa-f]{4,6}){2,}|\(cid:\d{1,6}\)")
_DIGITS = re.compile(r"(?<![\d.,])\d{%d,}(?![\d.,]\d)" % DIGIT_RUN)  # noqa: UP031
# The scripts a voice of a language speaks, by its primary subtag: Latin letters too
# for every voice (names, abbreviations), and the language's own.
_SCRIPTS = {
    "zh": {"CJK", "HIRAGANA", "KATAKANA", "BOPOMOFO"},
    "ja": {"CJK", "HIRAGANA", "KATAKANA"},
    "ko": {"HANGUL", "CJK"},
    "ar": {"ARABIC"},
    "fa": {"ARABIC"},
    "ur": {"ARABIC"},
    "he": {"HEBREW"},
    "yi": {"HEBREW"},
    "el": {"GREEK"},
    "ru": {"CYRILLIC"},
    "uk": {"CYRILLIC"},
    "bg": {"CYRILLIC"},
    "sr": {"CYRILLIC"},
    "mk": {"CYRILLIC"},
    "be": {"CYRILLIC"},
    "kk": {"CYRILLIC"},
    "mn": {"CYRILLIC"},
    "hi": {"DEVANAGARI"},
    "mr": {"DEVANAGARI"},
    "ne": {"DEVANAGARI"},
    "bn": {"BENGALI"},
    "ta": {"TAMIL"},
    "te": {"TELUGU"},
    "th": {"THAI"},
    "ka": {"GEORGIAN"},
    "hy": {"ARMENIAN"},
}


@dataclass(frozen=True)
class Finding:
    """One kind of suspicious text in one chapter: how often, and an example."""

    chapter: int  # 0-based index
    title: str
    kind: str  # a key of LINT_KINDS
    count: int
    example: str

    def __str__(self) -> str:
        times = f" ({self.count} times)" if self.count > 1 else ""
        return (
            f"chapter {self.chapter + 1} ({self.title[:40]}): {LINT_KINDS[self.kind]}"
            f"{times}: {self.example[:70]!r}"
        )


_KNOWN_SCRIPTS = frozenset({"LATIN"}.union(*_SCRIPTS.values()))


def _script(ch: str) -> str:
    """The script of a letter among those the voices know ("" for any other)."""
    words = unicodedata.name(ch, "").replace("-", " ").split()
    if words and words[0] in ("FULLWIDTH", "HALFWIDTH"):
        words = words[1:]
    if words and words[0] == "IDEOGRAPHIC":
        return "CJK"
    return words[0] if words and words[0] in _KNOWN_SCRIPTS else ""


# A short line that reads as a sentence or a speaker's line (dialogue, a refrain, a
# speaker's name in a play or a dictionary) repeats for a reason; furniture (a running
# head, a page number, a slug) reads as none of these.
_SENTENCE_END = re.compile(r"[.!?…:;”’\"»」』)]$|^[“‘\"«「『(]")


def _furniture_like(line: str) -> bool:
    if line == "#":  # a bare page number
        return True
    if not any(c.isalpha() for c in line) or _SENTENCE_END.search(line):
        return False
    return " " in line.strip() or "#" in line  # one word alone: a speaker's label


def lint_book(book: Book) -> list[Finding]:
    """Spoken text that looks wrong, chapter by chapter: web addresses, glyph codes, a
    short line repeated more than ``REPEAT_LIMIT`` times in a chapter (digits ignored),
    runs of ``DIGIT_RUN`` digits or more, and ``FOREIGN_LETTERS`` letters or more of a
    script the voice of the book's language does not speak. Pure."""
    lang = (book.language or "").split("-")[0].lower()
    allowed = {"LATIN"} | _SCRIPTS.get(lang, set())
    findings: list[Finding] = []
    for idx, ch in enumerate(book.chapters):
        blocks = [b for b in (*ch.blocks, *ch.footnotes) if b.kind != "code"]

        def add(kind: str, hits: list[str]) -> None:
            if hits:
                findings.append(Finding(idx, ch.title, kind, len(hits), hits[0]))  # noqa: B023

        add("url", [m.group(0) for b in blocks for m in _URL.finditer(b.text)])
        add("glyph", [m.group(0) for b in blocks for m in _GLYPH.finditer(b.text)])
        add("digits", [m.group(0) for b in blocks for m in _DIGITS.finditer(b.text)])
        shorts = Counter(
            re.sub(r"\d+", "#", b.text.strip())
            for b in blocks
            if len(b.text.strip()) < SHORT_LINE and b.kind != "heading"
        )
        shorts = Counter({k: n for k, n in shorts.items() if _furniture_like(k)})
        repeated = [line for line, n in shorts.most_common() if n > REPEAT_LIMIT]
        if repeated:
            findings.append(Finding(idx, ch.title, "repeated", shorts[repeated[0]], repeated[0]))
        foreign = Counter(
            s
            for b in blocks
            for c in b.text
            if c.isalpha() and (s := _script(c)) not in allowed and s
        )
        if foreign and sum(foreign.values()) >= FOREIGN_LETTERS:
            script = foreign.most_common(1)[0][0]
            example = next(
                w for b in blocks for w in b.text.split() if any(_script(c) == script for c in w)
            )
            findings.append(Finding(idx, ch.title, "script", sum(foreign.values()), example))
    return findings


def lint_summary(findings: list[Finding]) -> str:
    """One line: how many of each kind were found, or that nothing was."""
    if not findings:
        return "lint: nothing looks wrong in the spoken text"
    counts = Counter[str]()
    for f in findings:
        counts[f.kind] += f.count
    parts = [f"{n} × {LINT_KINDS[k]}" for k, n in counts.items()]
    return "lint: " + ", ".join(parts) + " (audiobook inspect --lint lists them)"
