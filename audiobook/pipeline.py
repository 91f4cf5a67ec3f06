"""The pipeline: a document (or a Book) in, an audiobook out, paying for each chunk once.

    read_book ─> chunk_book ─> for each chunk:  cached? ─ yes ─> reuse
                                                  │ no
                                      submitted before? ─ yes ─> poll (resume)
                                                  │ no
                       started but unrecorded? ─ engine.recover(key, since) ─> poll
                                                  │ nothing found
                                               submit ─> poll ─> fetch into the cache
              ─> stitch the cached pieces, in order, into the output (temp file + replace)

Library entry points:

``convert(path, out, opts, hooks=None) -> ConvertResult``
    Read a document and convert it. A book whose source file, options and output are
    unchanged since its last successful run does nothing (``result.skipped``).

``convert_book(book, out, opts, hooks=None) -> ConvertResult``
    Convert a Book already in memory (the podcast command reads articles itself). Chunks
    are looked up in the same content-addressed cache, so re-running with the same text
    synthesizes nothing; the stitch is redone unless the chunk list, options and output
    are unchanged. ``out`` is the audio file (or, for ``fmt="chapters"``, a folder).
    Example::

        from audiobook.pipeline import ConvertOptions, convert_book
        result = convert_book(book, Path("feed/ep1.m4b"), ConvertOptions(fmt="m4b"))
        result.outputs        # (Path("feed/ep1.m4b"),)
        result.duration       # seconds
        result.chapter_times  # ((title, start_s, end_s), ...)

Both accept keyword-only ``store=`` (a shared ``StateStore``), ``limiters=`` (shared
``Limiters``, so books converted in parallel stay inside one Polly quota) and
``engine=`` (an Engine instance, e.g. ``FakeEngine`` in tests; not closed by us).

Scheduling is event-driven (s3transfer's BoundedExecutor): a slot of
``PipelineConfig.max_inflight`` is taken before each submit and given back in the
done-callback of the chunk's fetch; start calls go through a token bucket, status
calls through another (``poll_tps``), shared by every book of the process; the oldest
outstanding task is polled first; each finished chunk is fetched into the cache at once.
Retryable errors (``errors.RETRYABLE``) are retried with exponential backoff and full
jitter, logged as "Retrying (n/N)", and end in ``RetriesExceeded``.

Progress goes through ``Hooks`` (subclass it; every method is optional).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import hashlib
import heapq
import itertools
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .captions import write_captions
from .config import POLLY_START_TPS, PipelineConfig, RenderOptions
from . import engines
from .engines.base import Engine, TaskRef, TaskState
from .engines.options import EngineOptions, PollyOptions
from .errors import (
    RETRYABLE,
    AudiobookError,
    ConfigError,
    EngineError,
    InputError,
    RetriesExceeded,
    TaskFailed,
    Throttled,
)
from .ingest import IngestOptions, read_book
from .model import Book, Chunk
from .ratelimit import TokenBucket
from .state import StateStore, open_state

log = logging.getLogger(__name__)

FORMATS = ("m4b", "mp3", "chapters")
# A task started at most this long before the recorded intent is still ours (clock skew).
RECOVER_SKEW = 300.0
# How often one outstanding task is asked again: remote engines (rate-limited on top),
# local ones (their poll is a look at a future).
REMOTE_REPOLL = 0.1
LOCAL_REPOLL = 0.01


# --- options and results ----------------------------------------------------------------


@dataclass(frozen=True)
class ConvertOptions:
    """Everything a conversion depends on.

    fmt:            "m4b" | "mp3" | "chapters" (one file per chapter, in a folder)
    engine:         "local" | "polly" (ignored when an Engine instance is passed)
    engine_options: the engine's typed options (``LocalOptions`` / ``PollyOptions``);
                    None = that engine's defaults
    voice:          voice name; None follows the book's language
    render:         SSML rendering (template, pauses, footnotes)
    ingest:         reading (password, split_by, skip_matter, footnotes)
    state_dir:      state folder; None = the user-level default
    reset_state:    move a corrupt state file aside before starting
    config:         limits (in-flight tasks, rates, attempts, backoff)
    force:          convert even when the output is up to date
    synchronous:    run submits and fetches inline, one at a time (deterministic tests)
    """

    fmt: str = "m4b"
    engine: str = "local"
    engine_options: EngineOptions | None = None
    voice: str | None = None
    render: RenderOptions = field(default_factory=RenderOptions)
    ingest: IngestOptions = field(default_factory=IngestOptions)
    state_dir: Path | None = None
    reset_state: bool = False
    config: PipelineConfig = field(default_factory=PipelineConfig)
    force: bool = False
    synchronous: bool = False

    @property
    def skip_matter(self) -> bool:
        return self.ingest.skip_matter

    def fingerprint(self) -> str:
        """Hash of every option that changes the output (not where state lives)."""
        d = {
            "fmt": self.fmt,
            "engine": self.engine,
            "engine_options": _engine_options_identity(self.engine_options),
            "voice": self.voice,
            "render": _jsonable(dataclasses.asdict(self.render)),
            "ingest": _jsonable(dataclasses.asdict(self.ingest)),
            "template": template_identity(self.render.template),
        }
        d["ingest"].pop("password", None)  # never store a secret, even hashed
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _engine_options_identity(options: EngineOptions | None) -> dict[str, Any]:
    """The engine options that change the output (not how long to wait for what)."""
    if options is None:
        return {}
    d = dataclasses.asdict(options)
    d.pop("notification_grace", None)
    d.pop("language", None)  # the book's, already part of the source
    d.pop("workers", None)  # how many processes, not what they say
    return {k: _jsonable(v) for k, v in sorted(d.items()) if v not in (None, (), "")}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in (sorted(v) if isinstance(v, (set, frozenset)) else v)]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


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

    def on_stitch(self, *args: Any) -> None: ...

    def on_done(self, result: ConvertResult) -> None: ...


@dataclass
class Limiters:
    """Rate limiters shared by every book of one process (None = unlimited)."""

    start: TokenBucket | None = None
    poll: TokenBucket | None = None


def make_limiters(opts: ConvertOptions) -> Limiters:
    """Start and status-call buckets for ``opts``' engine: Polly's quotas (start rate per
    engine kind, capped by ``config.tps``; ``config.poll_tps`` for Get/List); the local
    engine has none."""
    cfg = opts.config
    if opts.engine != "polly":
        return Limiters()
    options = opts.engine_options
    kind = options.polly_engine if isinstance(options, PollyOptions) else "standard"
    rate, burst = POLLY_START_TPS.get(kind, (cfg.tps, cfg.burst))
    if cfg.tps > 0:
        rate = min(rate, cfg.tps)
        burst = max(1, min(burst, cfg.burst))
    return Limiters(
        start=TokenBucket(rate, burst) if rate > 0 else None,
        poll=TokenBucket(cfg.poll_tps, max(1, int(cfg.poll_tps))) if cfg.poll_tps > 0 else None,
    )


# --- keys -------------------------------------------------------------------------------


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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_output(path: Path, fmt: str) -> Path:
    """Beside the input: book.epub -> book.m4b / book.mp3 / book/ (chapters)."""
    return path.with_suffix("" if fmt == "chapters" else f".{fmt}")


# --- engines ----------------------------------------------------------------------------


def make_engine(opts: ConvertOptions, book: Book) -> Engine:
    """The engine ``opts`` names, following the book's language when no voice is set."""
    return engines.make_engine(
        opts.engine,
        opts.engine_options,
        voice=opts.voice,
        language=book.language,
        workers=opts.config.workers,
    )


# --- executors --------------------------------------------------------------------------


class InlineExecutor:
    """Runs each call at once in the caller's thread (s3transfer's NonThreadedExecutor):
    a deterministic drop-in for tests."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the future's owner
            fut.set_exception(e)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


# --- the scheduler ----------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    index: int  # position in the book's chunk list
    chunk: Chunk
    key: str
    chars: int
    dest: Path
    marks_dest: Path | None = None  # speech marks beside the audio, when asked for
    attempts: int = 0  # start calls for this chunk in this run
    errors: int = 0  # retryable poll/fetch errors in a row
    ref: TaskRef | None = None
    next_poll: float = 0.0
    submit_errors: int = 0  # retryable start-call errors
    started: int = 0  # order of its task's start among the book's tasks
    resumed: bool = False
    slot: bool = False


class _Abort(Exception):
    pass


class _Scheduler:
    """Drives the chunks of one book to the cache. Runs in the calling thread; submits
    and fetches run on an executor and report back through a queue."""

    def __init__(
        self,
        *,
        engine: Engine,
        store: StateStore,
        jobs: list[_Job],
        opts: ConvertOptions,
        limiters: Limiters,
        hooks: Hooks,
        book: Book,
        price_kind: str,
        total_chunks: int,
        total_chars: int,
        cached_chunks: int = 0,
        cached_chars: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.jobs = jobs
        self.cfg = opts.config
        self.limiters = limiters
        self.hooks = hooks
        self.book = book
        self.price_kind = price_kind
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.sync = opts.synchronous
        self.executor: Any = (
            InlineExecutor()
            if self.sync
            else cf.ThreadPoolExecutor(
                max_workers=max(2, min(self.cfg.max_inflight, 16)), thread_name_prefix="audiobook"
            )
        )
        self.slots = threading.Semaphore(max(1, self.cfg.max_inflight))
        self.events: queue.Queue = queue.Queue()
        self.ready: list[tuple[float, int, _Job]] = []  # heap of (due, seq, job) to submit
        self.polling: list[_Job] = []  # submitted tasks, waiting for their next poll
        self.started = itertools.count()  # order in which tasks were started
        self.poll_turn = 0
        caps = engine.capabilities
        self.batch_status = caps.batch_status
        # An engine told of completions by notifications (Polly with an SNS topic) makes
        # no status call per poll: its polls need no share of the Get/List quota.
        self.poll_limiter = None if caps.notified else limiters.poll
        self.busy = 0  # submits and fetches on the executor
        self.seq = itertools.count()
        self.repoll = REMOTE_REPOLL if caps.remote else LOCAL_REPOLL
        self.keeps_tasks = caps.keeps_tasks
        self.total_chunks = total_chunks
        self.total_chars = total_chars
        self.done_chunks = cached_chunks
        self.done_chars = cached_chars
        self.submitted = 0
        self.billed = 0
        self.resumed = 0
        self.chapter_left = collections.Counter(j.chunk.chapter_idx for j in jobs)
        self.blocked = False  # the next submit waits for an in-flight slot

    # -- helpers -------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        cap = min(self.cfg.backoff_cap, self.cfg.backoff_base * (2 ** max(0, attempt - 1)))
        return self.rng.uniform(0, cap)

    def _where(self, job: _Job) -> str:
        ch = self.book.chapters[job.chunk.chapter_idx] if self.book.chapters else None
        title = ch.title if ch else "?"
        return f"chapter {job.chunk.chapter_idx + 1} ({title!r}) piece {job.chunk.seq + 1}"

    def _queue_submit(self, job: _Job, delay: float = 0.0) -> None:
        heapq.heappush(self.ready, (self.clock() + delay, next(self.seq), job))

    def _release(self, job: _Job) -> None:
        if job.slot:
            job.slot = False
            self.slots.release()

    def _retry_or_raise(self, job: _Job, err: BaseException, counter: str) -> float:
        """Count a retryable error; return the backoff delay or raise RetriesExceeded."""
        n = getattr(job, counter) + 1
        setattr(job, counter, n)
        if n >= self.cfg.max_attempts:
            raise RetriesExceeded(err, n)
        log.warning("%s: %s. Retrying (%d/%d)", self._where(job), err, n, self.cfg.max_attempts - 1)
        return self._backoff(n)

    # -- work done on the executor ---------------------------------------------------------

    def _do_submit(self, job: _Job) -> TaskRef:
        if self.limiters.start is not None:
            self.limiters.start.acquire()
        # The intent goes to disk BEFORE the call: a crash after the call returns but
        # before the task id is recorded is found again by engine.recover(key, since).
        self.store.mark_starting(job.key, self.engine.name, job.chars, self.price_kind)
        try:
            ref = self.engine.submit(job.chunk, job.key)
        except AudiobookError as e:
            self.store.mark_not_started(job.key, str(e))
            raise
        self.store.mark_submitted(
            job.key, ref.task_id, ref.output_uri, ref.billed_chars, dict(ref.extra)
        )
        return ref

    def _do_fetch(self, job: _Job) -> Path:
        assert job.ref is not None
        job.dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = job.dest.with_name(
            f"{job.key}.tmp{os.getpid()}-{threading.get_ident()}{job.dest.suffix}"
        )
        try:
            if job.marks_dest is not None:
                # Marks first: cached audio always has its marks beside it.
                mtmp = job.marks_dest.with_name(f"{tmp.name}.marks")
                try:
                    self.engine.fetch_marks(job.ref, mtmp)
                    os.replace(mtmp, job.marks_dest)
                finally:
                    mtmp.unlink(missing_ok=True)
            self.engine.fetch(job.ref, tmp)
            os.replace(tmp, job.dest)
        finally:
            tmp.unlink(missing_ok=True)
        self.store.mark_done(job.key, job.dest, self.engine.name, job.chars)
        return job.dest

    def _dispatch(self, kind: str, fn: Callable[[_Job], Any], job: _Job) -> None:
        self.busy += 1
        fut = self.executor.submit(fn, job)
        if kind == "fetch":
            # The in-flight slot is given back when the chunk's audio is safe in the cache.
            fut.add_done_callback(
                lambda f, job=job: self._release(job) if not f.exception() else None
            )
        fut.add_done_callback(lambda f, job=job: self.events.put((kind, job, f)))

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._resume()
            self._loop()
        except BaseException:
            # Calls already running finish and record their task ids; queued ones never
            # start. The next run resumes from what the store holds.
            self.executor.shutdown(wait=True, cancel_futures=True)
            raise
        self.executor.shutdown(wait=True)

    def _resume(self) -> None:
        """Sort the jobs: recorded tasks are polled, unrecorded starts recovered, the
        rest submitted (in book order)."""
        rows = self.store.chunks([j.key for j in self.jobs])
        for job in self.jobs:
            row = rows.get(job.key)
            ref: TaskRef | None = None
            if row is not None and row.engine == self.engine.name and self.keeps_tasks:
                if row.status == "submitted" and row.task_id:
                    ref = TaskRef(row.task_id, row.engine, row.output_uri, extra=row.extra)
                elif row.status == "pending" and row.started_at is not None:
                    if self.limiters.poll is not None:
                        self.limiters.poll.acquire()
                    ref = self.engine.recover(job.key, row.started_at - RECOVER_SKEW)
                    if ref is not None:
                        log.info(
                            "%s: found task %s started by an earlier run",
                            self._where(job),
                            ref.task_id,
                        )
                        # Billed by the run that started it; count it once, here.
                        self.store.mark_submitted(
                            job.key, ref.task_id, ref.output_uri, ref.billed_chars, dict(ref.extra)
                        )
            if ref is not None:
                job.ref = ref
                job.resumed = True
                self.resumed += 1
                # Resumed tasks count against the in-flight bound, but are followed
                # even beyond it: they are running at the service already.
                job.slot = self.slots.acquire(blocking=False)
                job.next_poll = self.clock()
                job.started = next(self.started)
                self.polling.append(job)
            else:
                self._queue_submit(job)

    def _loop(self) -> None:
        while self.ready or self.polling or self.busy:
            self._drain(block_until=None)
            self._start_due()
            if self.polling and min(j.next_poll for j in self.polling) <= self.clock():
                self._poll_round()
                continue
            wake = self._next_wake()
            if self.busy or not self.sync:
                timeout = None if wake is None else max(0.0, wake - self.clock())
                self._drain(block_until=timeout if timeout is not None else 3600.0)
            elif wake is not None:
                self.sleep(max(0.0, wake - self.clock()))

    def _next_wake(self) -> float | None:
        times = []
        if self.polling:
            times.append(min(j.next_poll for j in self.polling))
        if self.ready and not self.blocked:
            times.append(self.ready[0][0])
        return min(times) if times else None

    def _start_due(self) -> None:
        now = self.clock()
        self.blocked = False
        while self.ready and self.ready[0][0] <= now:
            job = self.ready[0][2]
            if not job.slot:
                if not self.slots.acquire(blocking=False):
                    self.blocked = True  # backpressure: wait for a fetch to give one back
                    return
                job.slot = True
            heapq.heappop(self.ready)
            job.attempts += 1
            self._dispatch("submit", self._do_submit, job)

    def _drain(self, block_until: float | None) -> None:
        """Handle finished submits/fetches; wait up to ``block_until`` seconds for one."""
        try:
            if block_until is None:
                ev = self.events.get_nowait()
            else:
                ev = self.events.get(timeout=max(0.0, block_until))
        except queue.Empty:
            return
        while True:
            self._handle(*ev)
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, kind: str, job: _Job, fut: cf.Future) -> None:
        self.busy -= 1
        err = fut.exception()
        if err is not None and not isinstance(err, Exception):
            raise err  # KeyboardInterrupt, SystemExit: stop now, record nothing more
        if kind == "submit":
            if err is None:
                ref: TaskRef = fut.result()
                job.ref = ref
                self.submitted += 1
                self.billed += ref.billed_chars
                job.next_poll = self.clock()
                job.started = next(self.started)
                self.polling.append(job)
            elif isinstance(err, RETRYABLE):
                if self.limiters.start is not None and isinstance(err, Throttled):
                    self.limiters.start.drain()
                delay = self._retry_or_raise(job, err, "submit_errors")
                self._release(job)  # nothing in flight while it waits
                self._queue_submit(job, delay)
            else:
                self._fail(job, err)
        else:  # fetch
            if err is None:
                self._chunk_done(job)
            elif isinstance(err, RETRYABLE):
                delay = self._retry_or_raise(job, err, "errors")
                job.next_poll = self.clock() + delay
                self.polling.append(job)  # poll again, then fetch again
            else:
                self._fail(job, err)

    def _fail(self, job: _Job, err: BaseException) -> None:
        self._release(job)
        self.store.mark_failed(job.key, str(err))
        if isinstance(err, AudiobookError):
            raise err
        raise EngineError(
            f"{self._where(job)}: {type(err).__name__}: {err}", expected=False
        ) from err

    def _poll_round(self) -> None:
        """One status call's worth of polling. With an engine that answers for many tasks
        at once (``poll_many(refs) -> states``, e.g. one ListSpeechSynthesisTasks page),
        every due task is asked in one call. Otherwise one task: turn by turn the task
        started first (the likeliest to be done) and the one asked least recently."""
        now = self.clock()
        due = [j for j in self.polling if j.next_poll <= now]
        if self.batch_status:
            batch = sorted(due, key=lambda j: j.started)[:100]
            for j in batch:
                self.polling.remove(j)
            if self.poll_limiter is not None:
                self.poll_limiter.acquire()
            try:
                states = self.engine.poll_many([j.ref for j in batch if j.ref is not None])
            except RETRYABLE as e:
                for j in batch:
                    j.next_poll = self.clock() + self._retry_or_raise(j, e, "errors")
                    self.polling.append(j)
                return
            for j, state in zip(batch, states):
                j.errors = 0
                self._on_state(j, state)
            return
        self.poll_turn += 1
        if self.poll_turn % 2:
            job = min(due, key=lambda j: j.started)
        else:
            job = min(due, key=lambda j: (j.next_poll, j.started))
        self.polling.remove(job)
        self._poll_one(job)

    def _poll_one(self, job: _Job) -> None:
        assert job.ref is not None
        if self.poll_limiter is not None:
            self.poll_limiter.acquire()
        try:
            state: TaskState = self.engine.poll(job.ref)
        except RETRYABLE as e:
            job.next_poll = self.clock() + self._retry_or_raise(job, e, "errors")
            self.polling.append(job)
            return
        except (EngineError, KeyError, LookupError) as e:
            if job.resumed:
                # A task recorded by an earlier run that the engine no longer knows
                # (expired after 72 h, or an engine that keeps nothing): start afresh.
                log.info(
                    "%s: earlier task %s is gone (%s); starting a new one",
                    self._where(job),
                    job.ref.task_id,
                    e,
                )
                job.ref = None
                job.resumed = False
                self._release(job)
                self._queue_submit(job)
                return
            self._fail(job, e)
            return
        job.errors = 0
        self._on_state(job, state)

    def _on_state(self, job: _Job, state: TaskState) -> None:
        assert job.ref is not None
        if state.status == "completed":
            if state.output_uri and state.output_uri != job.ref.output_uri:
                job.ref = dataclasses.replace(job.ref, output_uri=state.output_uri)
            self._dispatch("fetch", self._do_fetch, job)
        elif state.status == "failed":
            reason = state.reason or "no reason given"
            if state.transient:
                err = TaskFailed(
                    f"{self._where(job)}: task {job.ref.task_id} failed: {reason}", reason=reason
                )
                if job.attempts >= self.cfg.max_attempts:
                    self._release(job)
                    self.store.mark_failed(job.key, reason)
                    raise RetriesExceeded(err, job.attempts)
                log.warning(
                    "%s: task failed (%s). Retrying (%d/%d)",
                    self._where(job),
                    reason,
                    job.attempts,
                    self.cfg.max_attempts - 1,
                )
                job.ref = None
                job.resumed = False
                self._release(job)
                self._queue_submit(job, self._backoff(job.attempts))
            else:
                self._release(job)
                self.store.mark_failed(job.key, reason)
                raise TaskFailed(
                    f"{self._where(job)}: task {job.ref.task_id} failed: {reason}", reason=reason
                )
        else:
            job.next_poll = self.clock() + self.repoll
            self.polling.append(job)

    def _chunk_done(self, job: _Job) -> None:
        self.done_chunks += 1
        self.done_chars += job.chars
        self.hooks.on_progress(
            self.done_chunks, self.total_chunks, self.done_chars, self.total_chars
        )
        idx = job.chunk.chapter_idx
        self.chapter_left[idx] -= 1
        if self.chapter_left[idx] == 0:
            self.hooks.on_chapter_done(idx, self.book.chapters[idx].title)


# --- conversion -------------------------------------------------------------------------


def _chunk(book: Book, engine: Engine, opts: ConvertOptions) -> list[Chunk]:
    from .chunk import chunk_book

    from .ssml import billable_chars, render_book, total_chars

    # Polly picks sync or async by the size of the whole job.
    rendered = render_book(book, opts.render)
    engine.plan(sum(billable_chars(s) for s in rendered), sum(total_chars(s) for s in rendered))
    return list(chunk_book(book, engine.limits, opts.render))


def _billable(ssml: str) -> int:
    from .ssml import billable_chars

    return billable_chars(ssml)


def _outputs_fingerprint(outputs: list[Path]) -> tuple[int, float] | None:
    try:
        stats = [p.stat() for p in outputs]
    except OSError:
        return None
    return sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=0.0)


def _up_to_date(
    store: StateStore, source_id: str, source_hash: str, options_hash: str, out: Path
) -> list[Path] | None:
    row = store.book(source_id)
    if (
        row is None
        or row.status != "done"
        or row.source_hash != source_hash
        or row.options_hash != options_hash
        or not row.output_path
    ):
        return None
    try:
        recorded = json.loads(row.output_path)
    except ValueError:
        return None
    outputs = [Path(p) for p in recorded.get("outputs", [])]
    if recorded.get("out") != os.fspath(out.resolve()) or not outputs:
        return None
    fp = _outputs_fingerprint(outputs)
    if fp is None or fp[0] != row.output_size or abs(fp[1] - (row.output_mtime or 0)) > 1e-6:
        return None
    return outputs


def convert(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    opts: ConvertOptions | None = None,
    hooks: Hooks | None = None,
    *,
    store: StateStore | None = None,
    limiters: Limiters | None = None,
    engine: Engine | None = None,
) -> ConvertResult:
    """Convert the document at ``path`` into ``out`` (default: beside it, with the
    format's extension). Does nothing when source, options and output are unchanged."""
    opts = opts or ConvertOptions()
    hooks = hooks or Hooks()
    if opts.fmt not in FORMATS:
        raise ConfigError(f"unknown format {opts.fmt!r} (choose m4b, mp3 or chapters)")
    src = Path(path)
    if not src.exists():
        raise InputError(src, "no such file")
    if src.is_dir():
        raise InputError(src, "is a folder, not a document")
    dest = Path(out) if out is not None else default_output(src, opts.fmt)
    own_store = store is None
    store = store or open_state(opts.state_dir, reset=opts.reset_state)
    try:
        t0 = time.monotonic()
        try:
            source_hash = file_sha256(src)
        except OSError as e:
            raise InputError(src, f"cannot read ({e.strerror})") from e
        source_id = os.fspath(src.resolve())
        options_hash = opts.fingerprint()
        if not opts.force:
            outputs = _up_to_date(store, source_id, source_hash, options_hash, dest)
            if outputs is not None:
                row = store.book(source_id)
                result = ConvertResult(
                    source=os.fspath(src),
                    outputs=tuple(outputs),
                    title=row.title if row else "",
                    skipped=True,
                    elapsed=time.monotonic() - t0,
                )
                hooks.on_done(result)
                return result
        book = read_book(src, opts.ingest)
        return _convert(
            book,
            dest,
            opts,
            hooks,
            store=store,
            limiters=limiters,
            engine=engine,
            source_id=source_id,
            source_hash=source_hash,
            t0=t0,
            source=os.fspath(src),
        )
    finally:
        if own_store:
            store.close()


def convert_book(
    book: Book,
    out: str | os.PathLike[str],
    opts: ConvertOptions | None = None,
    hooks: Hooks | None = None,
    *,
    store: StateStore | None = None,
    limiters: Limiters | None = None,
    engine: Engine | None = None,
) -> ConvertResult:
    """Convert a Book in memory into ``out`` (see the module docstring). The book is
    known to the state store by ``book.source`` (or its title when that is empty)."""
    opts = opts or ConvertOptions()
    hooks = hooks or Hooks()
    if opts.fmt not in FORMATS:
        raise ConfigError(f"unknown format {opts.fmt!r} (choose m4b, mp3 or chapters)")
    own_store = store is None
    store = store or open_state(opts.state_dir, reset=opts.reset_state)
    try:
        source_id = book.source or f"book:{book.title}"
        return _convert(
            book,
            Path(out),
            opts,
            hooks,
            store=store,
            limiters=limiters,
            engine=engine,
            source_id=source_id,
            source_hash=None,
            t0=time.monotonic(),
            source=source_id,
        )
    finally:
        if own_store:
            store.close()


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
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> Synthesis:
    """The synthesis stage alone: chunk ``book`` for ``engine`` and bring every chunk's
    audio into the cache (reused, resumed, recovered or submitted). ``book_id`` (a
    ``books`` row) gets the chunk list recorded first, so ``gc`` keeps it. The clock,
    sleep and random source of the scheduler are injectable for tests."""
    opts = opts or ConvertOptions()
    hooks = hooks or Hooks()
    chunks = _chunk(book, engine, opts)
    keys = [content_key(c, engine, opts.render.template) for c in chunks]
    if book_id is not None:
        store.set_book_chunks(book_id, [(k, c.chapter_idx) for k, c in zip(keys, chunks)])
    ext = engine.audio_format.ext
    with_marks = _wants_marks(engine)
    jobs: list[_Job] = []
    cached = 0
    seen: set[str] = set()
    chars = [_billable(c.ssml) for c in chunks]
    for i, (c, k) in enumerate(zip(chunks, keys)):
        if k in seen:
            continue
        seen.add(k)
        if store.cached(k, ext) is not None and (
            not with_marks or store.cached(k, MARKS_EXT) is not None
        ):
            cached += 1
            continue
        jobs.append(
            _Job(
                i,
                c,
                k,
                chars[i],
                store.cache_path(k, ext),
                store.cache_path(k, MARKS_EXT) if with_marks else None,
            )
        )
    total_chars = sum(chars)
    pending_chars = sum(j.chars for j in jobs)
    # Progress counts every chunk; cached ones (and repeats) are done from the start.
    hooks.on_queued(len(chunks), total_chars, len(chunks) - len(jobs))
    sched = _Scheduler(
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
    )
    for idx, ch in enumerate(book.chapters):
        if sched.chapter_left[idx] == 0:
            hooks.on_chapter_done(idx, ch.title)
    if jobs:
        engine.preflight()  # bad bucket, voice, SSML: one line before any money is spent
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
        cached,
        sched.submitted,
        sched.resumed,
        sched.billed,
    )


MARKS_EXT = "marks"


def _cached_or_fail(store: StateStore, key: str, ext: str) -> Path:
    p = store.cached(key, ext)
    if p is None:  # removed by another process's gc between synthesis and now
        raise EngineError(f"{store.cache_path(key, ext)}: cached audio vanished; run again")
    return p


def _wants_marks(engine: Engine) -> bool:
    return engine.capabilities.marks


def _convert(
    book: Book,
    out: Path,
    opts: ConvertOptions,
    hooks: Hooks,
    *,
    store: StateStore,
    limiters: Limiters | None,
    engine: Engine | None,
    source_id: str,
    source_hash: str | None,
    t0: float,
    source: str,
) -> ConvertResult:
    hooks.on_book(book)
    for w in book.warnings:
        hooks.on_warning(w)
    own_engine = engine is None
    engine = engine or make_engine(opts, book)
    try:
        options_hash = opts.fingerprint()
        if source_hash is None:  # a Book from memory: its content is its chunk keys
            keys = [
                content_key(c, engine, opts.render.template) for c in _chunk(book, engine, opts)
            ]
            source_hash = hashlib.sha256("\n".join(keys).encode()).hexdigest()
            if not opts.force:
                outputs = _up_to_date(store, source_id, source_hash, options_hash, out)
                if outputs is not None:
                    result = ConvertResult(
                        source=source,
                        outputs=tuple(outputs),
                        title=book.title,
                        chapters=len(book.chapters),
                        chunks_total=len(keys),
                        chunks_cached=len(keys),
                        skipped=True,
                        warnings=book.warnings,
                        elapsed=time.monotonic() - t0,
                    )
                    hooks.on_done(result)
                    return result
        book_id = store.upsert_book(
            source_id, source_hash="", options_hash="", title=book.title, status="running"
        )
        run_id = store.start_run(book_id)
        try:
            syn = synthesize(
                book, opts, hooks, store=store, engine=engine, limiters=limiters, book_id=book_id
            )
            chapters = _chapter_audio(book, syn)
            from .stitch import stitch

            stitched = stitch(book, chapters, out, fmt=opts.fmt, on_progress=hooks.on_stitch)
            captions = write_captions(
                syn.pieces, syn.marks, [Path(p) for p in stitched.outputs], out, opts.fmt
            )
        except BaseException as e:
            # What was paid for is in the chunk rows; the run keeps only why it stopped.
            store.finish_book(book_id, status="failed")
            store.finish_run(run_id, status="failed", error=str(e)[:500] or type(e).__name__)
            raise
        outputs = [Path(p) for p in stitched.outputs] + captions
        fp = _outputs_fingerprint(outputs) or (0, 0.0)
        store.finish_book(
            book_id,
            status="done",
            output_path=json.dumps(
                {
                    "out": os.fspath(out.resolve()),
                    "outputs": [os.fspath(p.resolve()) for p in outputs],
                }
            ),
            output_size=fp[0],
            output_mtime=fp[1],
            source_hash=source_hash,
            options_hash=options_hash,
        )
        store.finish_run(
            run_id,
            status="done",
            chunks_total=len(syn.chunks),
            chunks_cached=syn.cached,
            chunks_submitted=syn.submitted,
            billed_chars=syn.billed_chars,
        )
        result = ConvertResult(
            source=source,
            outputs=tuple(outputs),
            title=book.title,
            chapters=len(book.chapters),
            duration=float(stitched.duration),
            chapter_times=_chapter_times(stitched),
            chunks_total=len(syn.chunks),
            chunks_cached=syn.cached,
            chunks_resumed=syn.resumed,
            chunks_submitted=syn.submitted,
            billed_chars=syn.billed_chars,
            warnings=book.warnings,
            elapsed=time.monotonic() - t0,
        )
        hooks.on_done(result)
        return result
    finally:
        if own_engine:
            engine.close()


def _chapter_audio(book: Book, syn: Synthesis) -> list[Any]:
    from .stitch import ChapterAudio

    return [ChapterAudio(ch.title, tuple(ps)) for ch, ps in zip(book.chapters, syn.pieces)]


def _chapter_times(stitched: Any) -> tuple[tuple[str, float, float], ...]:
    out = []
    for ch in getattr(stitched, "chapters", ()) or ():
        if isinstance(ch, tuple):
            out.append((str(ch[0]), float(ch[1]), float(ch[2])))
        else:
            out.append(
                (
                    str(getattr(ch, "title", "")),
                    float(getattr(ch, "start", 0.0)),
                    float(getattr(ch, "end", 0.0)),
                )
            )
    return tuple(out)


__all__ = [
    "FORMATS",
    "BatchItem",
    "ConvertOptions",
    "ConvertResult",
    "Hooks",
    "InlineExecutor",
    "Limiters",
    "Synthesis",
    "batch",
    "content_key",
    "convert",
    "convert_book",
    "default_output",
    "make_engine",
    "make_limiters",
    "synthesize",
]


# --- batch ------------------------------------------------------------------------------

BATCH_SUFFIXES = (".epub", ".pdf", ".html", ".htm", ".xhtml", ".md", ".markdown", ".txt")


@dataclass(frozen=True)
class BatchItem:
    source: Path
    out: Path
    result: ConvertResult | None = None
    error: str | None = None
    exit_code: int = 0


def batch_outputs(in_dir: Path, out_dir: Path, fmt: str) -> list[tuple[Path, Path]]:
    """The documents of ``in_dir`` (sorted) and the output of each: ``NAME.<fmt>`` in
    ``out_dir`` (``NAME.<ext>.<fmt>`` when two inputs share a name)."""
    sources = sorted(
        p for p in Path(in_dir).iterdir() if p.is_file() and p.suffix.lower() in BATCH_SUFFIXES
    )
    stems = collections.Counter(p.stem for p in sources)
    pairs = []
    for p in sources:
        name = p.stem if stems[p.stem] == 1 else p.name
        pairs.append((p, Path(out_dir) / (name if fmt == "chapters" else f"{name}.{fmt}")))
    return pairs


def batch(
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    opts: ConvertOptions | None = None,
    *,
    jobs: int = 2,
    on_book: Callable[[BatchItem], None] | None = None,
    on_warning: Callable[[Path, str], None] | None = None,
    hooks_for: Callable[[Path], Hooks] | None = None,
) -> list[BatchItem]:
    """Convert every document of ``in_dir`` into ``out_dir``, ``jobs`` books at a time,
    sharing one state store and one set of rate limiters (one Polly quota). A book that
    fails is reported in its item; the others are still delivered. Items come back in
    input order; ``on_book`` is called as each finishes."""
    opts = opts or ConvertOptions()
    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    pairs = batch_outputs(Path(in_dir), out_path, opts.fmt)
    if opts.config.workers == 0 and opts.engine == "local":
        # Each book's local engine gets its share of the cores.
        share = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(pairs) or 1)))
        opts = dataclasses.replace(opts, config=dataclasses.replace(opts.config, workers=share))
    store = open_state(opts.state_dir, reset=opts.reset_state)
    opts = dataclasses.replace(opts, reset_state=False)
    limiters = make_limiters(opts)
    lock = threading.Lock()

    class _Warn(Hooks):
        def __init__(self, src: Path) -> None:
            self.src = src

        def on_warning(self, message: str) -> None:
            if on_warning is not None:
                with lock:
                    on_warning(self.src, message)

    def one(src: Path, out: Path) -> BatchItem:
        hooks = hooks_for(src) if hooks_for else _Warn(src)
        try:
            result = convert(src, out, opts, hooks, store=store, limiters=limiters)
            item = BatchItem(src, out, result)
        except AudiobookError as e:
            item = BatchItem(src, out, None, " ".join(str(e).split()), e.exit_code)
        except Exception as e:
            log.exception("%s: unexpected error", src)
            item = BatchItem(src, out, None, f"{type(e).__name__}: {e}", 1)
        if on_book is not None:
            with lock:
                on_book(item)
        return item

    try:
        with cf.ThreadPoolExecutor(
            max_workers=max(1, jobs), thread_name_prefix="audiobook-book"
        ) as pool:
            futures = [pool.submit(one, src, out) for src, out in pairs]
            return [f.result() for f in futures]
    finally:
        store.close()
