"""The scheduler: drives one book's chunks to the cache, paying for each chunk once.

Event-driven (s3transfer's BoundedExecutor): a slot of ``PipelineConfig.max_inflight``
is taken before each submit and given back in the done-callback of the chunk's fetch;
start calls go through a token bucket, status calls through another (``poll_tps``),
shared by every book of the process (``Limiters``), or by every worker of a cluster
when the state store is shared (PostgreSQL); the oldest outstanding task is
polled first; each finished chunk is fetched into the cache at once. Retryable errors
(``errors.RETRYABLE``) are retried with exponential backoff and full jitter, logged as
"Retrying (n/N)", and end in ``RetriesExceeded``.

What it asks of the engine is what the engine declares (``engine.capabilities``):
tasks that outlive the process are resumed and recovered, engines that answer for many
tasks at once are asked once per round, notified engines spend no status quota.

Crash safety: the intent to start a chunk is recorded before the start call and the
task id right after it, so a run killed at any moment is resumed by the next one: a
recorded task is polled, an unrecorded one is found again by ``engine.recover``.

Runs at once (a ``LeaseOwner`` each, on one store): a chunk is claimed in the
transaction of its intent, so that two runs never both pay for it. A chunk another
live run holds is followed: its recorded task is polled (and fetched, where tasks
outlive their process) or, until one is recorded, the chunk waits for the cache,
looked at every ``FOLLOW_INTERVAL``. A claim whose run died is taken over, and the
chunk resumed as after a crash. Chunks no run holds yet are started by whichever run
comes to them first, so two runs of one book share its chunks.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import dataclasses
import heapq
import itertools
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import POLLY_CONCURRENCY, POLLY_START_TPS
from .engines.base import Engine, TaskRef, TaskState
from .engines.options import PollyOptions
from .errors import (
    RETRYABLE,
    AudiobookError,
    EngineError,
    RetriesExceeded,
    StateError,
    TaskFailed,
    Throttled,
)
from .hooks import Hooks
from .model import Book, Chunk
from .options import ConvertOptions
from .ratelimit import RateLimiter, Slots, TokenBucket
from .state import (
    ChunkRow,
    LeaseHolder,
    LeaseOwner,
    PieceBusy,
    file_digest,
    storage_error,
)
from .statebase import StateBackend

log = logging.getLogger(__name__)

# How often one outstanding task is asked again: remote engines (rate-limited on top),
# local ones (their poll is a look at a future).
REMOTE_REPOLL = 0.1
LOCAL_REPOLL = 0.01
# How often a chunk another run holds is looked at again (the cache, the claim, the
# row), and its followed task polled at most.
FOLLOW_INTERVAL = 0.5
# How often a book whose next start waits for an in-flight slot tries again.
SLOT_RETRY = 0.25


@dataclass
class Limiters:
    """Rate limiters shared by every book of one process, or of every process that
    shares a state store across machines (None = unlimited)."""

    start: RateLimiter | None = None
    poll: RateLimiter | None = None
    # Tasks in flight across the books (the engine kind's concurrency); None: each
    # book bounds its own by ``max_inflight``.
    inflight: Slots | None = None


def make_limiters(
    opts: ConvertOptions,
    store: StateBackend | None = None,
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Limiters:
    """Start and status-call buckets for ``opts``' engine: Polly's quotas (start rate per
    engine kind, capped by ``config.tps``; ``config.poll_tps`` for Get/List) and the
    in-flight bound of its kind, shared by every book; the local engine has none.

    A ``store`` shared by many machines (PostgreSQL) holds the buckets and the bound
    for all of them (``StateBackend.rate_limiter``, ``slots``): one quota for the
    cluster, named as Polly's (``start:<kind>``, ``getlist``, ``inflight:<kind>``),
    with each process still keeping at most ``max_inflight`` in flight. Otherwise
    they live in this process. ``clock``: the buckets' clock (None: the monotonic
    clock here, the database's for a shared store)."""
    cfg = opts.config
    if opts.engine != "polly":
        return Limiters()
    options = opts.engine_options
    kind = options.polly_engine if isinstance(options, PollyOptions) else "standard"
    rate, burst = POLLY_START_TPS.get(kind, (cfg.tps, cfg.burst))
    if cfg.tps > 0:
        rate = min(rate, cfg.tps)
        burst = max(1, min(burst, cfg.burst))

    def bucket(name: str, rate: float, burst: int) -> RateLimiter:
        shared = store.rate_limiter(name, rate, burst, clock=clock, sleep=sleep) if store else None
        return shared or TokenBucket(rate, burst, clock=clock or time.monotonic, sleep=sleep)

    own = threading.Semaphore(max(1, inflight_bound(cfg.max_inflight, kind, cfg.concurrency)))
    account = cfg.concurrency or POLLY_CONCURRENCY.get(kind, cfg.max_inflight)
    shared = store.slots(f"inflight:{kind}", max(1, account), own) if store else None
    return Limiters(
        start=bucket(f"start:{kind}", rate, burst) if rate > 0 else None,
        poll=bucket("getlist", cfg.poll_tps, max(1, int(cfg.poll_tps)))
        if cfg.poll_tps > 0
        else None,
        inflight=shared or own,
    )


def inflight_bound(max_inflight: int, price_kind: str, concurrency: int = 0) -> int:
    """Tasks kept in flight at most: ``max_inflight``, within the account's concurrency
    (``concurrency``, else what Polly documents for the engine kind,
    ``config.POLLY_CONCURRENCY``)."""
    return min(max_inflight, concurrency or POLLY_CONCURRENCY.get(price_kind, max_inflight))


class InlineExecutor:
    """Runs each call at once in the caller's thread (s3transfer's NonThreadedExecutor):
    a deterministic drop-in for tests."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        fut: cf.Future[Any] = cf.Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the future's owner
            fut.set_exception(e)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


@dataclass(eq=False)
class Job:
    index: int  # position in the book's chunk list
    chunk: Chunk
    key: str
    chars: int
    dest: Path
    marks_dest: Path | None = None  # speech marks beside the audio, when asked for
    marks_only: bool = False  # the audio is cached: start and fetch only the marks
    attempts: int = 0  # start calls for this chunk in this run
    errors: int = 0  # retryable poll/fetch errors in a row
    ref: TaskRef | None = None
    next_poll: float = 0.0
    submit_errors: int = 0  # retryable start-call errors
    started: int = 0  # order of its task's start among the book's tasks
    resumed: bool = False
    slot: bool = False
    following: bool = False  # ref is another live run's task, polled but not ours
    next_check: float = 0.0  # when a chunk another run holds is looked at again
    passed: str | None = None  # a followed task seen failing: not followed again
    done: bool = False  # its audio is in the cache


class Scheduler:
    """Drives the chunks of one book to the cache. Runs in the calling thread; submits
    and fetches run on an executor and report back through a queue."""

    def __init__(
        self,
        *,
        engine: Engine,
        store: StateBackend,
        jobs: list[Job],
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
        owner: LeaseOwner | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.owner = owner  # this run's claims (None: ``run`` makes its own)
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
        self.executor: InlineExecutor | cf.ThreadPoolExecutor = (
            InlineExecutor()
            if self.sync
            else cf.ThreadPoolExecutor(
                max_workers=max(2, min(self.cfg.max_inflight, 16)), thread_name_prefix="audiobook"
            )
        )
        self.slots: Slots = limiters.inflight or threading.Semaphore(
            max(1, inflight_bound(self.cfg.max_inflight, price_kind, self.cfg.concurrency))
        )
        self.events: queue.Queue[tuple[str, Job, cf.Future[Any]]] = queue.Queue()
        self.ready: list[tuple[float, int, Job]] = []  # heap of (due, seq, job) to submit
        self.polling: list[Job] = []  # submitted tasks, waiting for their next poll
        self.waiting: list[Job] = []  # chunks another run holds, waiting for the cache
        self.started = itertools.count()  # order in which tasks were started
        self.poll_turn = 0
        caps = engine.capabilities
        self.batch_status = caps.batch_status
        # An engine told of completions by notifications (Polly with an SNS topic) makes
        # no status call per poll: its polls need no share of the Get/List quota.
        # An engine that passes each of its status calls through the shared limiter
        # (fallback lookups, listings, re-polls after a lost notification) is left to it.
        start = limiters.start
        gated = start is not None and engine.limit_start_calls(start.acquire)
        self.start_limiter = None if gated else start  # one token per submit, if not gated
        status = limiters.poll
        gated = status is not None and engine.limit_status_calls(status.acquire)
        self.status_limiter = None if gated else status
        self.poll_limiter = None if caps.notified else self.status_limiter
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
        self.cached = 0  # chunks another run brought into the cache meanwhile
        self.chapter_left = collections.Counter(j.chunk.chapter_idx for j in jobs)
        self.blocked = False  # the next submit waits for an in-flight slot
        self.stopping = False  # stopped (an error, Ctrl-C): calls in flight are let finish

    # -- helpers -------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        cap = min(self.cfg.backoff_cap, self.cfg.backoff_base * (2 ** max(0, attempt - 1)))
        return self.rng.uniform(0, cap)

    def _where(self, job: Job) -> str:
        ch = self.book.chapters[job.chunk.chapter_idx] if self.book.chapters else None
        title = ch.title if ch else "?"
        return f"chapter {job.chunk.chapter_idx + 1} ({title!r}) piece {job.chunk.seq + 1}"

    def _queue_submit(self, job: Job, delay: float = 0.0) -> None:
        heapq.heappush(self.ready, (self.clock() + delay, next(self.seq), job))

    def _release(self, job: Job) -> None:
        if job.slot:
            job.slot = False
            self.slots.release()

    def _retry_or_raise(self, job: Job, err: BaseException, counter: str) -> float:
        """Count a retryable error; return the backoff delay or raise RetriesExceeded."""
        n = getattr(job, counter) + 1
        setattr(job, counter, n)
        if n >= self.cfg.max_attempts:
            raise RetriesExceeded(err, n)
        log.warning("%s: %s. Retrying (%d/%d)", self._where(job), err, n, self.cfg.max_attempts - 1)
        return self._backoff(n)

    # -- work done on the executor ---------------------------------------------------------

    def _do_submit(self, job: Job) -> TaskRef | None:
        """Start the chunk's task; None when another run holds the chunk or has done
        (or started) it meanwhile: nothing was started, the caller looks again."""
        if self.start_limiter is not None:
            self.start_limiter.acquire()
        # The intent goes to disk BEFORE the call: a crash after the call returns but
        # before the task id is recorded is found again by engine.recover(key, since).
        # The claim on the chunk is written in the same transaction.
        try:
            self.store.mark_starting(
                job.key,
                self.engine.name,
                job.chars,
                self.price_kind,
                owner=self.owner,
                keeps_tasks=self.keeps_tasks,
            )
        except PieceBusy:
            return None
        try:
            if job.marks_only:
                ref = self.engine.submit_marks(job.chunk, job.key)
            else:
                ref = self.engine.submit(job.chunk, job.key)
        except AudiobookError as e:
            self.store.mark_not_started(job.key, str(e))
            raise
        self.store.mark_submitted(
            job.key, ref.task_id, ref.output_uri, ref.billed_chars, dict(ref.extra)
        )
        return ref

    def _do_fetch(self, job: Job) -> Path:
        assert job.ref is not None
        try:
            digest, marks_digest = self._fetch_into_cache(job)
        except Exception as e:
            # The cache refusing the write (disk full, read-only) is the state folder's
            # problem, whatever error the engine wrapped it in.
            storage = storage_error(self.store.dir, e)
            if storage is not None:
                raise storage from e
            raise
        # A shared cache gets the piece whole before the row says it is done.
        for path in (job.marks_dest, None if job.marks_only else job.dest):
            if path is not None:
                self.store.cache.publish(path)
        self.store.mark_done(
            job.key,
            job.dest,
            self.engine.name,
            job.chars,
            digest=digest,
            marks_digest=marks_digest,
            owner=self.owner,
        )
        self.engine.release(job.ref)  # only now: a crash before this refetches
        return job.dest

    def _fetch_into_cache(self, job: Job) -> tuple[tuple[int, str], tuple[int, str] | None]:
        """The audio (and marks) of a finished task into the cache, each file written
        whole; returns their (size, sha256) as written."""
        assert job.ref is not None
        job.dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = job.dest.with_name(
            f"{job.key}.tmp{os.getpid()}-{threading.get_ident()}{job.dest.suffix}"
        )
        marks_digest: tuple[int, str] | None = None
        try:
            if job.marks_dest is not None:
                # Marks first: cached audio always has its marks beside it.
                mtmp = job.marks_dest.with_name(f"{tmp.name}.marks")
                try:
                    self.engine.fetch_marks(job.ref, mtmp)
                    marks_digest = file_digest(mtmp)
                    os.replace(mtmp, job.marks_dest)
                finally:
                    mtmp.unlink(missing_ok=True)
            if job.marks_only:  # the cached audio stays as it is
                return file_digest(job.dest), marks_digest
            self.engine.fetch(job.ref, tmp)
            digest = file_digest(tmp)
            os.replace(tmp, job.dest)
        finally:
            tmp.unlink(missing_ok=True)
        return digest, marks_digest

    def _dispatch(self, kind: str, fn: Callable[[Job], Any], job: Job) -> None:
        self.busy += 1
        fut = self.executor.submit(fn, job)

        def done(f: cf.Future[Any]) -> None:
            if kind == "fetch" and not f.exception():
                # The in-flight slot is given back when the chunk's audio is in the cache.
                self._release(job)
            self.events.put((kind, job, f))

        fut.add_done_callback(done)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        with contextlib.ExitStack() as claims:
            if self.owner is None:  # claims of its own, given up when it ends
                self.owner = claims.enter_context(LeaseOwner(self.store))
            try:
                self._resume()
                self._loop()
            except BaseException:
                # Calls already running finish and record their task ids; queued ones
                # never start. The next run resumes from what the store holds.
                self.stopping = True
                self.executor.shutdown(wait=True, cancel_futures=True)
                raise
            finally:
                # The in-flight bound may be shared with other books: give back what
                # this one still holds, whatever ended it.
                if self.stopping:
                    for job in self.jobs:
                        self._release(job)
            self.executor.shutdown(wait=True)

    def waiting_for(self) -> str:
        """What the book waits for now, in words (for the watchdog, which asks from its
        own thread: so from copies)."""
        ready, busy, kind = list(self.ready), self.busy, self.engine.name
        if self.stopping:
            return f"waiting for {busy} {kind} call(s) in flight to finish before stopping"
        parts = []
        tasks = [j for j in list(self.jobs) if j.ref is not None and not j.done]
        if tasks:
            oldest = min(tasks, key=lambda j: j.started)
            task = f", task {oldest.ref.task_id}" if oldest.ref is not None else ""
            parts.append(
                f"{len(tasks)} {kind} task(s) to finish (the oldest: {self._where(oldest)}{task})"
            )
        if busy:
            parts.append(f"{busy} {kind} call(s) in flight (starting tasks, fetching audio)")
        if ready:
            due = min(r[0] for r in ready) - self.clock()
            later = f", the next in {due:.0f} s" if due >= 1 else ""
            full = " (all in-flight slots taken)" if self.blocked else ""
            parts.append(f"{len(ready)} piece(s) to start{later}{full}")
        return "waiting for " + ("; ".join(parts) if parts else f"{kind} synthesis to end")

    def _resume(self) -> None:
        """Sort the jobs: recorded tasks are polled, unrecorded starts recovered, the
        rest submitted (in book order). A chunk whose row shows a task or a start is
        claimed first (``_settle``): one another live run holds is followed instead.
        The rest are claimed as they are started (``_do_submit``)."""
        rows = self.store.chunks([j.key for j in self.jobs])
        for job in self.jobs:
            if self._resumable(rows.get(job.key)):
                self._settle(job)
            else:
                self._queue_submit(job)

    def _resumable(self, row: ChunkRow | None) -> bool:
        """A task of an earlier (or another) run that can be followed up: recorded, or
        started without being recorded, on an engine whose tasks outlive the process."""
        return (
            row is not None
            and row.engine == self.engine.name
            and self.keeps_tasks
            and (
                (row.status == "submitted" and bool(row.task_id))
                or (row.status == "pending" and row.started_at is not None)
            )
        )

    def _take_up(self, job: Job, row: ChunkRow | None) -> bool:
        """Follow up the task an earlier run left for ``job``: poll a recorded one, find
        an unrecorded one again (``engine.recover``). False when there is none."""
        ref: TaskRef | None = None
        if row is not None and self._resumable(row):
            if row.status == "submitted" and row.task_id:
                ref = TaskRef(row.task_id, row.engine, row.output_uri, extra=row.extra)
            elif row.started_at is not None:
                ref = self._recover(job, row.started_at)
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
        if ref is None:
            return False
        job.ref = ref
        job.resumed = True
        self.resumed += 1
        # Resumed tasks count against the in-flight bound, but are followed
        # even beyond it: they are running at the service already.
        job.slot = self.slots.acquire(blocking=False)
        job.next_poll = self.clock()
        job.started = next(self.started)
        self.polling.append(job)
        return True

    def _recover(self, job: Job, since: float) -> TaskRef | None:
        """``engine.recover``, retried with backoff on a retryable error (a throttled
        listing during a resume is no reason to stop)."""
        while True:
            if self.status_limiter is not None:
                self.status_limiter.acquire()
            try:
                # Clock skew between us and the service is the engine's to allow.
                return self.engine.recover(job.key, since)
            except RETRYABLE as e:
                self.sleep(self._retry_or_raise(job, e, "errors"))

    # -- chunks other runs hold --------------------------------------------------------------

    def _in_cache(self, job: Job) -> bool:
        return job.dest.is_file() and (job.marks_dest is None or job.marks_dest.is_file())

    def _settle(self, job: Job, holder: LeaseHolder | None = None) -> None:
        """Decide, with claims, what becomes of a chunk that is not ours yet: done if
        its audio is in the cache; followed if another live run holds it; else ours
        (taken over from a run that died, if any), and resumed as after a crash."""
        assert self.owner is not None
        if self._in_cache(job):
            self._done_elsewhere(job)
            return
        if holder is None:
            holder = self.store.claim_piece(job.key, self.owner)
        row = self.store.chunk(job.key)
        if holder is not None:
            self._follow(job, holder, row)
            return
        if row is not None and row.status == "done" and self._in_cache(job):
            self._done_elsewhere(job)  # done by the run that just let it go
            return
        if not self._take_up(job, row):
            self._queue_submit(job)

    def _follow(self, job: Job, holder: LeaseHolder, row: ChunkRow | None) -> None:
        """Another live run works on the chunk: poll its recorded task where tasks
        outlive their process, else wait for the audio in the cache."""
        if (
            self.keeps_tasks
            and row is not None
            and row.engine == self.engine.name
            and row.status == "submitted"
            and row.task_id
            and row.task_id != job.passed
        ):
            log.debug(
                "%s: following task %s of another run (%s)",
                self._where(job),
                row.task_id,
                holder.where(),
            )
            job.ref = TaskRef(row.task_id, row.engine, row.output_uri, extra=row.extra)
            job.following = True
            job.resumed = False
            job.next_poll = self.clock()
            job.started = next(self.started)
            self.polling.append(job)
            return
        log.debug("%s: waiting for another run (%s)", self._where(job), holder.where())
        job.next_check = self.clock() + FOLLOW_INTERVAL
        self.waiting.append(job)

    def _rewait(self, job: Job, *, failed: bool = False) -> None:
        """A followed task failed, or could not be polled or fetched: the run that holds
        the chunk deals with it; look again later (a failed task is not followed again)."""
        if failed and job.ref is not None:
            job.passed = job.ref.task_id
        job.ref = None
        job.following = False
        job.next_check = self.clock() + FOLLOW_INTERVAL
        self.waiting.append(job)

    def _check_waiting(self) -> None:
        """Look again at the chunks other runs hold whose time has come: one read for
        all of them; a claim only for those no live run holds any more."""
        assert self.owner is not None
        now = self.clock()
        due = [j for j in self.waiting if j.next_check <= now]
        if not due:
            return
        for j in due:
            self.waiting.remove(j)
        held = self.store.piece_holders([j.key for j in due if not self._in_cache(j)], self.owner)
        for j in due:
            self._settle(j, held.get(j.key))

    def _done_by_another(self, job: Job) -> bool:
        if not self._in_cache(job):
            return False
        row = self.store.chunk(job.key)
        return row is not None and row.status == "done"

    def _done_elsewhere(self, job: Job) -> None:
        """Another run brought the chunk's audio into the cache."""
        self.cached += 1
        self._chunk_done(job)

    def _loop(self) -> None:
        while self.ready or self.polling or self.busy or self.waiting:
            self._drain(block_until=None)
            self._start_due()
            if self.waiting:
                self._check_waiting()
            if self.polling and min(j.next_poll for j in self.polling) <= self.clock():
                self._poll_round()
                continue
            if not (self.ready or self.polling or self.busy or self.waiting):
                break  # what was handled above finished the last chunk: nothing to wait for
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
        elif self.ready:
            # Every slot taken: by this book's tasks (their ends wake us) or by other
            # books' or other workers' (nothing here hears of those): look again.
            times.append(self.clock() + SLOT_RETRY)
        if self.waiting:
            times.append(min(j.next_check for j in self.waiting))
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

    def _handle(self, kind: str, job: Job, fut: cf.Future[Any]) -> None:
        self.busy -= 1
        err = fut.exception()
        if err is not None and not isinstance(err, Exception):
            raise err  # KeyboardInterrupt, SystemExit: stop now, record nothing more
        if kind == "submit":
            if err is None and fut.result() is None:
                # Another run holds the chunk, or did it meanwhile: nothing started.
                job.attempts -= 1
                self._release(job)
                self._settle(job)
            elif err is None:
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
                if job.following:
                    job.following = False
                    self.resumed += 1
                self._chunk_done(job)
            elif self._done_by_another(job):
                # Another run fetched it meanwhile (and freed the task's output).
                job.following = False
                self._release(job)
                self._done_elsewhere(job)
            elif job.following:
                self._rewait(job)  # its own run fetches it, or we take over
            elif isinstance(err, RETRYABLE):
                delay = self._retry_or_raise(job, err, "errors")
                job.next_poll = self.clock() + delay
                self.polling.append(job)  # poll again, then fetch again
            else:
                self._fail(job, err)

    def _fail(self, job: Job, err: BaseException) -> None:
        self._release(job)
        if not isinstance(err, StateError):  # a store that failed a write takes no more
            with contextlib.suppress(StateError):  # and does not hide why we stop
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
                    if j.following:
                        self._rewait(j)
                        continue
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

    def _poll_one(self, job: Job) -> None:
        assert job.ref is not None
        if self.poll_limiter is not None:
            self.poll_limiter.acquire()
        try:
            state: TaskState = self.engine.poll(job.ref)
        except RETRYABLE as e:
            if job.following:
                self._rewait(job)
                return
            job.next_poll = self.clock() + self._retry_or_raise(job, e, "errors")
            self.polling.append(job)
            return
        except (EngineError, KeyError, LookupError) as e:
            if job.following:
                self._rewait(job, failed=True)
                return
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

    def _on_state(self, job: Job, state: TaskState) -> None:
        assert job.ref is not None
        if job.following:
            # Another run's task: its run retries a failure; the audio may be fetched
            # already (by that run).
            if state.status == "failed":
                self._rewait(job, failed=True)
                return
            if state.status == "completed" and self._in_cache(job):
                job.following = False
                self._done_elsewhere(job)
                return
            if state.status != "completed":
                job.next_poll = self.clock() + max(self.repoll, FOLLOW_INTERVAL)
                self.polling.append(job)
                return
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

    def _chunk_done(self, job: Job) -> None:
        job.done = True
        self.done_chunks += 1
        self.done_chars += job.chars
        self.hooks.on_progress(
            self.done_chunks, self.total_chunks, self.done_chars, self.total_chars
        )
        idx = job.chunk.chapter_idx
        self.chapter_left[idx] -= 1
        if self.chapter_left[idx] == 0:
            self.hooks.on_chapter_done(idx, self.book.chapters[idx].title)
