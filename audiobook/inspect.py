"""A book's chapters as they will be sent, without synthesizing anything. Pure.

    info = inspect_book(book, render)
    info.chapters[0].chars, info.chapters[0].billable_chars, info.total_billable_chars
    info.as_dict()                       # the ``audiobook inspect --json`` contract
    text = spoken_text(book, render)     # what will be spoken, to proofread it

``chars`` counts every character of a chapter's rendered SSML (tags included);
``billable_chars`` what Polly bills for it (text outside tags, entities decoded), the
same count ``estimate`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import RenderOptions
from .model import Book
from .ssml import DEFAULT_OPTIONS, billable_chars, render_chapter, total_chars
from .ssml import spoken_text as ssml_spoken_text

__all__ = ["BookInfo", "ChapterInfo", "inspect_book", "spoken_text"]


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

    @property
    def total_billable_chars(self) -> int:
        return sum(c.billable_chars for c in self.chapters)

    def as_dict(self) -> dict[str, Any]:
        """The ``inspect --json`` contract: {"title", "authors", "language", "chapters":
        [{"title", "level", "chars", "billable_chars"}], "total_billable_chars"}."""
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
