"""Rendering of the pipeline's progress hooks with rich, for the CLI.

``RichHooks`` draws one bar per book (pieces done, chapters done, time left) on stderr
and prints each ingestion warning as one line. ``LineHooks`` prints nothing but
warnings, for batch runs and pipes. Both print what a quiet run waits for
(``Hooks.on_wait``) as a line ``audiobook: waiting for ...``.
"""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from .hooks import ConvertResult, Hooks
from .model import Book


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """A count and its noun: "1 chapter", "0 chapters", "1,204 pieces" (``nouns`` where
    the plural is not the noun plus "s")."""
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"


def human_duration(seconds: float) -> str:
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LineHooks(Hooks):
    """Warnings only, one line each, prefixed with the book's name."""

    def __init__(self, console: Console, label: str = "") -> None:
        self.console = console
        self.label = label

    def on_warning(self, message: str) -> None:
        prefix = f"{self.label}: " if self.label else ""
        self.console.print(
            f"audiobook: warning: {prefix}{message}", markup=False, highlight=False, soft_wrap=True
        )

    def on_wait(self, message: str) -> None:
        """What a quiet run waits for, one line (above the bar, if there is one)."""
        self.console.print(f"audiobook: {message}", markup=False, highlight=False, soft_wrap=True)


class RichHooks(LineHooks):
    """A progress bar: pieces done of all, chapters done, time left."""

    def __init__(self, console: Console, label: str = "") -> None:
        super().__init__(console, label)
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.chapters = 0
        self.chapters_done = 0
        self.book: Book | None = None
        self._lock = threading.Lock()

    def on_book(self, book: Book) -> None:
        self.book = book  # kept for the lint line after the run
        self.chapters = len(book.chapters)
        self.label = self.label or book.title

    def on_queued(self, total_chunks: int, total_chars: int, cached_chunks: int) -> None:
        if not self.console.is_terminal:
            return
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("pieces  {task.fields[chapters]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            self.label[:40] or "synthesizing",
            total=total_chunks,
            completed=cached_chunks,
            chapters=self._chapters_text(),
        )

    def _chapters_text(self) -> str:
        return f"chapters {self.chapters_done}/{self.chapters}"

    def on_progress(
        self, done_chunks: int, total_chunks: int, done_chars: int, total_chars: int
    ) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=done_chunks, chapters=self._chapters_text())

    def on_chapter_done(self, index: int, title: str) -> None:
        self.chapters_done += 1
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, chapters=self._chapters_text())

    def on_stitch(self, fraction: float) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=f"stitching {fraction:.0%}")

    def on_done(self, result: ConvertResult) -> None:
        self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def summary_line(result: ConvertResult) -> str:
    """One line saying what a conversion did."""
    out = ", ".join(str(p) for p in result.outputs[:1])
    if len(result.outputs) > 1:
        out += f" (+{plural(len(result.outputs) - 1, 'file')})"
    if result.skipped:
        return f"{out}: up to date, nothing to do"
    parts = [
        plural(result.chapters, "chapter"),
        human_duration(result.duration),
        f"{plural(result.chunks_total, 'piece')} ({result.chunks_cached} cached, "
        f"{result.chunks_submitted} synthesized"
        + (f", {result.chunks_resumed} resumed" if result.chunks_resumed else "")
        + ")",
    ]
    if result.billed_chars:
        parts.append(f"{plural(result.billed_chars, 'character')} billed")
    parts.append(f"in {human_duration(result.elapsed)}")
    return f"{out}: " + ", ".join(parts)
