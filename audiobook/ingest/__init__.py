"""Ingestors, listed explicitly; the first whose ``suitable()`` matches wins."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError, UnsupportedFormat
from ..model import Book
from ._language import with_language
from .base import IngestOptions, Ingestor
from .epub import EpubIngestor
from .html import HtmlIngestor
from .pdf import PdfIngestor
from .text import MarkdownIngestor, TextIngestor

# Order matters only where two could take a file: the first match wins.
INGESTORS: list[type[Ingestor]] = [
    EpubIngestor,
    PdfIngestor,
    HtmlIngestor,
    MarkdownIngestor,
    TextIngestor,
]


def ingestor_for(path: str | os.PathLike[str]) -> Ingestor:
    for cls in INGESTORS:
        if cls.suitable(path):
            return cls()
    raise UnsupportedFormat(path, "not a format audiobook reads (EPUB, PDF, HTML, Markdown, text)")


def read_book(path: str | os.PathLike[str], options: IngestOptions | None = None) -> Book:
    """Read any supported document into a Book. Raises InputError subclasses. A book
    that declares no language gets the one its text is in, where that is clear."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file")
    if p.is_dir():
        raise InputError(p, "is a folder, not a document")
    return with_language(ingestor_for(p).read(p, options or IngestOptions()))


__all__ = ["INGESTORS", "IngestOptions", "Ingestor", "ingestor_for", "read_book"]
