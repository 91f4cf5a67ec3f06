"""Batch: every document of a folder into an output folder, several books at a time,
one state store and one Polly quota shared by all. A book that fails is reported in
its item; the others are still delivered.

    items = batch("books/", "out/", ConvertOptions(), jobs=4)
    [i.error for i in items if i.error]

With ``cluster`` (``"tcp://HOST:8786"`` or ``"local:N"``) the books run as tasks on a
Dask cluster's workers instead (``cluster.py``), each opening the shared store and
cache by URL (``shared``); without it, a thread pool of this process runs them.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import AudiobookError
from .hooks import ConvertResult, Hooks
from .options import ConvertOptions
from .pipeline import convert
from .scheduler import Limiters, make_limiters
from .state import open_state
from .statebase import StateBackend

log = logging.getLogger(__name__)

BATCH_SUFFIXES = (".epub", ".pdf", ".html", ".htm", ".xhtml", ".md", ".markdown", ".txt")


@dataclass(frozen=True)
class BatchItem:
    source: Path
    out: Path
    result: ConvertResult | None = None
    error: str | None = None
    exit_code: int = 0


@dataclass(frozen=True)
class Shared:
    """Where the workers of a cluster find the state and the cache: the store's URL
    (``postgresql://...``; None: SQLite in ``state_dir``), the cache's
    (``s3://BUCKET/PREFIX``; None: the folder in ``state_dir``) and the state folder
    (None: each worker's default), as ``state.open_state`` takes them."""

    state_url: str | None = None
    cache_url: str | None = None
    state_dir: str | None = None


class BookWarnings(Hooks):
    """A book's warnings, to ``on_warning`` (under the batch's lock)."""

    def __init__(
        self, src: Path, on_warning: Callable[[Path, str], None] | None, lock: threading.Lock
    ) -> None:
        self.src = src
        self.say = on_warning
        self.lock = lock

    def on_warning(self, message: str) -> None:
        if self.say is not None:
            with self.lock:
                self.say(self.src, message)


def convert_item(
    src: Path,
    out: Path,
    opts: ConvertOptions,
    hooks: Hooks,
    *,
    store: StateBackend,
    limiters: Limiters,
) -> BatchItem:
    """One book of a batch: its result, or its error (one line, with its exit code)."""
    try:
        return BatchItem(src, out, convert(src, out, opts, hooks, store=store, limiters=limiters))
    except AudiobookError as e:
        return BatchItem(src, out, None, " ".join(str(e).split()), e.exit_code)
    except Exception as e:
        log.exception("%s: unexpected error", src)
        return BatchItem(src, out, None, f"{type(e).__name__}: {e}", 1)


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
    store: StateBackend | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    cluster: str | None = None,
    shared: Shared | None = None,
    on_note: Callable[[str], None] | None = None,
) -> list[BatchItem]:
    """Convert every document of ``in_dir`` into ``out_dir``, ``jobs`` books at a time,
    sharing one state store (``store``, else one opened in ``state_dir``) and one set
    of rate limiters (one Polly quota). A book that
    fails is reported in its item; the others are still delivered. Items come back in
    input order; ``on_book`` is called as each finishes.

    ``cluster``: run the books on a Dask cluster (``cluster.run_books``), whose workers
    open the store and cache of ``shared`` (``store`` is then not used); ``on_note``
    hears of the cluster."""
    opts = opts or ConvertOptions()
    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    pairs = batch_outputs(Path(in_dir), out_path, opts.fmt)
    if cluster is not None:
        from .cluster import run_books

        if shared is None:
            shared = Shared(state_dir=os.fspath(state_dir) if state_dir is not None else None)
        return run_books(
            cluster, pairs, opts, shared, on_book=on_book, on_warning=on_warning, on_note=on_note
        )
    if opts.config.workers == 0 and opts.engine in ("local", "piper", "espeak"):
        # Each book's local engine gets its share of the cores.
        share = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(pairs) or 1)))
        opts = dataclasses.replace(opts, config=dataclasses.replace(opts.config, workers=share))
    own_store = store is None
    store = store or open_state(state_dir)
    limiters = make_limiters(opts, store)
    lock = threading.Lock()

    def one(src: Path, out: Path) -> BatchItem:
        item = convert_item(
            src, out, opts, BookWarnings(src, on_warning, lock), store=store, limiters=limiters
        )
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
        if own_store:
            store.close()
