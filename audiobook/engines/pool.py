"""What the offline engines share: a pool of spawned worker processes, one per core by
default, each piece a task in it whose WAV file the worker writes into the engine's
temp folder.

    class MyEngine(PoolEngine[int]):
        worker_name = "my-tts"                   # in messages: "my-tts worker died"
        def submit(self, chunk, key):
            task_id, dest = self._start(work, chunk.ssml)  # work(ssml, dest) in a worker
            return TaskRef(task_id=task_id, engine=self.name, output_uri=dest)

``poll`` reads the task's future; ``_result`` waits for it and turns a worker's failure
into the engine's errors; ``_move_audio`` moves the piece into place; ``close`` stops
the workers. A pool broken by a dead worker is started afresh once per submission.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Generic, TypeVar

from .. import interrupt
from ..errors import EngineError, TaskFailed, TransientEngineError, one_line
from .base import Engine, TaskRef, TaskState

R = TypeVar("R")


class PoolEngine(Engine, Generic[R]):
    """An engine whose pieces are tasks in a pool of ``workers`` spawned processes,
    each set up by ``initializer(*initargs)``; a task returns ``R``.

    ``kill_unfinished``: ``close`` kills the workers (rather than wait for them) while
    pieces are still being synthesized; for workers that ignore SIGINT and SIGTERM."""

    worker_name = "worker"  # the program the workers run, in messages
    kill_unfinished = False

    def __init__(
        self,
        workers: int,
        temp_prefix: str,
        initializer: Callable[..., object],
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self.workers = workers if workers > 0 else (os.cpu_count() or 1)
        self._initializer = initializer
        self._initargs = initargs
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._tasks: dict[str, Future[R]] = {}
        self._ids = itertools.count(1)
        self._dir = tempfile.mkdtemp(prefix=temp_prefix)
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)

    # --- Engine -------------------------------------------------------------------------

    def poll(self, ref: TaskRef) -> TaskState:
        fut = self._future(ref)
        if not fut.done():
            return TaskState("inProgress" if fut.running() else "scheduled")
        exc = fut.exception()
        if exc is None:
            return TaskState("completed", output_uri=ref.output_uri)
        transient = isinstance(exc, (BrokenProcessPool, TransientEngineError, OSError))
        return TaskState("failed", reason=one_line(exc), transient=transient)

    def close(self) -> None:
        with self._lock:
            # Pieces still being synthesized (the run was stopped: Ctrl-C, SIGTERM, an
            # error) are not wanted: with ``kill_unfinished`` their workers are stopped
            # rather than waited for.
            unfinished = any(not f.done() for f in self._tasks.values())
            self._drop_pool(kill=self.kill_unfinished and unfinished)
            self._tasks.clear()
            self._closed()
        self._finalizer()

    # --- for the engines ------------------------------------------------------------------

    def _closed(self) -> None:
        """Forget what the engine keeps beside its tasks (called under the lock)."""

    def _start(self, work: Callable[..., R], *args: Any) -> tuple[str, str]:
        """Run ``work(*args, dest)`` in a worker; return the task's id and ``dest``, the
        WAV file it writes."""
        task_id = f"{self.name}-{next(self._ids)}"
        dest = os.path.join(self._dir, f"{task_id}.wav")
        with self._lock:
            try:
                fut = self._submit(work, *args, dest)
            except BrokenProcessPool:
                self._drop_pool()  # a worker died: start a fresh pool once
                try:
                    fut = self._submit(work, *args, dest)
                except BrokenProcessPool:
                    raise TransientEngineError(
                        f"{self.worker_name} worker processes keep dying"
                    ) from None
            self._tasks[task_id] = fut
        return task_id, dest

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        pool = self._ensure_pool()
        # A worker starts in pool.submit and inherits this thread's mask: a Ctrl-C during
        # its start-up (its imports, loading a voice) waits until the worker ignores the
        # signal, rather than end in a traceback. Blocked only now: making the pool may
        # start multiprocessing's resource tracker, which unblocks both signals in this
        # thread when it is up.
        with interrupt.blocked_signals():
            return pool.submit(fn, *args)

    def _result(self, ref: TaskRef) -> R:
        """The task's result, waited for; a dead worker is a TransientEngineError, any
        other failure but the engine's own errors a TaskFailed."""
        fut = self._future(ref)
        try:
            return fut.result()
        except BrokenProcessPool as e:
            raise TransientEngineError(f"{self.worker_name} worker died: {one_line(e)}") from e
        except EngineError:
            raise
        except Exception as e:
            raise TaskFailed(f"{self.worker_name} failed: {one_line(e)}", reason=one_line(e)) from e

    def _audio_path(self, ref: TaskRef) -> str:
        return ref.output_uri or os.path.join(self._dir, f"{ref.task_id}.wav")

    def _move_audio(self, ref: TaskRef, dest: Path) -> None:
        """Move the finished piece of ``ref`` to ``dest`` and forget its task."""
        dest = Path(dest)
        try:
            move_into_place(Path(self._audio_path(ref)), dest)
        except OSError as e:
            raise EngineError(f"{dest}: cannot write audio: {e.strerror or e}") from e
        with self._lock:
            self._tasks.pop(ref.task_id, None)

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the caller may run threads, and a forked copy of a
            # process with threads can deadlock.
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=self._initializer,
                initargs=self._initargs,
            )
        return self._pool

    def _drop_pool(self, kill: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            workers = list(pool._processes.values()) if pool._processes else []
            pool.shutdown(wait=False, cancel_futures=True)
            for w in workers:  # they ignore SIGINT and SIGTERM
                if w.is_alive():
                    w.kill()
            for w in workers:
                w.join(timeout=10)
        pool.shutdown(wait=True, cancel_futures=True)

    def _future(self, ref: TaskRef) -> Future[R]:
        with self._lock:
            fut = self._tasks.get(ref.task_id)
        if fut is None:
            raise TaskFailed(
                f"unknown {self.worker_name} task {ref.task_id}", reason="unknown task"
            )
        return fut


def leave_with_parent() -> None:
    """In a worker: leave when the parent dies (killed, crashed) rather than wait
    forever for work as an orphan."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns once the parent's end of the sentinel pipe closes
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def move_into_place(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest`` atomically, across file systems too."""
    try:
        os.replace(src, dest)
        return
    except OSError:
        if not src.exists():
            raise
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    src.unlink(missing_ok=True)
