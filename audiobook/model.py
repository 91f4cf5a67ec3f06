"""The document model every ingestor produces and every later stage consumes.

All of it is frozen: each stage takes these values and returns new ones.

    Book
     ├── metadata: title, authors, language, cover, ...
     └── chapters: Chapter*  (reading order, one per TOC entry at every level)
           ├── title, level (1 = top)
           ├── blocks: Block*        (heading, paragraph, list_item, quote, image_alt, note)
           └── footnotes: Block*     (read at the end of the chapter, or dropped, by option)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Literal

BlockKind = Literal["heading", "paragraph", "list_item", "quote", "image_alt", "note", "code"]
ChapterRole = Literal["front", "body", "back"]


@dataclass(frozen=True)
class Phoneme:
    """The book's own pronunciation of ``text[start:end]`` of a block (EPUB 3
    ``ssml:ph`` / ``ssml:alphabet``): ``ph`` in ``alphabet`` ("ipa", "x-sampa")."""

    start: int
    end: int
    ph: str
    alphabet: str = "ipa"


@dataclass(frozen=True)
class Block:
    """One unit of text in reading order. ``text`` is plain text (never markup);
    ``lang`` the BCP 47 tag its element declares (xml:lang, lang), when it does;
    ``phonemes``: pronunciations of stretches of it, in order, not overlapping."""

    kind: BlockKind
    text: str
    lang: str | None = None
    phonemes: tuple[Phoneme, ...] = ()


@dataclass(frozen=True)
class Lexicon:
    """A pronunciation lexicon the book links (EPUB 3 PLS): ``content`` is the PLS
    document as text, ``language`` its ``xml:lang``, ``source`` where it came from."""

    source: str
    content: str
    language: str = ""
    alphabet: str = ""
    lexemes: int = 0


@dataclass(frozen=True)
class Chapter:
    """A chapter mark in the audiobook.

    ``role`` is "front" for front matter (title page, copyright, imprint, table of
    contents), "back" for back matter (colophon, index, licence), "body" otherwise, so
    that they are left out unless ``--keep-matter`` is given.
    """

    title: str
    level: int = 1
    blocks: tuple[Block, ...] = ()
    footnotes: tuple[Block, ...] = ()
    role: ChapterRole = "body"
    source: str = ""  # where in the document it came from (file#anchor, page range)

    @property
    def text(self) -> str:
        return "\n\n".join(b.text for b in self.blocks)


@dataclass(frozen=True)
class Cover:
    data: bytes
    media_type: str  # image/jpeg, image/png, ...


@dataclass(frozen=True)
class Book:
    title: str
    chapters: tuple[Chapter, ...]
    authors: tuple[str, ...] = ()
    language: str | None = None  # BCP 47 tag as the document declares it ("en-US", "zh")
    cover: Cover | None = None
    source: str = ""  # the path it was read from
    publisher: str | None = None
    date: str | None = None  # ISO 8601 where known
    description: str | None = None
    direction: Literal["ltr", "rtl"] | None = None
    url: str | None = None
    # Damage that was recovered from (missing resource, malformed XHTML, skipped pages):
    # reported to the user, never silent.
    warnings: tuple[str, ...] = field(default=())
    # What was read but will not be spoken, and why ("Project Gutenberg licence: 19,012
    # characters, not the work"): front and back matter left out by default.
    left_out: tuple[str, ...] = field(default=())
    # True when the document declares no language and ``language`` was found from its text
    language_detected: bool = False
    lexicons: tuple[Lexicon, ...] = ()  # pronunciation lexicons the book links

    def with_chapters(self, chapters: tuple[Chapter, ...]) -> Book:
        return replace(self, chapters=chapters)


@dataclass(frozen=True)
class Chunk:
    """One piece of rendered SSML sent to an engine as a single request or task.

    ``sha256`` is the hash of the SSML alone; the state store keys audio by
    ``content_key`` (SSML plus everything else that changes the audio). ``voice``: the
    voice that reads this piece ("" = the engine's own; ``--voice-map``,
    ``--dialogue-voice``).
    """

    chapter_idx: int
    seq: int
    ssml: str
    sha256: str
    voice: str = ""

    @classmethod
    def make(cls, chapter_idx: int, seq: int, ssml: str, voice: str = "") -> Chunk:
        digest = hashlib.sha256(ssml.encode("utf-8")).hexdigest()
        return cls(chapter_idx, seq, ssml, digest, voice)
