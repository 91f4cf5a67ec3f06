"""Files written whole or not at all: a temp file in the same folder, then ``os.replace``.

    with atomic_path(dest) as tmp:     # write tmp however you like (ffmpeg, a download)
        produce(tmp)                   # on success tmp replaces dest; on error it is removed
    write_atomic(dest, data)           # bytes
    copy_atomic(src, dest)             # a file

A reader never sees a half-written file, and a failure leaves the previous one in place.

Every temp name says whose it is: ``.<name>.audiobook-<pid>-<random>.tmp`` beside an
output, ``audiobook-<kind>-<pid>-<random>`` in the temp folder, ``<key>.tmp<pid>-...``
in the audio cache. A run that was killed (SIGKILL, a power cut) leaves them behind;
the next run removes those of processes that are gone::

    sweep_stale(folder)                # what dead runs left in folder; returns the count
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Names of our temp files and folders, each with the pid of the process that made it.
_OWNED = (
    re.compile(r"^\..+\.audiobook-(?P<pid>\d+)-[^.]*\.tmp$"),  # temp_prefix (beside outputs)
    re.compile(r"^audiobook-[a-z]+-(?P<pid>\d+)-[^.]*$"),  # temp_dir_prefix (TMPDIR)
    re.compile(r"^[0-9a-f]{16,}\.tmp(?P<pid>\d+)-\d+"),  # the scheduler's fetch (cache)
    re.compile(r"^\..+\.(?P<pid>\d+)\.part$"),  # audio.write_atomic, local engine moves
)
# Those of versions that did not name the owner: removed once a day old.
_UNOWNED = re.compile(r"^audiobook-(?:local|polly)-[a-z0-9_]{8}$")
UNOWNED_MAX_AGE = 24 * 3600.0


def temp_prefix(name: str) -> str:
    """The start of a temp name for ``name`` beside it (end it with ``.tmp``)."""
    return f".{name}.audiobook-{os.getpid()}-"


def temp_dir_prefix(kind: str) -> str:
    """The start of a temp folder's name in the system's temp folder."""
    return f"audiobook-{kind}-{os.getpid()}-"


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


def _stale(entry: os.DirEntry[str], now: float) -> bool:
    for pattern in _OWNED:
        m = pattern.match(entry.name)
        if m:
            return not pid_alive(int(m["pid"]))
    if _UNOWNED.match(entry.name):
        try:
            return now - entry.stat(follow_symlinks=False).st_mtime > UNOWNED_MAX_AGE
        except OSError:
            return False
    return False


def sweep_stale(folder: str | os.PathLike[str], *, depth: int = 0) -> int:
    """Remove the temp files and folders of ours in ``folder`` (and ``depth`` levels of
    subfolders) whose process is gone; returns how many. Never raises: a sweep that
    cannot look or remove leaves things as they are."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if _stale(entry, now):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
            elif depth > 0 and entry.is_dir(follow_symlinks=False):
                removed += sweep_stale(entry.path, depth=depth - 1)
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, mode: int | None = None) -> Iterator[Path]:
    """A temp path beside ``dest`` that replaces it when the block ends without error.
    ``mode`` sets the permissions (mkstemp's are 0600)."""
    out = Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=temp_prefix(out.name), suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(
    dest: str | os.PathLike[str], data: bytes, *, mode: int | None = None, fsync: bool = False
) -> None:
    """Write ``data`` to ``dest`` whole or not at all."""
    with atomic_path(dest, mode=mode) as tmp, open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def write_text_atomic(dest: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``dest`` whole or not at all."""
    write_atomic(dest, text.encode("utf-8"))


def copy_atomic(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Copy the file ``src`` to ``dest`` whole or not at all."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
