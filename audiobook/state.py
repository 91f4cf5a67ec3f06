"""The state store: one SQLite file and a content-addressed audio cache per state folder.

Layout of a state folder (default ``$AUDIOBOOK_STATE_DIR``, else
``$XDG_DATA_HOME/audiobook``, else ``~/.local/share/audiobook``)::

    state.sqlite                 the database (WAL mode)
    cache/ab/<key>.<ext>         finished audio of one chunk, named by its content key

Tables (created by named migrations recorded in ``_migrations``):

    chunks       one row per content key: status pending|submitted|done|failed, engine,
                 task_id, output_uri, cache path, billed_chars, attempts, started_at
                 (the "started" intent, written BEFORE the engine's start call),
                 submitted_at, done_at, last_error
    books        one row per source path: source hash, options hash, output path, output
                 size and mtime, last run, status
    book_chunks  a book's latest chunk keys in order (what ``gc`` keeps)
    runs         one row per conversion: book, start, end, status, counts
    piece_leases a piece claimed by the run working on it (owner, host, pid, expiry);
                 written in the transaction of the start intent, dropped when done
    book_locks   an output being converted into, by which run (same fields)

The cache is the truth about finished audio: a file at ``cache/ab/<key>.<ext>`` is
written whole (temp file, then ``os.replace``) and only ever holds that key's audio, so
it is reused even when its row is gone (after ``--reset-state``). Every write is one
transaction. A corrupt or locked database raises ``StateError`` with the way out:
``--reset-state`` moves the old file aside as ``state.sqlite.bad-<time>``; it never
deletes it, and never deletes cached audio.

Runs at once on one store (two terminals, ``make -j``, a batch) share the work through
leases: a run claims a piece before its paid call, in the very transaction that records
the intent, and renews its claims while it works (``LeaseOwner``). Another run that finds
a piece claimed by a live run does not start it: it follows that run's task or waits
for the audio in the cache. A claim whose run died (its process is gone from this host,
or it was not renewed for ``LEASE_TTL`` seconds) can be taken over, and then the usual
resume applies (a recorded task is polled, an unrecorded one recovered).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from .errors import StateError

log = logging.getLogger(__name__)

DB_NAME = "state.sqlite"
STATUSES = ("pending", "submitted", "done", "failed")
# A claim not renewed for this long is taken to belong to a run that died (on another
# host, where its process cannot be looked for); a working run renews every quarter.
LEASE_TTL = 60.0
HOST = socket.gethostname()


def default_state_dir() -> Path:
    """``$AUDIOBOOK_STATE_DIR``, else ``$XDG_DATA_HOME/audiobook``, else
    ``~/.local/share/audiobook``."""
    env = os.environ.get("AUDIOBOOK_STATE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "audiobook"


# --- migrations -----------------------------------------------------------------------

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register a migration under its function name; they run in definition order, each
    in its own transaction together with the row that records it."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE chunks (
            key TEXT PRIMARY KEY,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'submitted', 'done', 'failed')),
            engine TEXT NOT NULL DEFAULT '',
            task_id TEXT,
            output_uri TEXT,
            cache_path TEXT,
            chars INTEGER NOT NULL DEFAULT 0,
            billed_chars INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            started_at REAL,
            submitted_at REAL,
            done_at REAL,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX chunks_status ON chunks (status)")
    db.execute(
        """CREATE TABLE books (
            id INTEGER PRIMARY KEY,
            source_path TEXT NOT NULL UNIQUE,
            source_hash TEXT NOT NULL DEFAULT '',
            options_hash TEXT NOT NULL DEFAULT '',
            title TEXT NOT NULL DEFAULT '',
            output_path TEXT,
            output_size INTEGER,
            output_mtime REAL,
            last_run REAL,
            status TEXT NOT NULL DEFAULT 'new'
        )"""
    )
    db.execute(
        """CREATE TABLE book_chunks (
            book_id INTEGER NOT NULL REFERENCES books (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            key TEXT NOT NULL,
            chapter_idx INTEGER NOT NULL,
            PRIMARY KEY (book_id, seq)
        )"""
    )
    db.execute("CREATE INDEX book_chunks_key ON book_chunks (key)")
    db.execute(
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            book_id INTEGER REFERENCES books (id) ON DELETE SET NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            status TEXT NOT NULL DEFAULT 'running',
            chunks_total INTEGER NOT NULL DEFAULT 0,
            chunks_cached INTEGER NOT NULL DEFAULT 0,
            chunks_submitted INTEGER NOT NULL DEFAULT 0,
            billed_chars INTEGER NOT NULL DEFAULT 0,
            error TEXT
        )"""
    )


@migration
def m002_chunk_engine_kind(db: sqlite3.Connection) -> None:
    # Which Polly engine (standard, neural...) billed a chunk: prices differ per kind.
    db.execute("ALTER TABLE chunks ADD COLUMN price_kind TEXT NOT NULL DEFAULT ''")


@migration
def m003_chunk_task_extra(db: sqlite3.Connection) -> None:
    # The engine's own notes on a task (TaskRef.extra as JSON: S3 key, marks task id).
    db.execute("ALTER TABLE chunks ADD COLUMN task_extra TEXT NOT NULL DEFAULT '{}'")


@migration
def m004_book_outputs(db: sqlite3.Connection) -> None:
    # A book's outputs as rows (and the output it was asked for as a column) instead of
    # a JSON document in a column named output_path.
    db.execute("ALTER TABLE books ADD COLUMN out_path TEXT")
    db.execute(
        """CREATE TABLE book_outputs (
            book_id INTEGER NOT NULL REFERENCES books (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            path TEXT NOT NULL,
            PRIMARY KEY (book_id, seq)
        )"""
    )
    for book_id, doc in db.execute(
        "SELECT id, output_path FROM books WHERE output_path IS NOT NULL"
    ).fetchall():
        try:
            recorded = json.loads(doc)
            out, outputs = recorded.get("out"), list(recorded.get("outputs", []))
        except (ValueError, AttributeError):
            out, outputs = doc, [doc]  # a plain path
        db.execute("UPDATE books SET out_path = ? WHERE id = ?", (out, book_id))
        db.executemany(
            "INSERT INTO book_outputs (book_id, seq, path) VALUES (?, ?, ?)",
            [(book_id, i, str(p)) for i, p in enumerate(outputs)],
        )
    db.execute("ALTER TABLE books DROP COLUMN output_path")


# --- rows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkRow:
    key: str
    status: str
    engine: str
    task_id: str | None
    output_uri: str | None
    cache_path: str | None
    chars: int
    billed_chars: int
    attempts: int
    started_at: float | None
    submitted_at: float | None
    done_at: float | None
    last_error: str | None
    price_kind: str = ""
    task_extra: str = "{}"

    @property
    def extra(self) -> dict[str, str]:
        try:
            value = json.loads(self.task_extra or "{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dataclass(frozen=True)
class BookRow:
    id: int
    source_path: str
    source_hash: str
    options_hash: str
    title: str
    out_path: str | None  # the output asked for (a file, or a folder of chapters)
    output_size: int | None  # of all outputs together, when the book was done
    output_mtime: float | None  # the newest output's
    last_run: float | None
    status: str
    outputs: tuple[str, ...] = ()  # every file written, in order


@dataclass(frozen=True)
class StatusSummary:
    path: Path
    books: tuple[BookRow, ...]
    chunks: dict[str, int]  # status -> count
    billed_chars: int
    billed_by_kind: dict[str, int]  # price kind ("standard", "neural", "" = local) -> chars
    cache_files: int
    cache_bytes: int


_CHUNK_COLS = (
    "key, status, engine, task_id, output_uri, cache_path, chars, billed_chars, attempts, "
    "started_at, submitted_at, done_at, last_error, price_kind, task_extra"
)
_BOOK_COLS = (
    "id, source_path, source_hash, options_hash, title, out_path, output_size, "
    "output_mtime, last_run, status"
)


def _state_error(path: Path, e: BaseException) -> StateError:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "locked" in msg or "busy" in msg:
        return StateError(
            f"{path}: state store is locked by another process ({msg}); wait for it to "
            "finish, or use --state-dir DIR for a separate store"
        )
    return StateError(
        f"{path}: state store is unreadable ({msg}); run again with --reset-state to "
        "move it aside (cached audio is kept)"
    )


# --- leases ---------------------------------------------------------------------------


@migration
def m006_piece_leases(db: sqlite3.Connection) -> None:
    # Claims of runs working at once on one store: a piece being synthesized, and an
    # output being written. No reference to chunks: a piece is claimed before its row
    # may exist.
    db.execute(
        """CREATE TABLE piece_leases (
            key TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            acquired_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX piece_leases_owner ON piece_leases (owner)")
    db.execute(
        """CREATE TABLE book_locks (
            out_path TEXT PRIMARY KEY,
            source_path TEXT NOT NULL,
            owner TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            acquired_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX book_locks_source ON book_locks (source_path)")
    db.execute("CREATE INDEX book_locks_owner ON book_locks (owner)")


@dataclass(frozen=True)
class LeaseHolder:
    """The run that holds a claim: its owner id, host and process id."""

    owner: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float

    def where(self) -> str:
        """ "pid 1234", or "pid 1234 on otherhost"."""
        return f"pid {self.pid}" + ("" if self.host == HOST else f" on {self.host}")


class PieceBusy(Exception):
    """``mark_starting`` wrote nothing: another live run holds the piece (``holder``),
    or the piece was not this run's and its row shows another run's work (a recorded
    task, an unrecorded start, finished audio; ``holder`` None). The caller looks again
    (``claim_piece``) and follows, resumes or takes the audio from the cache."""

    def __init__(self, key: str, holder: LeaseHolder | None) -> None:
        super().__init__(key)
        self.key = key
        self.holder = holder


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as alive)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill would end the process there: trust the expiry
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, it is someone else's
        return True
    return True


def _holder(row: Sequence[Any] | None) -> LeaseHolder | None:
    return LeaseHolder(str(row[0]), str(row[1]), int(row[2]), row[3], row[4]) if row else None


_LEASE_COLS = "owner, host, pid, acquired_at, expires_at"
_OWNERS: set[str] = set()  # the owner ids of this process's runs


class LeaseOwner:
    """One run's identity for its claims (a fresh id, this host, this process). As a
    context manager it renews them in the background every quarter of ``ttl`` while
    the run works, and gives them all up at the end (finished, failed or interrupted:
    another run may then take over, resuming what this one left)."""

    def __init__(self, store: StateStore, *, ttl: float = LEASE_TTL) -> None:
        self.store = store
        self.ttl = ttl
        self.id = uuid.uuid4().hex
        self.host = HOST
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _OWNERS.add(self.id)

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._renew, name="audiobook-leases", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        _OWNERS.discard(self.id)
        try:
            self.store.release_leases(self)
        except (StateError, sqlite3.Error) as e:
            # Not fatal: the claims die with this process (or expire) all the same.
            log.debug("could not give up the claims of this run: %s", e)

    def claim_output(
        self,
        out_path: str | os.PathLike[str],
        source_path: str | os.PathLike[str],
        on_wait: Callable[[LeaseHolder], None],
        *,
        poll: float = 0.5,
    ) -> bool:
        """Claim the output ``out_path`` of the book ``source_path``, first waiting while
        another live run converts into it (``on_wait`` hears of that run once). True
        when it waited: the other run may have made the output meanwhile."""
        waited = False
        while (holder := self.store.claim_output(out_path, source_path, self)) is not None:
            if not waited:
                on_wait(holder)
                waited = True
            time.sleep(poll)
        return waited

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.store.renew_leases(self)
            except (StateError, sqlite3.Error) as e:
                log.debug("could not renew the claims of this run: %s", e)


class StateStore:
    """The SQLite state of one state folder. Thread-safe: one connection behind a lock,
    so that the books of one batch run can share it; other processes share it through
    SQLite's own locking (WAL, busy timeout)."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        reset: bool = False,
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.path = self.dir / DB_NAME
        self.cache_dir = self.dir / "cache"
        self.clock = clock
        self.moved_aside: Path | None = None
        self._lock = threading.RLock()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StateError(f"{self.dir}: cannot create the state folder ({e.strerror})") from e
        if reset:
            self.moved_aside = reset_state(self.dir)
        try:
            self.db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise _state_error(self.path, e) from e
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.Error as e:
            self.db.close()
            raise _state_error(self.path, e) from e

    # -- plumbing ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); rolled back on error."""
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise _state_error(self.path, e) from e
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as e:
                self.db.execute("ROLLBACK")
                raise _state_error(self.path, e) from e

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self.db.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as e:
                raise _state_error(self.path, e) from e

    def _migrate(self) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)"
        )
        done = {r[0] for r in self.db.execute("SELECT name FROM _migrations")}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            with self.transaction() as db:
                # Another process may have applied it while we waited for the lock.
                if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                    continue
                fn(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, self.clock()))

    def applied_migrations(self) -> list[str]:
        return [r[0] for r in self._query("SELECT name FROM _migrations ORDER BY rowid")]

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- cache -------------------------------------------------------------------------

    def cache_path(self, key: str, ext: str) -> Path:
        """Where the audio of ``key`` lives: ``cache/<first two hex>/<key>.<ext>``."""
        return self.cache_dir / key[:2] / f"{key}.{ext}"

    def cached(self, key: str, ext: str) -> Path | None:
        p = self.cache_path(key, ext)
        return p if p.is_file() else None

    # -- chunks ------------------------------------------------------------------------

    def chunk(self, key: str) -> ChunkRow | None:
        rows = self._query(f"SELECT {_CHUNK_COLS} FROM chunks WHERE key = ?", (key,))
        return ChunkRow(*rows[0]) if rows else None

    def chunks(self, keys: Sequence[str]) -> dict[str, ChunkRow]:
        out: dict[str, ChunkRow] = {}
        for i in range(0, len(keys), 500):
            part = list(keys[i : i + 500])
            marks = ",".join("?" * len(part))
            for r in self._query(f"SELECT {_CHUNK_COLS} FROM chunks WHERE key IN ({marks})", part):
                out[r[0]] = ChunkRow(*r)
        return out

    def _ensure_chunk(self, db: sqlite3.Connection, key: str, engine: str, chars: int) -> None:
        now = self.clock()
        db.execute(
            "INSERT INTO chunks (key, engine, chars, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, engine, chars, now, now),
        )

    def mark_starting(
        self,
        key: str,
        engine: str,
        chars: int = 0,
        price_kind: str = "",
        *,
        owner: LeaseOwner | None = None,
        keeps_tasks: bool = True,
    ) -> float:
        """Record the intent to start a task for ``key`` BEFORE the start call; returns the
        recorded time, which ``engine.recover(key, since)`` uses after a crash.

        With ``owner``, the piece is claimed for it in the same transaction. Nothing is
        written, and ``PieceBusy`` raised, when another live run holds the claim, or when
        the claim was not already ``owner``'s and the row shows work of another run: a
        recorded task or an unrecorded start (only where tasks outlive their process,
        ``keeps_tasks``), or finished audio."""
        now = self.clock()
        with self.transaction() as db:
            if owner is not None:
                held = self._piece_holder(db, key)
                if held is not None and held.owner != owner.id and self._alive(held, now):
                    raise PieceBusy(key, held)
                if held is None or held.owner != owner.id:
                    row = db.execute(
                        "SELECT status, task_id, started_at FROM chunks WHERE key = ?", (key,)
                    ).fetchone()
                    if row is not None and (
                        row[0] == "done"
                        or (keeps_tasks and row[0] == "submitted" and row[1])
                        or (keeps_tasks and row[0] == "pending" and row[2] is not None)
                    ):
                        raise PieceBusy(key, None)
                self._put_piece_lease(db, key, owner, now)
            self._ensure_chunk(db, key, engine, chars)
            db.execute(
                "UPDATE chunks SET status = 'pending', engine = ?, task_id = NULL, "
                "output_uri = NULL, started_at = ?, attempts = attempts + 1, price_kind = ?, "
                "updated_at = ? WHERE key = ?",
                (engine, now, price_kind, now, key),
            )
        return now

    def mark_submitted(
        self,
        key: str,
        task_id: str,
        output_uri: str | None = None,
        billed_chars: int = 0,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Record the task id right after the start call returned. ``billed_chars`` adds
        to what the key has cost so far (a failed task that was billed stays counted)."""
        now = self.clock()
        with self.transaction() as db:
            db.execute(
                "UPDATE chunks SET status = 'submitted', task_id = ?, output_uri = ?, "
                "billed_chars = billed_chars + ?, submitted_at = ?, last_error = NULL, "
                "task_extra = ?, updated_at = ? WHERE key = ?",
                (task_id, output_uri, billed_chars, now, json.dumps(extra or {}), now, key),
            )

    def mark_not_started(self, key: str, error: str) -> None:
        """The start call failed for sure (an error came back): no task exists."""
        now = self.clock()
        with self.transaction() as db:
            db.execute(
                "UPDATE chunks SET started_at = NULL, last_error = ?, updated_at = ? "
                "WHERE key = ? AND status = 'pending'",
                (error, now, key),
            )

    def mark_done(
        self,
        key: str,
        cache_path: str | os.PathLike[str],
        engine: str = "",
        chars: int = 0,
        *,
        owner: LeaseOwner | None = None,
    ) -> None:
        """The piece's audio is in the cache; ``owner``'s claim on it ends here."""
        now = self.clock()
        with self.transaction() as db:
            self._ensure_chunk(db, key, engine, chars)
            db.execute(
                "UPDATE chunks SET status = 'done', cache_path = ?, done_at = ?, "
                "last_error = NULL, updated_at = ? WHERE key = ?",
                (os.fspath(cache_path), now, now, key),
            )
            if owner is not None:
                db.execute("DELETE FROM piece_leases WHERE key = ? AND owner = ?", (key, owner.id))

    def mark_failed(self, key: str, error: str) -> None:
        now = self.clock()
        with self.transaction() as db:
            db.execute(
                "UPDATE chunks SET status = 'failed', last_error = ?, started_at = NULL, "
                "updated_at = ? WHERE key = ?",
                (error, now, key),
            )

    # -- leases ------------------------------------------------------------------------

    @staticmethod
    def _alive(holder: LeaseHolder, now: float) -> bool:
        """A claim counts while it is renewed and its run, if on this host, exists: its
        process, or (in this very process, whose id a dead run of an earlier container
        or boot may have had) one of this process's owners."""
        if holder.expires_at <= now:
            return False
        if holder.host != HOST:
            return True
        if holder.pid == os.getpid():
            return holder.owner in _OWNERS
        return pid_alive(holder.pid)

    def _piece_holder(self, db: sqlite3.Connection, key: str) -> LeaseHolder | None:
        return _holder(
            db.execute(f"SELECT {_LEASE_COLS} FROM piece_leases WHERE key = ?", (key,)).fetchone()
        )

    def _put_piece_lease(
        self, db: sqlite3.Connection, key: str, owner: LeaseOwner, now: float
    ) -> None:
        db.execute(
            "INSERT INTO piece_leases (key, owner, host, pid, acquired_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "acquired_at = CASE WHEN piece_leases.owner = excluded.owner "
            "THEN piece_leases.acquired_at ELSE excluded.acquired_at END, "
            "owner = excluded.owner, host = excluded.host, pid = excluded.pid, "
            "expires_at = excluded.expires_at",
            (key, owner.id, owner.host, owner.pid, now, now + owner.ttl),
        )

    def claim_piece(self, key: str, owner: LeaseOwner) -> LeaseHolder | None:
        """Claim ``key`` for ``owner`` (or renew its claim): None when it is ``owner``'s
        now, else the live run that holds it. A claim whose run died is taken over."""
        now = self.clock()
        with self.transaction() as db:
            held = self._piece_holder(db, key)
            if held is not None and held.owner != owner.id and self._alive(held, now):
                return held
            self._put_piece_lease(db, key, owner, now)
        return None

    def piece_holders(self, keys: Sequence[str], owner: LeaseOwner) -> dict[str, LeaseHolder]:
        """The live runs other than ``owner`` that hold any of ``keys`` (read only)."""
        now = self.clock()
        out: dict[str, LeaseHolder] = {}
        for i in range(0, len(keys), 500):
            part = list(keys[i : i + 500])
            marks = ",".join("?" * len(part))
            for r in self._query(
                f"SELECT key, {_LEASE_COLS} FROM piece_leases WHERE key IN ({marks})", part
            ):
                held = _holder(r[1:])
                if held is not None and held.owner != owner.id and self._alive(held, now):
                    out[r[0]] = held
        return out

    def claim_output(
        self,
        out_path: str | os.PathLike[str],
        source_path: str | os.PathLike[str],
        owner: LeaseOwner,
    ) -> LeaseHolder | None:
        """Claim the output ``out_path`` (of the book ``source_path``) for ``owner``: None
        when it is ``owner``'s now, else the live run converting into it."""
        now = self.clock()
        out = os.fspath(out_path)
        with self.transaction() as db:
            held = _holder(
                db.execute(
                    f"SELECT {_LEASE_COLS} FROM book_locks WHERE out_path = ?", (out,)
                ).fetchone()
            )
            if held is not None and held.owner != owner.id and self._alive(held, now):
                return held
            db.execute(
                "INSERT INTO book_locks (out_path, source_path, owner, host, pid, acquired_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (out_path) DO UPDATE SET "
                "source_path = excluded.source_path, owner = excluded.owner, "
                "host = excluded.host, pid = excluded.pid, acquired_at = excluded.acquired_at, "
                "expires_at = excluded.expires_at",
                (
                    out,
                    os.fspath(source_path),
                    owner.id,
                    owner.host,
                    owner.pid,
                    now,
                    now + owner.ttl,
                ),
            )
        return None

    def book_holders(
        self, source_path: str | os.PathLike[str], owner: LeaseOwner
    ) -> list[LeaseHolder]:
        """The live runs other than ``owner`` that were converting the book
        ``source_path`` (into any output) before ``owner`` claimed its output."""
        now = self.clock()
        rows = self._query(
            f"SELECT {_LEASE_COLS} FROM book_locks WHERE source_path = ? AND owner != ? "
            "AND acquired_at < (SELECT COALESCE(MIN(acquired_at), ?) FROM book_locks "
            "WHERE owner = ?) ORDER BY acquired_at",
            (os.fspath(source_path), owner.id, now, owner.id),
        )
        return [h for h in map(_holder, rows) if h is not None and self._alive(h, now)]

    def renew_leases(self, owner: LeaseOwner) -> None:
        """Push back the expiry of every claim of ``owner``."""
        expires = self.clock() + owner.ttl
        with self.transaction() as db:
            for table in ("piece_leases", "book_locks"):
                db.execute(
                    f"UPDATE {table} SET expires_at = ? WHERE owner = ?", (expires, owner.id)
                )

    def release_leases(self, owner: LeaseOwner) -> None:
        """Give up every claim of ``owner``."""
        with self.transaction() as db:
            for table in ("piece_leases", "book_locks"):
                db.execute(f"DELETE FROM {table} WHERE owner = ?", (owner.id,))

    # -- books -------------------------------------------------------------------------

    def book(self, source_path: str | os.PathLike[str]) -> BookRow | None:
        rows = self._query(
            f"SELECT {_BOOK_COLS} FROM books WHERE source_path = ?", (os.fspath(source_path),)
        )
        return self._book_row(rows[0]) if rows else None

    def books(self) -> list[BookRow]:
        rows = self._query(f"SELECT {_BOOK_COLS} FROM books ORDER BY id")
        return [self._book_row(r) for r in rows]

    def _book_row(self, row: tuple[Any, ...]) -> BookRow:
        outputs = self._query(
            "SELECT path FROM book_outputs WHERE book_id = ? ORDER BY seq", (row[0],)
        )
        book_id, source, source_hash, options_hash, title, out, size, mtime, last, status = row
        return BookRow(
            id=book_id,
            source_path=source,
            source_hash=source_hash,
            options_hash=options_hash,
            title=title,
            out_path=out,
            output_size=size,
            output_mtime=mtime,
            last_run=last,
            status=status,
            outputs=tuple(r[0] for r in outputs),
        )

    def upsert_book(
        self,
        source_path: str | os.PathLike[str],
        *,
        source_hash: str,
        options_hash: str,
        title: str,
        status: str,
    ) -> int:
        now = self.clock()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO books (source_path, source_hash, options_hash, title, last_run, "
                "status) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source_path) DO UPDATE SET "
                "source_hash = excluded.source_hash, options_hash = excluded.options_hash, "
                "title = excluded.title, last_run = excluded.last_run, status = excluded.status",
                (os.fspath(source_path), source_hash, options_hash, title, now, status),
            )
            row = db.execute(
                "SELECT id FROM books WHERE source_path = ?", (os.fspath(source_path),)
            ).fetchone()
        return int(row[0])

    def set_book_chunks(self, book_id: int, chunks: Sequence[tuple[str, int]]) -> None:
        """Replace the book's chunk list with ``(key, chapter_idx)`` pairs in order."""
        with self.transaction() as db:
            db.execute("DELETE FROM book_chunks WHERE book_id = ?", (book_id,))
            db.executemany(
                "INSERT INTO book_chunks (book_id, seq, key, chapter_idx) VALUES (?, ?, ?, ?)",
                [(book_id, i, k, c) for i, (k, c) in enumerate(chunks)],
            )

    def book_chunk_keys(self, book_id: int) -> list[str]:
        rows = self._query("SELECT key FROM book_chunks WHERE book_id = ? ORDER BY seq", (book_id,))
        return [r[0] for r in rows]

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
    ) -> None:
        with self.transaction() as db:
            if status == "done":
                db.execute("DELETE FROM book_outputs WHERE book_id = ?", (book_id,))
                db.executemany(
                    "INSERT INTO book_outputs (book_id, seq, path) VALUES (?, ?, ?)",
                    [(book_id, i, os.fspath(p)) for i, p in enumerate(outputs)],
                )
                db.execute(
                    "UPDATE books SET status = ?, out_path = ?, output_size = ?, "
                    "output_mtime = ?, source_hash = COALESCE(?, source_hash), "
                    "options_hash = COALESCE(?, options_hash) WHERE id = ?",
                    (
                        status,
                        os.fspath(out_path) if out_path else None,
                        output_size,
                        output_mtime,
                        source_hash,
                        options_hash,
                        book_id,
                    ),
                )
            else:
                db.execute("UPDATE books SET status = ? WHERE id = ?", (status, book_id))

    # -- runs --------------------------------------------------------------------------

    def start_run(self, book_id: int | None) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (book_id, started_at) VALUES (?, ?)", (book_id, self.clock())
            )
            return int(cur.lastrowid or 0)

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
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, chunks_total = ?, "
                "chunks_cached = ?, chunks_submitted = ?, billed_chars = ?, error = ? "
                "WHERE id = ?",
                (
                    self.clock(),
                    status,
                    chunks_total,
                    chunks_cached,
                    chunks_submitted,
                    billed_chars,
                    error,
                    run_id,
                ),
            )

    # -- reports and housekeeping -------------------------------------------------------

    def summary(self) -> StatusSummary:
        counts = {s: 0 for s in STATUSES}
        for status, n in self._query("SELECT status, COUNT(*) FROM chunks GROUP BY status"):
            counts[status] = n
        by_kind = {
            k: int(n)
            for k, n in self._query(
                "SELECT price_kind, SUM(billed_chars) FROM chunks GROUP BY price_kind"
            )
            if n
        }
        files = 0
        size = 0
        if self.cache_dir.is_dir():
            for p in self.cache_dir.glob("*/*"):
                if p.is_file():
                    files += 1
                    size += p.stat().st_size
        return StatusSummary(
            path=self.path,
            books=tuple(self.books()),
            chunks=counts,
            billed_chars=sum(by_kind.values()),
            billed_by_kind=by_kind,
            cache_files=files,
            cache_bytes=size,
        )

    def gc(self, *, dry_run: bool = False) -> tuple[int, int]:
        """Remove cached audio that no book's latest chunk list needs (and the rows of
        those chunks). Returns (files removed, bytes freed)."""
        keep = {r[0] for r in self._query("SELECT DISTINCT key FROM book_chunks")}
        removed = 0
        freed = 0
        stale: list[str] = []
        if self.cache_dir.is_dir():
            for p in sorted(self.cache_dir.glob("*/*")):
                key = p.name.split(".", 1)[0]
                if key in keep or not p.is_file():
                    continue
                # Temp files of a fetch in progress in another process are left alone.
                if ".tmp" in p.name:
                    continue
                stale.append(key)
                removed += 1
                freed += p.stat().st_size
                if not dry_run:
                    p.unlink(missing_ok=True)
        if not dry_run and stale:
            with self.transaction() as db:
                db.executemany(
                    "DELETE FROM chunks WHERE key = ? AND status = 'done'", [(k,) for k in stale]
                )
        return removed, freed


def reset_state(state_dir: str | os.PathLike[str]) -> Path | None:
    """Move ``state.sqlite`` (and its WAL files) aside as ``state.sqlite.bad-<time>``;
    returns the new path, or None when there was nothing to move. Never deletes."""
    d = Path(state_dir)
    db = d / DB_NAME
    if not db.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S")
    dest = d / f"{DB_NAME}.bad-{stamp}"
    n = 1
    while dest.exists():
        n += 1
        dest = d / f"{DB_NAME}.bad-{stamp}-{n}"
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{db}{suffix}")
        if src.exists():
            os.replace(src, f"{dest}{suffix}")
    return dest


def open_state(
    state_dir: str | os.PathLike[str] | None = None,
    *,
    reset: bool = False,
    busy_timeout: float = 30.0,
) -> StateStore:
    return StateStore(state_dir, reset=reset, busy_timeout=busy_timeout)
