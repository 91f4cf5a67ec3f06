"""Markdown and plain-text articles, into the same Book model as HTML.

Markdown is rendered to HTML by markdown-it-py (CommonMark plus tables and
strikethrough), then walked by the HTML ingestor's own block walker, so headings,
lists, quotes, images' alt text, tables and code fences behave exactly as in a web
page: headings become chapters, code fences become "Code example omitted.". The title
is the front matter's ``title:``, else the first H1, else the file's stem.

Plain text: paragraphs are separated by blank lines (the lines of a paragraph are
joined); chapters start at lines such as "CHAPTER I", "Chapter 3.", "Part Two" or
"# Title"; the title is the first line when it is short and stands alone, else the stem.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from ..errors import CorruptDocument, NoTextError
from ..model import Block, Book
from ._decode import decode_bytes, looks_binary, read_capped
from .base import IngestOptions, Ingestor
from .html import (
    Heading,
    article_blocks,
    chapterize,
    parse_page,
    sanitize_markup,
)

MAX_TEXT_BYTES = 64 * 1024 * 1024
_FRONT_MATTER = re.compile(
    r"\A(?:---|\+\+\+)[ \t]*\n(.*?)\n(?:---|\+\+\+|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL
)
_KEY_VALUE = re.compile(r"^([A-Za-z_][\w-]*)\s*[:=]\s*(.*?)\s*$")
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    "fifteen|sixteen|seventeen|eighteen|nineteen|twenty|first|second|third|fourth|fifth|"
    "sixth|seventh|eighth|ninth|tenth|last"
)
_CHAPTER_LINE = re.compile(
    rf"^\s*(?:(?:chapter|part|book|section)\s+(?:[0-9]{{1,4}}|[ivxlcdm]{{1,8}}|{_NUMBER_WORDS})\b"
    rf"[.:]?(?:\s*[-—:.]?\s+.{{0,80}})?"
    rf"|(?:prologue|epilogue|introduction|preface|foreword|afterword)[.:]?)\s*$",
    re.IGNORECASE,
)
_ATX_LINE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _read_text(path: Path) -> str:
    raw = read_capped(path, MAX_TEXT_BYTES, "an article")
    if looks_binary(raw):
        raise CorruptDocument(path, "not a text document (binary data)")
    return decode_bytes(raw, markup=False).text


class MarkdownIngestor(Ingestor):
    name: ClassVar[str] = "markdown"
    extensions: ClassVar[tuple[str, ...]] = (".md", ".markdown")

    def read(self, path: Path, options: IngestOptions) -> Book:
        return markdown_to_book(_read_text(path), options, source=str(path), stem=path.stem)


class TextIngestor(Ingestor):
    name: ClassVar[str] = "text"
    extensions: ClassVar[tuple[str, ...]] = (".txt",)

    def read(self, path: Path, options: IngestOptions) -> Book:
        return text_to_book(_read_text(path), source=str(path), stem=path.stem)


# --- Markdown --------------------------------------------------------------------------


def front_matter(text: str) -> tuple[dict[str, str], str]:
    """Simple ``key: value`` front matter (YAML or TOML style) and the text after it."""
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, text
    values: dict[str, str] = {}
    for line in m.group(1).splitlines():
        kv = _KEY_VALUE.match(line)
        if kv and kv.group(2):
            values[kv.group(1).lower()] = kv.group(2).strip().strip("\"'")
    return values, text[m.end() :]


def markdown_to_book(
    text: str,
    options: IngestOptions | None = None,
    *,
    source: str = "<markdown>",
    stem: str = "article",
) -> Book:
    from markdown_it import MarkdownIt

    options = options or IngestOptions()
    meta, body = front_matter(text)
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    html = "<html><body>" + md.render(body) + "</body></html>"
    html, warnings = sanitize_markup(html)
    html, page = parse_page(html, source, warnings)
    body_el = page.find(".//body")
    items = article_blocks(body_el if body_el is not None else page, options)
    title = meta.get("title")
    if not title:
        first_h1 = next((i for i in items if isinstance(i, Heading) and i.level == 1), None)
        if first_h1 is not None:
            title = first_h1.text
            items.remove(first_h1)
    title = title or stem
    if not any(isinstance(i, Block) for i in items):
        raise NoTextError(source, "no text to speak")
    authors_value = meta.get("author") or meta.get("authors") or ""
    authors = tuple(
        a.strip() for a in re.split(r"\s*[,;&]\s*|\s+and\s+", authors_value) if a.strip()
    )
    return Book(
        title=title,
        chapters=chapterize(items, title),
        authors=authors,
        language=meta.get("lang") or meta.get("language"),
        source=source,
        date=meta.get("date"),
        description=meta.get("description") or meta.get("summary"),
        warnings=tuple(warnings),
    )


# --- plain text ------------------------------------------------------------------------


def text_to_book(text: str, *, source: str = "<text>", stem: str = "text") -> Book:
    paragraphs = [
        " ".join(line.strip() for line in para.splitlines() if line.strip())
        for para in re.split(r"\n[ \t]*\n", text)
    ]
    raw_paras = [p for p in re.split(r"\n[ \t]*\n", text) if p.strip()]
    paragraphs = [p for p in paragraphs if p]
    if not paragraphs:
        raise NoTextError(source, "no text to speak")
    title = stem
    first_is_title = (
        len(paragraphs) > 1
        and "\n" not in raw_paras[0].strip()
        and len(paragraphs[0]) <= 100
        and not paragraphs[0].endswith((".", ",", ";"))
        and not _heading(paragraphs[0])
    )
    if first_is_title:
        title = paragraphs.pop(0)
        raw_paras.pop(0)
    items: list[Heading | Block] = []
    i = 0
    while i < len(paragraphs):
        para, raw = paragraphs[i], raw_paras[i]
        heading = _heading(para) if "\n" not in raw.strip() else None
        if heading is not None:
            level, heading_text = heading
            # "CHAPTER I." followed by a short title line: one chapter title.
            if (
                level == 1
                and _CHAPTER_LINE.match(para)
                and i + 1 < len(paragraphs)
                and "\n" not in raw_paras[i + 1].strip()
                and len(paragraphs[i + 1]) <= 80
                and not paragraphs[i + 1].endswith((".", ",", ";", "!", "?"))
                and _heading(paragraphs[i + 1]) is None
            ):
                heading_text = f"{heading_text.rstrip('.:')}: {paragraphs[i + 1]}"
                i += 1
            items.append(Heading(level, heading_text))
        else:
            items.append(Block("paragraph", para))
        i += 1
    if not any(isinstance(x, Block) for x in items):
        raise NoTextError(source, "no text to speak")
    return Book(title=title, chapters=chapterize(items, title), source=source)


def _heading(line: str) -> tuple[int, str] | None:
    m = _ATX_LINE.match(line)
    if m:
        return len(m.group(1)), m.group(2)
    if _CHAPTER_LINE.match(line) and len(line) <= 100:
        return 1, line.strip()
    return None


__all__ = ["MarkdownIngestor", "TextIngestor", "front_matter", "markdown_to_book", "text_to_book"]
