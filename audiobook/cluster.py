"""Books on a Dask cluster: ``audiobook batch --cluster tcp://HOST:8786`` (or ``local:N``).

The one module that speaks to Dask distributed. Each book is one task, submitted to the
cluster's scheduler, which gives it to a free worker; a worker that dies (its process
killed, its machine gone) has its tasks given to another by the scheduler, and that one
resumes the book from the shared state as any run does after a crash (claims of the dead
worker are taken over, its paid tasks followed or recovered, never started again).

    with connect("local:2") as client:          # or "tcp://scheduler:8786"
        items = run_books_on(client, pairs, opts, Shared(state_url=..., cache_url=...))

On the worker, ``book_task`` opens the store and the cache by URL (``batch.Shared``),
converts the book with ``pipeline.convert`` as on one machine, and returns its
``BatchItem`` (with the book's warnings) as a value; the outputs are written where the
batch names them, so the input and output folders are the same paths on every worker
(one machine, or a shared filesystem). A shared store (PostgreSQL) holds one Polly
quota for every worker; with a store of one machine, the books of one worker process
share one set of rate limiters. The scheduler's dashboard shows the tasks
(``dashboard_link``).

Within a book the work stays on its worker: the chapter encodes of the stitch read the
book's decoded pieces, which live on that worker's disk, and a second machine would
first have to fetch them; books, not chapters, are what a cluster has many of.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .batch import BatchItem, BookWarnings, Shared, convert_item
from .errors import AudiobookError, ConfigError, one_line
from .options import ConvertOptions
from .scheduler import Limiters, make_limiters
from .state import open_state
from .statebase import StateBackend

LOCAL = "local:"
# A worker must be able to start processes of its own (the local engines run on a pool
# of them), which Python forbids to a daemonic process: Dask's default for its workers.
WORKER_DAEMON = "distributed.worker.daemon"
WORKER_DAEMON_ENV = "DASK_DISTRIBUTED__WORKER__DAEMON=False"
# What a batch item says when the cluster could not run a book's task (its workers died
# more often than the scheduler allows, the scheduler went away).
LOST_EXIT_CODE = 1

_limiters: dict[str, Limiters] = {}
_limiters_lock = threading.Lock()


def _book_limiters(opts: ConvertOptions, store: StateBackend) -> Limiters:
    """The rate limiters for ``opts``' engine and limits: a store shared by the
    cluster's machines (PostgreSQL) holds one quota for all their workers; with a store
    of one machine (SQLite), this worker process's own, shared by the books it converts
    at once (one quota per process, as in a batch)."""
    if store.cluster_wide:
        return make_limiters(opts, store)
    key = repr((opts.engine, opts.engine_options, opts.config))
    with _limiters_lock:
        if key not in _limiters:
            _limiters[key] = make_limiters(opts)
        return _limiters[key]


def book_task(
    src: str, out: str, opts: ConvertOptions, shared: Shared
) -> tuple[BatchItem, tuple[str, ...]]:
    """One book, on a worker: converted with the shared store and cache, its item and
    its warnings returned as values."""
    source, dest = Path(src), Path(out)
    if multiprocessing.current_process().daemon and opts.engine != "polly":
        return BatchItem(
            source,
            dest,
            None,
            f"the {opts.engine} engine runs processes of its own, which this worker may not "
            f"start: start the workers with {WORKER_DAEMON_ENV} in their environment",
            ConfigError.exit_code,
        ), ()
    warnings: list[str] = []
    hooks = BookWarnings(source, lambda _src, msg: warnings.append(msg), threading.Lock())
    try:
        store = open_state(shared.state_dir, url=shared.state_url, cache=shared.cache_url)
    except AudiobookError as e:
        return BatchItem(source, dest, None, one_line(e), e.exit_code), ()
    with store:
        item = convert_item(
            source, dest, opts, hooks, store=store, limiters=_book_limiters(opts, store)
        )
    return item, tuple(warnings)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise ConfigError(
            "--cluster needs Dask distributed (pip install 'audiobook[cluster]')"
        ) from e
    return distributed


def local_workers(cluster: str) -> int | None:
    """N of ``local:N`` (None for a scheduler's address, ``tcp://HOST:PORT``);
    ConfigError when N is not a positive number, or the address has no protocol."""
    if not cluster.startswith(LOCAL):
        if "://" not in cluster:
            raise ConfigError(f"--cluster {cluster}: give a scheduler (tcp://HOST:8786) or local:N")
        return None
    text = cluster[len(LOCAL) :]
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"--cluster {cluster}: local:N takes a number of workers, N >= 1")
    return int(text)


@contextmanager
def connect(cluster: str, *, timeout: float = 30.0) -> Iterator[Any]:
    """A Dask client of ``cluster``: ``local:N`` starts a LocalCluster of N process
    workers (one thread each) for the call; ``tcp://HOST:PORT`` connects to a running
    scheduler. ConfigError on one line when there is none."""
    distributed = _distributed()
    import dask

    # Dask's own INFO lines (workers starting, closing) are not the user's business.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    n = local_workers(cluster)
    if n is not None:
        with (
            dask.config.set({WORKER_DAEMON: False}),
            distributed.LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                host="127.0.0.1",
            ) as local,
            distributed.Client(local) as client,
        ):
            yield client
        return
    try:
        client = distributed.Client(cluster, timeout=timeout)
    except (OSError, TimeoutError) as e:
        raise ConfigError(f"--cluster {cluster}: cannot reach the scheduler ({one_line(e)})") from e
    with client:
        yield client


def run_books_on(
    client: Any,
    pairs: Sequence[tuple[Path, Path]],
    opts: ConvertOptions,
    shared: Shared,
    *,
    on_book: Callable[[BatchItem], None] | None = None,
    on_warning: Callable[[Path, str], None] | None = None,
) -> list[BatchItem]:
    """Every book of ``pairs`` (source, output) as one task on ``client``'s cluster;
    items in input order, ``on_warning`` and ``on_book`` called as each finishes."""
    distributed = _distributed()
    run = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            book_task,
            str(src.absolute()),
            str(out.absolute()),
            opts,
            shared,
            key=f"audiobook-{run}-{i}-{src.name}",
            pure=False,
        ): i
        for i, (src, out) in enumerate(pairs)
    }
    items: list[BatchItem | None] = [None] * len(pairs)
    for fut in distributed.as_completed(futures):
        i = futures[fut]
        src, out = pairs[i]
        try:
            item, warnings = fut.result()
        except Exception as e:  # noqa: BLE001 - KilledWorker, a lost scheduler: the task is lost
            item, warnings = (
                BatchItem(src, out, None, f"the cluster lost the book: {one_line(e)}", 1),
                (),
            )
        item = BatchItem(src, out, item.result, item.error, item.exit_code)
        for message in warnings:
            if on_warning is not None:
                on_warning(src, message)
        if on_book is not None:
            on_book(item)
        items[i] = item
    return [it for it in items if it is not None]


def run_books(
    cluster: str,
    pairs: Sequence[tuple[Path, Path]],
    opts: ConvertOptions,
    shared: Shared,
    *,
    on_book: Callable[[BatchItem], None] | None = None,
    on_warning: Callable[[Path, str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> list[BatchItem]:
    """``run_books_on`` a client of ``cluster`` (``connect``); ``on_note`` hears where
    the cluster is, how many workers it has and its dashboard."""
    if local_workers(cluster) is None and shared.state_url is None:
        raise ConfigError(
            f"--cluster {cluster}: the workers of a cluster share their state through "
            "--state postgresql://... (each machine would keep its own SQLite store)"
        )
    if local_workers(cluster) is None and shared.cache_url is None and on_note is not None:
        on_note(
            f"warning: --cluster {cluster} without --cache s3://...: each worker keeps the "
            "pieces it makes in its own --state-dir, and another worker that needs them "
            "synthesizes them again (unless that folder is on a filesystem they share)"
        )
    with connect(cluster) as client:
        if on_note is not None:
            workers = len(client.scheduler_info().get("workers", {}))
            dashboard = client.dashboard_link if _has_dashboard() else "none (needs bokeh)"
            on_note(f"cluster {cluster}: {workers} worker(s), dashboard {dashboard}")
        return run_books_on(client, pairs, opts, shared, on_book=on_book, on_warning=on_warning)


def _has_dashboard() -> bool:
    """Whether the scheduler here can serve its dashboard (bokeh is installed)."""
    return importlib.util.find_spec("bokeh") is not None
