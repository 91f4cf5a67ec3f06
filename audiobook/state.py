"""The state store: one SQLite file and a content-addressed audio cache per state folder.

Layout of a state folder (default ``$AUDIOBOOK_STATE_DIR``, else
``$XDG_DATA_HOME/audiobook``, else ``~/.local/share/audiobook``)::

    state.sqlite                 the database (WAL mode)
    cache/ab/<key>.<ext>         finished audio of one chunk, named by its content key

Tables (created by named migrations recorded in ``_migrations``):

    chunks       one row per content key: status pending|submitted|done|failed, engine,
                 task_id, output_uri, cache path, billed_chars, attempts, started_at
                 (the "started" intent, written BEFORE the engine's start call),
                 submitted_at, done_at, last_error, cache_size and cache_sha256
                 (marks_size, marks_sha256 for speech marks): the cached file as written
    books        one row per source path: source hash, options hash, output path, output
                 size and mtime, last run, status
    book_chunks  a book's latest chunk keys in order (what ``gc`` keeps)
    runs         one row per conversion: book, start, end, status, counts
    piece_leases a piece claimed by the run working on it (owner, host, pid, expiry);
                 written in the transaction of the start intent, dropped when done
    book_locks   an output being converted into, by which run (same fields)

The cache is the truth about finished audio: a file at ``cache/ab/<key>.<ext>`` is
written whole (temp file, then ``os.replace``) and only ever holds that key's audio, so
it is reused even when its row is gone (after ``--reset-state``). Its size and sha256 are
recorded when it is written and checked before it is reused (``check_cached``): a damaged
piece is synthesized again, alone. Every write is one transaction. A corrupt or locked
database raises ``StateError`` with the way out: ``--reset-state`` moves the old file
aside as ``state.sqlite.bad-<time>`` when it fails its integrity check (a healthy store
is kept); it never deletes it, and never deletes cached audio. A state folder that is
full, read-only or not writable raises ``StateError`` saying so, and the store is left
as it was (SQLite rolls back the write that failed).

Runs at once on one store (two terminals, ``make -j``, a batch) share the work through
leases: a run claims a piece before its paid call, in the very transaction that records
the intent, and renews its claims while it works (``LeaseOwner``). Another run that finds
a piece claimed by a live run does not start it: it follows that run's task or waits
for the audio in the cache. A claim whose run died (its process is gone from this host
(``machine_identity``: the hostname, boot id and process-id namespace),
or it was not renewed for ``LEASE_TTL`` seconds) can be taken over, and then the usual
resume applies (a recorded task is polled, an unrecorded one recovered).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

from .cache import LocalCache, PieceCache, open_cache
from .errors import StateError
from .files import pid_alive

if TYPE_CHECKING:
    from .ratelimit import RateLimiter, Slots
    from .statebase import StateBackend

log = logging.getLogger(__name__)

DB_NAME = "state.sqlite"
STATUSES = ("pending", "submitted", "done", "failed")
# A claim not renewed for this long is taken to belong to a run that died (on another
# host, where its process cannot be looked for); a working run renews every quarter.
LEASE_TTL = 60.0
HOST = socket.gethostname()


def machine_identity(hostname: str = HOST, proc: str | os.PathLike[str] = "/proc") -> str:
    """Who "this host" is for claims: the hostname, then the boot id of the running
    kernel (``/proc/sys/kernel/random/boot_id``) and the process-id namespace
    (``/proc/self/ns/pid``), where the system has them.

    A claim of the same identity is judged by its process id (is it still running?),
    any other by its expiry alone. The hostname alone is not enough once workers run
    in containers: two machines' containers may share a hostname, and a process id on
    one machine says nothing of the other (the boot id differs); two containers on
    one machine share the boot id but not the process-id namespace, in which a pid is
    looked up. Without /proc (macOS, Windows) the hostname is the identity."""
    root = Path(proc)
    parts = [hostname]
    with contextlib.suppress(OSError):
        parts.append((root / "sys" / "kernel" / "random" / "boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink(root / "self" / "ns" / "pid"))
    return " ".join(p for p in parts if p)


# This process's identity in the claims it writes (``machine_identity``).
MACHINE = machine_identity()


def default_state_dir() -> Path:
    """``$AUDIOBOOK_STATE_DIR``, else ``$XDG_DATA_HOME/audiobook``, else
    ``~/.local/share/audiobook``."""
    env = os.environ.get("AUDIOBOOK_STATE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "audiobook"


# --- the SQL a store's methods speak ---------------------------------------------------


class Rows(Protocol):
    """What a statement returns (a DB-API cursor)."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    @property
    def lastrowid(self) -> int | None: ...


class Sql(Protocol):
    """A connection inside one write transaction, as the store's methods use it: ``?``
    placeholders, standard SQL with ``INSERT ... ON CONFLICT``. ``sqlite3.Connection`` is
    one; another backend adapts its driver to it (``pgstate``)."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Rows: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> object: ...


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


@migration
def m005_cache_digest(db: sqlite3.Connection) -> None:
    # The cached files as they were written (size in bytes, sha256 hex), checked before
    # a piece is reused: a damaged one is synthesized again instead of failing the book.
    for col in (
        "cache_size INTEGER",
        "cache_sha256 TEXT",
        "marks_size INTEGER",
        "marks_sha256 TEXT",
    ):
        db.execute(f"ALTER TABLE chunks ADD COLUMN {col}")


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
    cache_size: int | None = None  # the cached audio as written (None: not recorded)
    cache_sha256: str | None = None
    marks_size: int | None = None  # the cached speech marks as written
    marks_sha256: str | None = None

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
class CountCheck:
    """The service's count of billable characters against our estimate, over the
    pieces whose latest task reported one."""

    pieces: int = 0
    service_chars: int = 0  # what the service counted (Polly's RequestCharacters)
    estimated_chars: int = 0  # what we counted for the same pieces
    differing: int = 0  # pieces where the two differ


@dataclass(frozen=True)
class StatusSummary:
    path: Path
    books: tuple[BookRow, ...]
    chunks: dict[str, int]  # status -> count
    billed_chars: int
    billed_by_kind: dict[str, int]  # price kind ("standard", "neural", "" = local) -> chars
    cache_files: int
    cache_bytes: int
    counted: CountCheck = CountCheck()
    where: str = ""  # where the rows are, for people (a file, or a database URL)
    workers: tuple[WorkerClaims, ...] = ()  # the runs holding claims, oldest first
    cache_where: str = ""  # where the pieces are (a folder, or s3://...)


@dataclass(frozen=True)
class WorkerClaims:
    """One run's claims, as ``status`` shows them: the books whose output it holds, the
    pieces it is synthesizing, its lease (``holder``: the latest expiry of its claims)
    and whether it counts as alive (``StateStore._alive``): a dead one's claims are
    taken over by the next run that needs them."""

    holder: LeaseHolder
    books: tuple[str, ...]
    pieces: int
    alive: bool


_CHUNK_COLS = (
    "key, status, engine, task_id, output_uri, cache_path, chars, billed_chars, attempts, "
    "started_at, submitted_at, done_at, last_error, price_kind, task_extra, "
    "cache_size, cache_sha256, marks_size, marks_sha256"
)
_BOOK_COLS = (
    "id, source_path, source_hash, options_hash, title, out_path, output_size, "
    "output_mtime, last_run, status"
)


# --- what went wrong ------------------------------------------------------------------

Storage = Literal["full", "read-only", "denied"]
_ERRNO_STORAGE: dict[int, Storage] = {
    errno.ENOSPC: "full",
    errno.EDQUOT: "full",
    errno.EROFS: "read-only",
    errno.EACCES: "denied",
    errno.EPERM: "denied",
}
# An I/O error in a folder with less room than this is the disk being full: SQLite and
# the cache write in pages and pieces, so "no space" shows before the last byte is used.
LOW_SPACE = 1 << 20


def _causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and what it was raised from (``__cause__``, else ``__context__``)."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def folder_condition(folder: str | os.PathLike[str]) -> Storage | None:
    """What stops writes in ``folder`` (or its nearest existing parent) right now: its
    file system is read-only, it has (next to) no free space, or we may not write in it;
    None when none of these."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return "read-only"
    if st.f_bavail * st.f_frsize < LOW_SPACE:
        return "full"
    if not os.access(probe, os.W_OK):
        return "denied"
    return None


def _inside(folder: Path, name: object) -> bool:
    if not isinstance(name, str | bytes | os.PathLike):
        return False
    try:
        Path(os.fsdecode(name)).absolute().relative_to(folder.absolute())
    except ValueError:
        return False
    return True


def storage_error(folder: str | os.PathLike[str], err: BaseException) -> StateError | None:
    """A one-line ``StateError`` when ``err`` (or what it was raised from) is the state
    folder refusing a write: the disk is full, the file system read-only, permission
    denied. None for anything else (an error of another folder, a damaged database)."""
    d = Path(folder)
    kind: Storage | None = None
    for e in _causes(err):
        if isinstance(e, OSError) and e.errno in _ERRNO_STORAGE:
            k = _ERRNO_STORAGE[e.errno]
            # The OSError names a file of the state folder, or the folder is in that
            # state now (a copy's error names no file): not an error of another folder.
            if _inside(d, e.filename) or _inside(d, e.filename2) or folder_condition(d) == k:
                kind = k
                break
        if isinstance(e, sqlite3.Error):
            name = getattr(e, "sqlite_errorname", "") or ""
            if name == "SQLITE_FULL":
                kind = "full"
                break
            if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR")):
                kind = folder_condition(d)
                if kind is not None:
                    break
    if kind is None:
        return None
    kept = "the state store is kept as it was"
    if kind == "full":
        return StateError(
            f"{d}: the state folder's disk is full (no space left on device); free some "
            f"space and run again ({kept})"
        )
    if kind == "read-only":
        return StateError(
            f"{d}: the state folder is on a read-only file system; make it writable, or use "
            f"--state-dir DIR for another one ({kept})"
        )
    return StateError(
        f"{d}: no permission to write in the state folder (permission denied); fix its "
        f"permissions, or use --state-dir DIR for another one ({kept})"
    )


def _state_error(path: Path, e: BaseException) -> StateError:
    storage = storage_error(path.parent, e)
    if storage is not None:
        return storage
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


def file_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """Size in bytes and sha256 (hex) of the file at ``path``, in one read."""
    with open(path, "rb") as f:
        h = hashlib.file_digest(f, "sha256")
        return f.tell(), h.hexdigest()


@dataclass(frozen=True)
class CacheCheck:
    """What ``StateStore.check_cached`` found: ``path`` when the cached file can be
    reused, else None with ``problem`` saying why (empty when there is no file)."""

    path: Path | None
    problem: str = ""
    digest: tuple[int, str] | None = None  # to record, for a file written before m005


def _plausible(path: Path, ext: str) -> bool:
    """A file with no recorded digest (cached before sizes were recorded, or its row
    was moved aside by --reset-state) looks like what its name says."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if ext == "marks":  # JSON lines
                f.seek(0)
                for line in f:
                    if line.strip():
                        json.loads(line)
                return True
    except (OSError, ValueError):
        return False
    if ext == "wav":
        return len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    if ext == "mp3":
        return head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] >= 0xE0)
    if ext == "ogg":
        return head[:4] == b"OggS"
    return len(head) > 0


@migration
def m007_chunk_request_chars(db: sqlite3.Connection) -> None:
    # What the service counted for the piece's latest task (Polly's RequestCharacters),
    # beside ``chars``, our estimate: ``status`` shows where they differ. NULL: no
    # count came back (a local engine).
    db.execute("ALTER TABLE chunks ADD COLUMN request_chars INTEGER")


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


@migration
def m008_quota_buckets(db: sqlite3.Connection) -> None:
    # The quotas workers of a cluster share (token buckets, slots in flight) live in a
    # store shared by many machines (``pgstate``). One machine's store keeps none: each
    # process holds its own limiters. The name keeps the two lists of migrations alike.
    pass


@dataclass(frozen=True)
class LeaseHolder:
    """The run that holds a claim: its owner id, host and process id."""

    owner: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float

    def where(self) -> str:
        """ "pid 1234", or "pid 1234 on otherhost" (a claim of another machine, or of
        another container of this one)."""
        return f"pid {self.pid}" + ("" if self.host == MACHINE else f" on {self.hostname}")

    @property
    def hostname(self) -> str:
        """The host's name, without the boot id and namespace of its identity."""
        return self.host.split(" ", 1)[0]


class PieceBusy(Exception):
    """``mark_starting`` wrote nothing: another live run holds the piece (``holder``),
    or the piece was not this run's and its row shows another run's work (a recorded
    task, an unrecorded start, finished audio; ``holder`` None). The caller looks again
    (``claim_piece``) and follows, resumes or takes the audio from the cache."""

    def __init__(self, key: str, holder: LeaseHolder | None) -> None:
        super().__init__(key)
        self.key = key
        self.holder = holder


def _holder(row: Sequence[Any] | None) -> LeaseHolder | None:
    return LeaseHolder(str(row[0]), str(row[1]), int(row[2]), row[3], row[4]) if row else None


_LEASE_COLS = "owner, host, pid, acquired_at, expires_at"
_OWNERS: set[str] = set()  # the owner ids of this process's runs


class LeaseOwner:
    """One run's identity for its claims (a fresh id, this machine and container as
    ``machine_identity`` names them, this process). As a
    context manager it renews them in the background every quarter of ``ttl`` while
    the run works, and gives them all up at the end (finished, failed or interrupted:
    another run may then take over, resuming what this one left)."""

    def __init__(self, store: StateBackend, *, ttl: float = LEASE_TTL) -> None:
        self.store = store
        self.ttl = ttl
        self.id = uuid.uuid4().hex
        self.host = MACHINE
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
    SQLite's own locking (WAL, busy timeout).

    ``create=False`` (the read-only commands) opens only a store that exists: a missing
    one raises ``StateError`` and nothing is created. ``reset=True`` moves the store aside
    when it fails its integrity check and keeps a healthy one; ``reset_note`` says which
    (one line, for the user)."""

    cluster_wide = False  # one machine's: its processes keep their own quotas

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        reset: bool = False,
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        create: bool = True,
    ) -> None:
        self.dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.path = self.dir / DB_NAME
        self.where = str(self.path)
        self.cache_dir = self.dir / "cache"
        self.cache: PieceCache = LocalCache(self.cache_dir)
        self.clock = clock
        self.moved_aside: Path | None = None
        self.reset_note: str | None = None
        self._lock = threading.RLock()
        if not create and not self.path.is_file():
            raise StateError(
                f"{self.dir}: no state store here (no book was converted with this state "
                "folder; check --state-dir or $AUDIOBOOK_STATE_DIR)"
            )
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise storage_error(self.dir, e) or StateError(
                f"{self.dir}: cannot create the state folder ({e.strerror})"
            ) from e
        if reset:
            problem = integrity_problem(self.dir, busy_timeout=busy_timeout)
            if problem is not None:
                self.moved_aside = reset_state(self.dir)
                self.reset_note = (
                    f"{self.path} failed its integrity check ({problem}); moved it aside as "
                    f"{self.moved_aside.name if self.moved_aside else '?'} and started a new "
                    "one (cached audio is kept)"
                )
            elif self.path.exists():
                self.reset_note = (
                    f"{self.path} passed its integrity check; kept it (--reset-state moves "
                    "only a damaged store aside)"
                )
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
        except StateError:
            self.db.close()
            raise

    # -- plumbing ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Sql]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); rolled back on error. A
        database error inside it (a full disk, a read-only file) becomes ``StateError``.
        SQLite may have rolled back already (it does on SQLITE_FULL and some I/O
        errors): the ROLLBACK is only sent while a transaction is open, so that the
        error that matters is the one raised."""
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise _state_error(self.path, e) from e
            try:
                yield self.db
            except sqlite3.Error as e:
                self._rollback()
                raise _state_error(self.path, e) from e
            except BaseException:
                self._rollback()
                raise
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback()
                raise _state_error(self.path, e) from e

    def _rollback(self) -> None:
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error as e:
                log.debug("%s: rollback failed: %s", self.path, e)

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
            with self.transaction():
                db = self.db  # a migration speaks SQLite's own dialect
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
        """Where the audio of ``key`` lives on this machine:
        ``cache/<first two hex>/<key>.<ext>`` (a shared cache's copy)."""
        return self.cache.local_path(key, ext)

    def cached(self, key: str, ext: str) -> Path | None:
        """The local file of ``key``'s audio (from a shared cache: downloaded first)."""
        return self.cache.fetch(key, ext)

    def check_cached(self, key: str, ext: str, row: ChunkRow | None) -> CacheCheck:
        """Whether the cached file of ``key`` can be reused: it is there and is what was
        written, the size recorded at write time (a stat) and the sha256 (one read).

        The rule: the size always, the hash always too. A piece is only looked at when
        its book is about to be stitched (an up-to-date book reads nothing), and the
        stitch reads and decodes every byte of every piece anyway; hashing them first
        costs a fraction of that (sha256 runs at hundreds of MB/s, decoding and encoding
        far slower), and it is the only check that also sees a same-size overwrite.
        A file with no recorded digest (cached before digests were recorded, or after
        --reset-state) must look like its format (``_plausible``); its digest is
        returned to be recorded, so the next run checks it fully."""
        p = self.cache.fetch(key, ext)
        if p is None:
            return CacheCheck(None)
        size: int | None = None
        sha: str | None = None
        if row is not None:
            size, sha = (
                (row.marks_size, row.marks_sha256)
                if ext == "marks"
                else (row.cache_size, row.cache_sha256)
            )
        try:
            actual = p.stat().st_size
            if size is not None and actual != size:
                return CacheCheck(None, f"{actual} bytes, {size} were written")
            digest = file_digest(p)
        except OSError as e:
            return CacheCheck(None, f"cannot read it ({e.strerror or e})")
        if sha is not None:
            if digest[1] != sha:
                return CacheCheck(None, "its content changed since it was written (sha256)")
            return CacheCheck(p)
        if not _plausible(p, ext):
            return CacheCheck(None, f"not a whole {ext} file ({digest[0]} bytes)")
        return CacheCheck(p, digest=digest)

    def reusable(
        self,
        key: str,
        exts: Sequence[str],
        row: ChunkRow | None,
        found: list[tuple[str, str, int, str]],
    ) -> tuple[bool, list[tuple[Path, str]]]:
        """Whether every cached file of ``key`` (one per extension: the audio, and the
        marks when asked for) is there and whole (``check_cached``). A damaged one is
        removed, so that only it is synthesized again, and returned with its problem;
        digests of files cached before digests were recorded are added to ``found``."""
        ok = True
        damaged: list[tuple[Path, str]] = []
        for ext in exts:
            check = self.check_cached(key, ext, row)
            if check.path is not None:
                if check.digest is not None:
                    # Whole but never recorded: shared before its digest is recorded.
                    self.cache.publish(check.path)
                    found.append((key, ext, *check.digest))
                continue
            ok = False
            if check.problem:
                p = self.cache_path(key, ext)
                try:
                    p.unlink(missing_ok=True)
                except OSError as err:
                    raise storage_error(self.dir, err) or StateError(
                        f"{p}: cannot remove the damaged piece ({err.strerror or err})"
                    ) from err
                damaged.append((p, check.problem))
        return ok, damaged

    def record_digests(
        self, entries: Sequence[tuple[str, str, int, str]], engine: str = ""
    ) -> None:
        """Record ``(key, ext, size, sha256)`` of cached files found without a digest
        (their row is done: the file is the finished audio of the key)."""
        if not entries:
            return
        now = self.clock()
        with self.transaction() as db:
            for key, ext, size, sha in entries:
                self._ensure_chunk(db, key, engine, 0)
                if ext == "marks":
                    db.execute(
                        "UPDATE chunks SET marks_size = ?, marks_sha256 = ?, updated_at = ? "
                        "WHERE key = ?",
                        (size, sha, now, key),
                    )
                else:
                    db.execute(
                        "UPDATE chunks SET status = 'done', cache_path = ?, cache_size = ?, "
                        "cache_sha256 = ?, done_at = COALESCE(done_at, ?), updated_at = ? "
                        "WHERE key = ?",
                        (os.fspath(self.cache_path(key, ext)), size, sha, now, now, key),
                    )

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

    def _ensure_chunk(self, db: Sql, key: str, engine: str, chars: int) -> None:
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
                "cache_size = NULL, cache_sha256 = NULL, marks_size = NULL, "
                "marks_sha256 = NULL, updated_at = ? WHERE key = ?",
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
        to what the key has cost so far (a failed task that was billed stays counted),
        and is kept as the service's count of this task beside our estimate."""
        now = self.clock()
        with self.transaction() as db:
            db.execute(
                "UPDATE chunks SET status = 'submitted', task_id = ?, output_uri = ?, "
                "billed_chars = billed_chars + ?, submitted_at = ?, last_error = NULL, "
                "task_extra = ?, updated_at = ?, "
                "request_chars = CASE WHEN ? > 0 THEN ? ELSE request_chars END WHERE key = ?",
                (
                    task_id,
                    output_uri,
                    billed_chars,
                    now,
                    json.dumps(extra or {}),
                    now,
                    billed_chars,
                    billed_chars,
                    key,
                ),
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
        digest: tuple[int, str] | None = None,
        marks_digest: tuple[int, str] | None = None,
        owner: LeaseOwner | None = None,
    ) -> None:
        """The audio of ``key`` is in the cache at ``cache_path``; ``digest`` (size,
        sha256) is of the file as written, ``marks_digest`` of its speech marks;
        ``owner``'s claim on the piece ends here."""
        now = self.clock()
        size, sha = digest or (None, None)
        msize, msha = marks_digest or (None, None)
        with self.transaction() as db:
            self._ensure_chunk(db, key, engine, chars)
            db.execute(
                "UPDATE chunks SET status = 'done', cache_path = ?, done_at = ?, "
                "last_error = NULL, cache_size = ?, cache_sha256 = ?, marks_size = ?, "
                "marks_sha256 = ?, updated_at = ? WHERE key = ?",
                (os.fspath(cache_path), now, size, sha, msize, msha, now, key),
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
        """A claim counts while it is renewed and its run, if on this machine (and in
        this container: ``machine_identity``), exists: its process, or (in this very
        process, whose id a dead run of an earlier container may have had) one of this
        process's owners."""
        if holder.expires_at <= now:
            return False
        if holder.host != MACHINE:
            return True
        if holder.pid == os.getpid():
            return holder.owner in _OWNERS
        return pid_alive(holder.pid)

    def _piece_holder(self, db: Sql, key: str) -> LeaseHolder | None:
        return _holder(
            db.execute(f"SELECT {_LEASE_COLS} FROM piece_leases WHERE key = ?", (key,)).fetchone()
        )

    def _put_piece_lease(self, db: Sql, key: str, owner: LeaseOwner, now: float) -> None:
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

    # -- quotas ----------------------------------------------------------------------------

    def rate_limiter(
        self,
        name: str,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RateLimiter | None:
        """None: one machine's store; each process keeps its own buckets."""
        return None

    def slots(self, name: str, limit: int, own: Slots) -> Slots | None:
        """None: one machine's store; each process bounds its own tasks in flight."""
        return None

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

    def last_run_errors(self) -> dict[int, str]:
        """book id -> the error of the book's latest run, for books whose latest run
        failed (``status`` shows why a book failed)."""
        rows = self._query(
            "SELECT book_id, error FROM runs WHERE id IN "
            "(SELECT MAX(id) FROM runs WHERE book_id IS NOT NULL GROUP BY book_id) "
            "AND status = 'failed'"
        )
        return {int(book_id): str(error or "unknown error") for book_id, error in rows}

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
        counted = self._query(
            "SELECT COUNT(*), COALESCE(SUM(request_chars), 0), COALESCE(SUM(chars), 0), "
            "COALESCE(SUM(CASE WHEN request_chars != chars THEN 1 ELSE 0 END), 0) FROM chunks "
            "WHERE request_chars IS NOT NULL"
        )[0]
        files = 0
        size = 0
        for _, n in self.cache.entries():
            files += 1
            size += n
        return StatusSummary(
            path=self.path,
            where=self.where,
            books=tuple(self.books()),
            chunks=counts,
            billed_chars=sum(by_kind.values()),
            billed_by_kind=by_kind,
            cache_files=files,
            cache_bytes=size,
            counted=CountCheck(*(int(n) for n in counted)),
            workers=self.workers(),
            cache_where=self.cache.where,
        )

    def workers(self) -> tuple[WorkerClaims, ...]:
        """The runs that hold claims (on books' outputs, on pieces), oldest first."""
        now = self.clock()
        books: dict[str, list[str]] = {}
        pieces: dict[str, int] = {}
        latest: dict[str, LeaseHolder] = {}
        for kind, name, *cols in self._query(
            f"SELECT 'book', source_path, {_LEASE_COLS} FROM book_locks UNION ALL "
            f"SELECT 'piece', key, {_LEASE_COLS} FROM piece_leases"
        ):
            holder = _holder(cols)
            assert holder is not None
            was = latest.get(holder.owner)
            if was is None or holder.expires_at > was.expires_at:
                first = (
                    holder.acquired_at if was is None else min(was.acquired_at, holder.acquired_at)
                )
                latest[holder.owner] = dataclasses.replace(holder, acquired_at=first)
            if kind == "book":
                books.setdefault(holder.owner, []).append(str(name))
            else:
                pieces[holder.owner] = pieces.get(holder.owner, 0) + 1
        return tuple(
            WorkerClaims(h, tuple(sorted(books.get(o, ()))), pieces.get(o, 0), self._alive(h, now))
            for o, h in sorted(latest.items(), key=lambda kv: kv[1].acquired_at)
        )

    def gc(self, *, dry_run: bool = False) -> tuple[int, int]:
        """Remove cached audio that no book's latest chunk list needs, with its speech
        marks (and the rows of those chunks). Returns (pieces removed, bytes freed)."""
        keep = {r[0] for r in self._query("SELECT DISTINCT key FROM book_chunks")}
        freed = 0
        stale: list[str] = []
        for name, size in self.cache.entries():
            key = name.split(".", 1)[0]
            # Temp files of a fetch in progress in another process are left alone.
            if key in keep or ".tmp" in name:
                continue
            stale.append(key)
            freed += size
            if not dry_run:
                self.cache.remove(name)
        if not dry_run and stale:
            with self.transaction() as db:
                db.executemany(
                    "DELETE FROM chunks WHERE key = ? AND status = 'done'",
                    [(k,) for k in dict.fromkeys(stale)],
                )
        return len(set(stale)), freed


def integrity_problem(
    state_dir: str | os.PathLike[str], *, busy_timeout: float = 30.0
) -> str | None:
    """What is wrong with the store of ``state_dir`` (one line), or None when it opens
    and passes ``PRAGMA integrity_check`` (or there is none). A store that is locked, or
    a folder that refuses to be written, raises ``StateError``: neither is damage, and
    moving the store aside would not help."""
    d = Path(state_dir)
    path = d / DB_NAME
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as e:
        raise storage_error(d, e) or _state_error(path, e) from e
    try:
        rows = db.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.Error as e:
        name = getattr(e, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            raise _state_error(path, e) from e
        storage = storage_error(d, e)
        if storage is not None:
            raise storage from e
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    finally:
        db.close()
    found = [str(r[0]) for r in rows]
    return None if found == ["ok"] else "; ".join(found[:3])


def reset_state(state_dir: str | os.PathLike[str]) -> Path | None:
    """Move ``state.sqlite`` (and its WAL files) aside as ``state.sqlite.bad-<time>``;
    returns the new path, or None when there was nothing to move. Never deletes. (The
    store's ``reset=True`` calls this only for a store that fails its integrity check.)"""
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
            try:
                os.replace(src, f"{dest}{suffix}")
            except OSError as e:
                raise storage_error(d, e) or StateError(
                    f"{src}: cannot move it aside ({e.strerror or e})"
                ) from e
    return dest


if TYPE_CHECKING:
    # The SQLite store is a ``StateBackend`` (checked by mypy, structurally).
    _SQLITE_IS_A_BACKEND: type[StateBackend] = StateStore


def open_state(
    state_dir: str | os.PathLike[str] | None = None,
    *,
    reset: bool = False,
    busy_timeout: float = 30.0,
    create: bool = True,
    url: str | None = None,
    cache: str | None = None,
) -> StateStore:
    """The state store: SQLite in ``state_dir`` (the default), or the PostgreSQL database
    of ``url`` (else ``$AUDIOBOOK_STATE_URL``), ``postgresql://...``. Its audio cache is
    the folder ``cache/`` of ``state_dir``, or the S3 cache of ``cache`` (else
    ``$AUDIOBOOK_CACHE_URL``), ``s3://BUCKET/PREFIX``, with this machine's copies there."""
    store = _open_store(state_dir, reset=reset, busy_timeout=busy_timeout, create=create, url=url)
    try:
        store.cache = open_cache(cache, store.cache_dir)
    except StateError:
        store.close()
        raise
    return store


def _open_store(
    state_dir: str | os.PathLike[str] | None,
    *,
    reset: bool,
    busy_timeout: float,
    create: bool,
    url: str | None,
) -> StateStore:
    url = url or os.environ.get("AUDIOBOOK_STATE_URL") or None
    if url is None:
        return StateStore(state_dir, reset=reset, busy_timeout=busy_timeout, create=create)
    if not url.startswith(("postgresql://", "postgres://")):
        raise StateError(
            f"{url.split('@')[-1]}: not a state store URL (postgresql://USER@HOST/DATABASE)"
        )
    try:
        from .pgstate import PgStateStore
    except ImportError as e:
        raise StateError(
            f"{url.split('@')[-1]}: a PostgreSQL state store needs psycopg "
            "(pip install 'audiobook[postgres]')"
        ) from e
    store = PgStateStore(url, state_dir)
    if reset:
        store.reset_note = (
            "--reset-state moves only a damaged SQLite store aside; the PostgreSQL store is kept"
        )
    return store
