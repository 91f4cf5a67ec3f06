"""Content keys: what makes two pieces of audio interchangeable, and what makes a book
or a template "the same" as last time. Pure but for reading the files it hashes.

    content_key(chunk, engine, template)  # the cache key of a chunk's audio
    template_identity("default")          # "name:default", or "file:<sha256>" of a path
    file_sha256(path)                     # a source document's identity
    book_sha256(book)                     # a Book's identity as read (a URL's page)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from .engines.base import Engine
from .model import Book, Chunk


def template_identity(template: str) -> str:
    """A template name, or the hash of a user's template file (so editing it counts)."""
    p = Path(template)
    if p.suffix and p.is_file():
        return "file:" + hashlib.sha256(p.read_bytes()).hexdigest()
    return "name:" + template


def content_key(chunk: Chunk, engine: Engine, template: str) -> str:
    """The chunk's cache key: SSML + engine identity (voice, kind, rate) + template +
    the engine's audio format. Equal keys mean interchangeable audio."""
    fmt = engine.audio_format
    parts = (
        "v1",
        chunk.sha256,
        engine.identity(),
        template_identity(template),
        f"{fmt.ext}/{fmt.sample_rate}/{fmt.channels}",
    )
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def book_sha256(book: Book) -> str:
    """The SHA-256 of everything in a Book that its audiobook is made of: the text of
    every chapter, the titles, the metadata that goes into the tags, the cover. What
    was recovered from (``warnings``) is not part of it. A page fetched again (or
    answered 304) that reads into the same Book has the same hash."""
    doc = dataclasses.asdict(dataclasses.replace(book, cover=None, warnings=()))
    if book.cover is not None:
        cover = hashlib.sha256(book.cover.data).hexdigest()
        doc["cover"] = {"media_type": book.cover.media_type, "sha256": cover}
    data = json.dumps(["book-v1", doc], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()
