"""What a conversion reports: progress callbacks while it runs (s3transfer's
subscribers), and the result at the end. The CLI renders them (``progress.py``); a
library caller subclasses ``Hooks`` and overrides what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .model import Book


@dataclass(frozen=True)
class ConvertResult:
    source: str
    outputs: tuple[Path, ...]
    title: str = ""
    chapters: int = 0
    duration: float = 0.0
    chapter_times: tuple[tuple[str, float, float], ...] = ()
    chunks_total: int = 0
    chunks_cached: int = 0  # found finished in the cache
    chunks_resumed: int = 0  # tasks of an earlier run followed up (polled or recovered)
    chunks_submitted: int = 0  # start calls made by this run
    billed_chars: int = 0  # billable characters of the start calls made by this run
    skipped: bool = False  # up to date: nothing was done
    warnings: tuple[str, ...] = ()
    elapsed: float = 0.0


class Hooks:
    """Progress callbacks (s3transfer's subscribers). Called from the scheduler thread
    of the book, one at a time. Override what you need."""

    def on_book(self, book: Book) -> None: ...

    def on_warning(self, message: str) -> None: ...

    def on_queued(self, total_chunks: int, total_chars: int, cached_chunks: int) -> None: ...

    def on_progress(
        self, done_chunks: int, total_chunks: int, done_chars: int, total_chars: int
    ) -> None: ...

    def on_chapter_done(self, index: int, title: str) -> None: ...

    def on_stitch(self, fraction: float) -> None:
        """How far the stitch has come, 0..1."""

    def on_done(self, result: ConvertResult) -> None: ...
