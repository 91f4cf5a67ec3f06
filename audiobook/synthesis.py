"""The synthesis stage: a book's chunks into audio in the content-addressed cache.

    chunks = plan_chunks(book, engine, render)   # rendered once, chunked once
    syn = synthesize(book, opts, store=store, engine=engine, chunks=chunks)
    syn.pieces   # per chapter, the cached audio files in order

For each chunk: a whole cached file is reused (a damaged one is synthesized again),
else ``scheduler.Scheduler`` follows a task an earlier run started, recovers one started
but never recorded, or submits it; each finished piece is fetched into the cache.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import engines
from .casting import Casting
from .chunk import chunk_cast, chunk_rendered
from .config import RenderOptions
from .engines.base import Engine
from .errors import ConfigError, EngineError, UnsupportedSsml
from .hooks import Hooks, doing
from .ingest import read_book
from .keys import content_key
from .model import Book, Chunk
from .options import ConvertOptions
from .scheduler import Job, Limiters, Scheduler, make_limiters
from .ssml import billable_chars, render_book, template_line, total_chars
from .state import LeaseOwner
from .statebase import StateBackend

MARKS_EXT = "marks"


def plan_chunks(
    book: Book,
    engine: Engine,
    render: RenderOptions,
    hooks: Hooks | None = None,
    casting: Casting | None = None,
) -> list[Chunk]:
    """The book rendered once and chunked once for ``engine``: the engine first takes
    the book's own pronunciation (what it cannot honour goes to ``hooks`` as
    warnings), then hears the size of the whole job (Polly picks sync or async by it,
    and its limits follow). With ``casting``, each chapter is cut into the pieces of
    its voices first (``--voice-map``, ``--dialogue-voice``) and the engine checks
    those voices."""
    for note in engine.pronounce(book):
        if hooks is not None:
            hooks.on_warning(note)
    rendered = render_book(book, render)
    engine.plan(sum(billable_chars(s) for s in rendered), sum(total_chars(s) for s in rendered))
    if casting is None or (not casting.chapter_voices and not casting.dialogue_voice):
        return chunk_rendered(rendered, engine.limits)
    chunks = chunk_cast([casting.voices(i, s) for i, s in enumerate(rendered)], engine.limits)
    engine.use_voices(sorted({c.voice for c in chunks if c.voice}))
    return chunks


@dataclass(frozen=True)
class RunPlan:
    """What a run would send (``plan_run``): of the book's ``pieces``, ``cached`` are in
    the cache; the rest take ``tasks`` start calls (speech-mark tasks included) for
    ``billable_chars`` characters, ``cost_usd`` at list prices (``price_kind``)."""

    pieces: int
    cached: int
    tasks: int
    billable_chars: int
    cost_usd: float
    price_kind: str


def _price(chars: int, engine: Engine) -> tuple[int, int, float]:
    """(tasks, billable characters, list price) of pieces of ``chars`` billable
    characters each on ``engine``: speech marks are tasks billed like the audio."""
    from .config import POLLY_PRICES_PER_MILLION

    caps = engine.capabilities
    per = 2 if caps.marks else 1
    billable = chars * per
    return per, billable, billable * POLLY_PRICES_PER_MILLION.get(caps.price_kind, 0.0) / 1e6


def plan_run(book: Book, opts: ConvertOptions, *, store: StateBackend, engine: Engine) -> RunPlan:
    """What ``synthesize`` would send for ``book``, sending nothing."""
    chunks = plan_chunks(book, engine, opts.render)
    keys = [content_key(c, engine, opts.render.template) for c in chunks]
    exts = (
        (engine.audio_format.ext, MARKS_EXT)
        if engine.capabilities.marks
        else (engine.audio_format.ext,)
    )
    rows = store.chunks(list(dict.fromkeys(keys)))
    pending: dict[str, int] = {}
    for c, k in zip(chunks, keys):
        if k not in pending and not store.reusable(k, exts, rows.get(k), [])[0]:
            pending[k] = billable_chars(c.ssml)
    per, billable, cost = _price(sum(pending.values()), engine)
    return RunPlan(
        pieces=len(chunks),
        cached=len(chunks) - len(pending),
        tasks=per * len(pending),
        billable_chars=billable,
        cost_usd=cost,
        price_kind=engine.capabilities.price_kind,
    )


def check_cost(jobs: list[Job], engine: Engine, max_cost: float | None) -> None:
    """ConfigError when the pieces to synthesize cost more than ``max_cost`` USD."""
    if max_cost is None:
        return
    per, billable, cost = _price(sum(j.chars for j in jobs), engine)
    if cost > max_cost:
        raise ConfigError(
            f"the {len(jobs) * per} task(s) to start would cost ${cost:,.2f} at list prices "
            f"({billable:,} billable characters, {engine.capabilities.price_kind}), "
            f"more than --max-cost {max_cost:g}"
        )


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
    store: StateBackend,
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
        chunks = plan_chunks(book, engine, opts.render, hooks, opts.casting(book))
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
        limiters=limiters or make_limiters(opts, store),
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
        check_cost(jobs, engine, opts.config.max_cost_usd)
        doing(hooks, f"waiting for the {engine.name} engine's checks")
        # Bad bucket, voice, SSML: one line before any money is spent.
        try:
            engine.preflight(j.chunk.ssml for j in jobs)
        except UnsupportedSsml as e:
            where = template_line(opts.render.template, e.needle)
            if where is None:
                raise
            raise UnsupportedSsml(f"{where}: {e}", needle=e.needle) from e
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


def _cached_or_fail(store: StateBackend, key: str, ext: str) -> Path:
    p = store.cached(key, ext)
    if p is None:  # removed by another process's gc between synthesis and now
        raise EngineError(f"{store.cache_path(key, ext)}: cached audio vanished; run again")
    return p


def preview(path: str | os.PathLike[str], opts: ConvertOptions, *, store: StateBackend) -> RunPlan:
    """What ``convert`` would submit for the document at ``path`` (pieces, characters,
    cost at list prices), submitting nothing and writing no output."""
    book = read_book(path, opts.ingest)
    engine = engines.make_engine(
        opts.engine,
        opts.engine_options,
        voice=opts.voice,
        language=book.language,
        workers=opts.config.workers,
    )
    with engine:
        return plan_run(book, opts, store=store, engine=engine)
