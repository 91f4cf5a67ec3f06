"""Ingestors, listed explicitly; the first whose ``suitable()`` matches wins."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError, UnsupportedFormat
from ..model import Book
from .base import IngestOptions, Ingestor

INGESTORS: list[type[Ingestor]] = []


def _register() -> None:
    # Imported here so that a missing optional module only hides its own format.
    from .epub import EpubIngestor

    INGESTORS.append(EpubIngestor)
    for modname, clsnames in (("pdf", ("PdfIngestor",)), ("html", ("HtmlIngestor",)),
                              ("text", ("MarkdownIngestor", "TextIngestor"))):
        try:
            module = __import__(f"{__name__}.{modname}", fromlist=list(clsnames))
        except ImportError:
            continue
        for clsname in clsnames:
            if hasattr(module, clsname):
                INGESTORS.append(getattr(module, clsname))


def ingestor_for(path: str | os.PathLike[str]) -> Ingestor:
    if not INGESTORS:
        _register()
    for cls in INGESTORS:
        if cls.suitable(path):
            return cls()
    raise UnsupportedFormat(path, "not a format audiobook reads (EPUB, PDF, HTML, Markdown, text)")


def read_book(path: str | os.PathLike[str], options: IngestOptions | None = None) -> Book:
    """Read any supported document into a Book. Raises InputError subclasses."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file")
    if p.is_dir():
        raise InputError(p, "is a folder, not a document")
    return ingestor_for(p).read(p, options or IngestOptions())


__all__ = ["INGESTORS", "IngestOptions", "Ingestor", "ingestor_for", "read_book"]
