"""What a conversion reports: progress callbacks while it runs (s3transfer's
subscribers), and the result at the end. The CLI renders them (``progress.py``); a
library caller subclasses ``Hooks`` and overrides what it needs.

A run that makes no progress for a while says what it waits for: ``Watchdog`` passes
every call on to the caller's hooks and, from a thread of its own, calls
``on_wait(message)`` after ``$AUDIOBOOK_WATCHDOG_S`` seconds (default 30) without
progress, and again as long as it waits::

    with watching(hooks) as hooks:        # a Watchdog (the same one if hooks is one)
        hooks.doing("reading book.epub")  # or a function that tells, when asked
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from .errors import ConfigError
from .model import Book

log = logging.getLogger(__name__)

WATCHDOG_ENV = "AUDIOBOOK_WATCHDOG_S"
WATCHDOG_DEFAULT_S = 30.0


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

    def on_wait(self, message: str) -> None:
        """Nothing has moved for a while; ``message`` says what the run waits for
        ("waiting for 2 polly tasks to finish ..."). Called from the watchdog's thread."""

    def on_done(self, result: ConvertResult) -> None: ...


def watchdog_interval() -> float:
    """Seconds without progress before a run says what it waits for:
    ``$AUDIOBOOK_WATCHDOG_S`` (0 turns it off), else 30."""
    raw = os.environ.get(WATCHDOG_ENV, "").strip()
    if not raw:
        return WATCHDOG_DEFAULT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{WATCHDOG_ENV}={raw!r}: expected a number of seconds (0 = off)")
    return value


class Watchdog(Hooks):
    """Hooks that pass every call on to ``inner`` and watch for progress (pieces done,
    chapters done, the stitch moving on): ``interval`` seconds without any, and a thread
    of its own calls ``inner.on_wait`` with what ``doing`` last said, and again every
    ``interval`` seconds while nothing moves. A context manager: the thread runs inside
    the ``with`` block."""

    def __init__(
        self,
        inner: Hooks,
        interval: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.interval = watchdog_interval() if interval is None else interval
        self.clock = clock
        self.stitched = 0.0  # the stitch's last fraction
        self._what: Callable[[], str] = lambda: "working"
        self._moved = self._said = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def doing(self, what: str | Callable[[], str]) -> None:
        """What the run does now: a phrase, or a function asked when a wait is reported
        ("waiting for ...")."""
        self._what = what if callable(what) else (lambda: what)

    def _moved_on(self) -> None:
        self._moved = self._said = self.clock()

    def __enter__(self) -> Self:
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="audiobook-watchdog", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(max(0.05, min(1.0, self.interval / 4))):
            now = self.clock()
            if now - self._said < self.interval:
                continue
            self._said = now
            try:
                what = self._what()
                self.inner.on_wait(f"{what}; no progress for {now - self._moved:.0f} s")
            except Exception:  # a report that fails must not end the run
                log.debug("watchdog: cannot report", exc_info=True)

    # -- passed on -----------------------------------------------------------------------

    def on_book(self, book: Book) -> None:
        self.inner.on_book(book)

    def on_warning(self, message: str) -> None:
        self.inner.on_warning(message)

    def on_queued(self, total_chunks: int, total_chars: int, cached_chunks: int) -> None:
        self._moved_on()
        self.inner.on_queued(total_chunks, total_chars, cached_chunks)

    def on_progress(
        self, done_chunks: int, total_chunks: int, done_chars: int, total_chars: int
    ) -> None:
        self._moved_on()
        self.inner.on_progress(done_chunks, total_chunks, done_chars, total_chars)

    def on_chapter_done(self, index: int, title: str) -> None:
        self._moved_on()
        self.inner.on_chapter_done(index, title)

    def on_stitch(self, fraction: float) -> None:
        self._moved_on()
        self.stitched = fraction
        self.inner.on_stitch(fraction)

    def on_wait(self, message: str) -> None:
        self.inner.on_wait(message)

    def on_done(self, result: ConvertResult) -> None:
        self.inner.on_done(result)


@contextmanager
def watching(hooks: Hooks) -> Iterator[Watchdog]:
    """``hooks`` watched by a Watchdog for the block (``hooks`` itself if it is one)."""
    if isinstance(hooks, Watchdog):
        yield hooks
        return
    with Watchdog(hooks) as dog:
        yield dog


def doing(hooks: Hooks, what: str | Callable[[], str]) -> None:
    """Tell the watchdog (when ``hooks`` is one) what the run waits for now."""
    if isinstance(hooks, Watchdog):
        hooks.doing(what)
