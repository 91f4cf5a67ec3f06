"""What every ingestor is: a class that says which files it takes and reads them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from ..errors import ConfigError
from ..model import Book

TableMode = Literal["rows", "summary", "skip", "read"]


@dataclass(frozen=True)
class IngestOptions:
    password: str | None = None  # PDF user password
    split_by: str | None = None  # PDF: "outline" | "headings" | "pages:N" | "none"
    # Leave out what is not the work: Project Gutenberg's header and licence, contents
    # pages, copyright, colophon, index (``Book.left_out`` says what and why). False
    # keeps everything (``--keep-matter``).
    skip_matter: bool = True
    footnotes: str = "end"  # "end" (read at the end of the chapter) | "drop"
    captions: bool = True  # HTML: read figure captions and alt text
    # HTML/Markdown data tables: "rows" (each row a sentence, its cells named by the
    # header; a long table summarised, then its first rows) | "summary" (a spoken
    # description) | "skip" | "read" (cell text as it comes)
    tables: TableMode = "rows"

    def __post_init__(self) -> None:
        if self.footnotes not in ("end", "drop"):
            raise ConfigError(f"footnotes: {self.footnotes!r} is neither 'end' nor 'drop'")


class Ingestor:
    """Subclasses set ``extensions`` (and may sniff content in ``suitable``)."""

    name: ClassVar[str] = "base"
    extensions: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def suitable(cls, path: str | os.PathLike[str]) -> bool:
        return Path(path).suffix.lower() in cls.extensions

    def read(self, path: Path, options: IngestOptions) -> Book:
        raise NotImplementedError
