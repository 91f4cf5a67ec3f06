"""What the pipeline asks of a state store: the interface every backend implements.

The SQLite store (``state.StateStore``, one file per state folder) is the default. A
store shared by many machines (PostgreSQL, ``pgstate.PgStateStore``) implements the
same interface with the same rules, so that nothing above this seam changes with it:

- **Named migrations.** The schema is built by migrations named ``m001_...``, ``m002_...``,
  applied in order, each in one transaction together with the row in ``_migrations`` that
  records it; a second process that finds one applied while it waited skips it. Every
  backend has the same names in the same order (its SQL may differ); a store records
  which it applied (``applied_migrations``).
- **Intent before a paid call.** ``mark_starting`` is committed BEFORE the engine's start
  call and returns the recorded time (``engine.recover(key, since)`` uses it after a
  crash); ``mark_submitted`` records the task right after the call returned;
  ``mark_not_started`` only when the call failed for sure. A piece is never started
  twice unless its first task is known not to exist.
- **Claims are leases.** With an owner, ``mark_starting`` claims the piece in the very
  transaction that writes the intent, and raises ``PieceBusy`` (writing nothing) when a
  live run holds it or its row shows another run's work. Claims are renewed by their
  ``LeaseOwner`` while it works, released at its end, and taken over once they expire
  (or, on the same host, once their process is gone): a dead worker's pieces are picked
  up by another, which then resumes or recovers as usual.
- **Every write is one transaction**; a write the store refuses (full, read-only, locked,
  damaged) raises ``StateError`` with one line saying what to do, and leaves the store as
  it was.
- **Quotas of a cluster.** A store shared by many machines also holds the rate limits
  and the in-flight bound that all its workers draw on (``rate_limiter``, ``slots``);
  one machine's store has none (None), and each process keeps its own.

Finished audio lives in the content-addressed cache (``cache``: the store's local folder,
or shared in S3, ``cache.py``); its size and sha256 are recorded once the piece is in it
and checked before reuse (``reusable``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from .cache import PieceCache
    from .ratelimit import RateLimiter, Slots
    from .state import BookRow, CacheCheck, ChunkRow, LeaseHolder, LeaseOwner, StatusSummary


class StateBackend(Protocol):
    """A state store: pieces (chunks), books, runs, claims, and the audio cache.

    Implementations are thread-safe (the books of one batch share one store) and safe
    between processes (and, for a shared backend, between machines)."""

    #: Whether workers on many machines share this store, and with it the quotas it
    #: holds (``rate_limiter``, ``slots``): PostgreSQL yes, SQLite no.
    cluster_wide: bool

    @property
    def dir(self) -> Path:
        """The local state folder (the web cache and temp files live under it)."""
        ...

    @property
    def cache_dir(self) -> Path:
        """The folder of the content-addressed audio cache."""
        ...

    @property
    def cache(self) -> PieceCache:
        """Where the finished pieces are (``cache.py``): the local folder, or S3."""
        ...

    @property
    def reset_note(self) -> str | None:
        """What ``reset=True`` did (one line for the user), or None."""
        ...

    # -- lifetime ------------------------------------------------------------------------

    def applied_migrations(self) -> list[str]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    # -- cache ---------------------------------------------------------------------------

    def cache_path(self, key: str, ext: str) -> Path: ...

    def cached(self, key: str, ext: str) -> Path | None: ...

    def check_cached(self, key: str, ext: str, row: ChunkRow | None) -> CacheCheck: ...

    def reusable(
        self,
        key: str,
        exts: Sequence[str],
        row: ChunkRow | None,
        found: list[tuple[str, str, int, str]],
    ) -> tuple[bool, list[tuple[Path, str]]]: ...

    def record_digests(
        self, entries: Sequence[tuple[str, str, int, str]], engine: str = ""
    ) -> None: ...

    # -- chunks: the intent and what came of it -----------------------------------------

    def chunk(self, key: str) -> ChunkRow | None: ...

    def chunks(self, keys: Sequence[str]) -> dict[str, ChunkRow]: ...

    def mark_starting(
        self,
        key: str,
        engine: str,
        chars: int = 0,
        price_kind: str = "",
        *,
        owner: LeaseOwner | None = None,
        keeps_tasks: bool = True,
    ) -> float: ...

    def mark_submitted(
        self,
        key: str,
        task_id: str,
        output_uri: str | None = None,
        billed_chars: int = 0,
        extra: dict[str, str] | None = None,
    ) -> None: ...

    def mark_not_started(self, key: str, error: str) -> None: ...

    def mark_done(
        self,
        key: str,
        cache_path: str | os.PathLike[str],
        engine: str = "",
        chars: int = 0,
        *,
        digest: tuple[int, str] | None = None,
        marks_digest: tuple[int, str] | None = None,
        owner: LeaseOwner | None = None,
    ) -> None: ...

    def mark_failed(self, key: str, error: str) -> None: ...

    # -- leases --------------------------------------------------------------------------

    def claim_piece(self, key: str, owner: LeaseOwner) -> LeaseHolder | None: ...

    def piece_holders(self, keys: Sequence[str], owner: LeaseOwner) -> dict[str, LeaseHolder]: ...

    def claim_output(
        self,
        out_path: str | os.PathLike[str],
        source_path: str | os.PathLike[str],
        owner: LeaseOwner,
    ) -> LeaseHolder | None: ...

    def book_holders(
        self, source_path: str | os.PathLike[str], owner: LeaseOwner
    ) -> list[LeaseHolder]: ...

    def renew_leases(self, owner: LeaseOwner) -> None: ...

    def release_leases(self, owner: LeaseOwner) -> None: ...

    # -- quotas shared by the workers of a cluster -----------------------------------------

    def rate_limiter(
        self,
        name: str,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RateLimiter | None:
        """The token bucket ``name`` (``rate`` per second, ``burst`` at most) shared by
        every process on this store, or None when the store is one machine's (each
        process keeps its own). ``clock``: the bucket's clock (None: the store's)."""
        ...

    def slots(self, name: str, limit: int, own: Slots) -> Slots | None:
        """At most ``limit`` slots ``name`` held at once by every process on this store
        (each also within its ``own``), or None when the store is one machine's. Held
        slots are renewed with the leases; a dead process's expire with them."""
        ...

    # -- books and runs ------------------------------------------------------------------

    def book(self, source_path: str | os.PathLike[str]) -> BookRow | None: ...

    def books(self) -> list[BookRow]: ...

    def upsert_book(
        self,
        source_path: str | os.PathLike[str],
        *,
        source_hash: str,
        options_hash: str,
        title: str,
        status: str,
    ) -> int: ...

    def set_book_chunks(self, book_id: int, chunks: Sequence[tuple[str, int]]) -> None: ...

    def book_chunk_keys(self, book_id: int) -> list[str]: ...

    def finish_book(
        self,
        book_id: int,
        *,
        status: str,
        out_path: str | os.PathLike[str] | None = None,
        outputs: Sequence[str | os.PathLike[str]] = (),
        output_size: int | None = None,
        output_mtime: float | None = None,
        source_hash: str | None = None,
        options_hash: str | None = None,
    ) -> None: ...

    def start_run(self, book_id: int | None) -> int: ...

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        chunks_total: int = 0,
        chunks_cached: int = 0,
        chunks_submitted: int = 0,
        billed_chars: int = 0,
        error: str | None = None,
    ) -> None: ...

    def last_run_errors(self) -> dict[int, str]: ...

    # -- reports and housekeeping --------------------------------------------------------

    def summary(self) -> StatusSummary: ...

    def gc(self, *, dry_run: bool = False) -> tuple[int, int]: ...
