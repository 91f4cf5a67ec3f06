"""Files written whole or not at all: a temp file in the same folder, then ``os.replace``.

    with atomic_path(dest) as tmp:     # write tmp however you like (ffmpeg, a download)
        produce(tmp)                   # on success tmp replaces dest; on error it is removed
    write_atomic(dest, data)           # bytes
    copy_atomic(src, dest)             # a file

A reader never sees a half-written file, and a failure leaves the previous one in place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, mode: int | None = None) -> Iterator[Path]:
    """A temp path beside ``dest`` that replaces it when the block ends without error.
    ``mode`` sets the permissions (mkstemp's are 0600)."""
    out = Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
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
