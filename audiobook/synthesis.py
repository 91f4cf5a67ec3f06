"""The synthesis stage: a book's chunks into audio in the content-addressed cache.

    chunks = plan_chunks(book, engine, render)   # rendered once, chunked once
    syn = synthesize(book, opts, store=store, engine=engine, chunks=chunks)
    syn.pieces   # per chapter, the cached audio files in order

For each chunk: a whole cached file is reused (a damaged one is synthesized again),
else ``scheduler.Scheduler`` follows a task an earlier run started, recovers one started
but never recorded, or submits it; each finished piece is fetched into the cache.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .chunk import chunk_rendered
from .config import RenderOptions
from .engines.base import Engine
from .errors import EngineError
from .hooks import Hooks, doing
from .keys import content_key
from .model import Book, Chunk
from .options import ConvertOptions
from .scheduler import Job, Limiters, Scheduler, make_limiters
from .ssml import billable_chars, render_book, total_chars
from .state import LeaseOwner, StateStore

MARKS_EXT = "marks"


def plan_chunks(book: Book, engine: Engine, render: RenderOptions) -> list[Chunk]:
    """The book rendered once and chunked once for ``engine``: the engine first hears
    the size of the whole job (Polly picks sync or async by it, and its limits follow)."""
    rendered = render_book(book, render)
    engine.plan(sum(billable_chars(s) for s in rendered), sum(total_chars(s) for s in rendered))
    return chunk_rendered(rendered, engine.limits)


@dataclass(frozen=True)
class Synthesis:
    """What ``synthesize`` did: every chunk's audio is in the cache."""

    chunks: tuple[Chunk, ...]
    keys: tuple[str, ...]
    pieces: tuple[tuple[Path, ...], ...]  # per chapter, the cached audio files in order
    marks: tuple[tuple[Path, ...], ...] | None  # per chapter, speech-mark files (or None)
    cached: int  # chunks found in the cache (or repeated within the book)
    submitted: int  # start calls made
    resumed: int  # tasks of an earlier run followed up
    billed_chars: int  # billable characters of the start calls made


def synthesize(
    book: Book,
    opts: ConvertOptions | None = None,
    hooks: Hooks | None = None,
    *,
    store: StateStore,
    engine: Engine,
    limiters: Limiters | None = None,
    book_id: int | None = None,
    chunks: list[Chunk] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    owner: LeaseOwner | None = None,
) -> Synthesis:
    """The synthesis stage alone: chunk ``book`` for ``engine`` and bring every chunk's
    audio into the cache (reused, resumed, recovered, submitted, or followed while
    another run makes it). ``book_id`` (a ``books`` row) gets the chunk list recorded
    first, so ``gc`` keeps it. ``chunks``: the book already planned for this engine
    (``plan_chunks``), else it is planned here. ``owner``: the run's claims (else the
    scheduler makes its own). The clock, sleep and random source of the scheduler are
    injectable for tests."""
    opts = opts or ConvertOptions()
    hooks = hooks or Hooks()
    if chunks is None:
        chunks = plan_chunks(book, engine, opts.render)
    keys = [content_key(c, engine, opts.render.template) for c in chunks]
    if book_id is not None:
        store.set_book_chunks(book_id, [(k, c.chapter_idx) for k, c in zip(keys, chunks)])
    ext = engine.audio_format.ext
    with_marks = engine.capabilities.marks
    jobs: list[Job] = []
    cached = 0
    seen: set[str] = set()
    chars = [billable_chars(c.ssml) for c in chunks]
    rows = store.chunks(list(dict.fromkeys(keys)))
    found: list[tuple[str, str, int, str]] = []  # cached files with no digest yet
    for i, (c, k) in enumerate(zip(chunks, keys)):
        if k in seen:
            continue
        seen.add(k)
        exts = (ext, MARKS_EXT) if with_marks else (ext,)
        reusable, damaged = store.reusable(k, exts, rows.get(k), found)
        for path, problem in damaged:
            hooks.on_warning(
                f"{path}: cached piece {c.seq + 1} of chapter {c.chapter_idx + 1} is "
                f"damaged ({problem}); synthesizing it again"
            )
        if reusable:
            cached += 1
            continue
        # Paid-for marks of audio cached without them: only the marks are bought.
        marks_only = (
            with_marks
            and engine.capabilities.marks_alone
            and store.reusable(k, (ext,), rows.get(k), found)[0]
        )
        jobs.append(
            Job(
                i,
                c,
                k,
                chars[i],
                store.cache_path(k, ext),
                store.cache_path(k, MARKS_EXT) if with_marks else None,
                marks_only=marks_only,
            )
        )
    store.record_digests(found, engine.name)
    total_chars = sum(chars)
    pending_chars = sum(j.chars for j in jobs)
    # Progress counts every chunk; cached ones (and repeats) are done from the start.
    hooks.on_queued(len(chunks), total_chars, len(chunks) - len(jobs))
    sched = Scheduler(
        engine=engine,
        store=store,
        jobs=jobs,
        opts=opts,
        limiters=limiters or make_limiters(opts),
        hooks=hooks,
        book=book,
        price_kind=engine.capabilities.price_kind,
        total_chunks=len(chunks),
        total_chars=total_chars,
        cached_chunks=len(chunks) - len(jobs),
        cached_chars=total_chars - pending_chars,
        clock=clock,
        sleep=sleep,
        rng=rng,
        owner=owner,
    )
    for idx, ch in enumerate(book.chapters):
        if sched.chapter_left[idx] == 0:
            hooks.on_chapter_done(idx, ch.title)
    if jobs:
        doing(hooks, f"waiting for the {engine.name} engine's checks")
        engine.preflight()  # bad bucket, voice, SSML: one line before any money is spent
        doing(hooks, sched.waiting_for)
        sched.run()
    pieces: list[list[Path]] = [[] for _ in book.chapters]
    marks: list[list[Path]] = [[] for _ in book.chapters]
    for c, k in zip(chunks, keys):
        pieces[c.chapter_idx].append(_cached_or_fail(store, k, ext))
        if with_marks:
            marks[c.chapter_idx].append(_cached_or_fail(store, k, MARKS_EXT))
    return Synthesis(
        tuple(chunks),
        tuple(keys),
        tuple(tuple(p) for p in pieces),
        tuple(tuple(m) for m in marks) if with_marks else None,
        cached + sched.cached,
        sched.submitted,
        sched.resumed,
        sched.billed,
    )


def _cached_or_fail(store: StateStore, key: str, ext: str) -> Path:
    p = store.cached(key, ext)
    if p is None:  # removed by another process's gc between synthesis and now
        raise EngineError(f"{store.cache_path(key, ext)}: cached audio vanished; run again")
    return p
