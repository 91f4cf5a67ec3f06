"""Read members of an untrusted zip archive in memory, within limits.

Nothing is ever extracted to disk. Member names that could escape a folder
(``../x``, ``/etc/x``, ``C:\\x``) are refused: they are not readable at all and are
listed in ``unsafe_names``. Every read is capped three ways, so that a zip bomb costs
at most ``ZipLimits.max_total_bytes`` of work:

- a member whose declared size is over ``max_member_bytes`` is refused;
- a member larger than ``ratio_floor_bytes`` whose declared size is more than
  ``max_ratio`` times its compressed size is refused (deflate's honest best is ~1000x
  on zeros; real books are 2-10x);
- the bytes actually inflated are counted, so a member that lies about its size stops
  at its declared size (or the cap), and all reads together stop at ``max_total_bytes``.

Any refusal raises ``ZipLimitExceeded``; the caller turns it into a one-line error.
"""

from __future__ import annotations

import os
import posixpath
import re
import zipfile
from dataclasses import dataclass
from types import TracebackType
from typing import Self


@dataclass(frozen=True)
class ZipLimits:
    max_members: int = 20_000
    max_member_bytes: int = 64 * 1024 * 1024
    max_total_bytes: int = 200 * 1024 * 1024
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 1024 * 1024


DEFAULT_LIMITS = ZipLimits()

_CHUNK = 256 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


class ZipLimitExceeded(Exception):
    """The archive looks like a zip bomb (or breaks a size limit)."""


class UnsafeName(KeyError):
    """The member name could escape its folder; it is never read."""


def is_safe_name(name: str) -> bool:
    """True for a relative, forward-slash member name with no ``..`` component."""
    if not name or "\x00" in name or "\\" in name:
        return False
    if name.startswith("/") or _DRIVE.match(name):
        return False
    return ".." not in name.split("/")


def normalize(path: str) -> str:
    """Resolve ``.`` and ``..`` in a zip-internal path (which may then start with ../)."""
    norm = posixpath.normpath(path)
    return "" if norm == "." else norm


class SafeZip:
    """A read-only view of a zip file: ``names``, ``exists(name)``, ``read(name)``."""

    def __init__(self, path: str | os.PathLike[str], limits: ZipLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._zf = zipfile.ZipFile(path)  # BadZipFile / OSError propagate to the caller
        infos = self._zf.infolist()
        if len(infos) > limits.max_members:
            self._zf.close()
            raise ZipLimitExceeded(f"{len(infos)} members (limit {limits.max_members})")
        self._infos: dict[str, zipfile.ZipInfo] = {}
        self.unsafe_names: list[str] = []
        for info in infos:
            if info.is_dir():
                continue
            if is_safe_name(info.filename):
                self._infos.setdefault(info.filename, info)
            else:
                self.unsafe_names.append(info.filename)
        self._read_total = 0

    @property
    def names(self) -> list[str]:
        return list(self._infos)

    def exists(self, name: str) -> bool:
        return name in self._infos

    @property
    def bytes_read(self) -> int:
        return self._read_total

    def read(self, name: str) -> bytes:
        """The whole member, inflated in memory under the limits.

        Raises ``UnsafeName`` for refused names, ``KeyError`` for absent ones,
        ``ZipLimitExceeded`` past a limit, ``zipfile.BadZipFile`` for damage (bad CRC).
        """
        if not is_safe_name(name):
            raise UnsafeName(name)
        info = self._infos.get(name)
        if info is None:
            raise KeyError(name)
        lim = self.limits
        declared = info.file_size
        if declared > lim.max_member_bytes:
            raise ZipLimitExceeded(
                f"member {name!r} declares {declared} bytes (limit {lim.max_member_bytes})"
            )
        if (
            declared > lim.ratio_floor_bytes
            and info.compress_size > 0
            and declared / info.compress_size > lim.max_ratio
        ):
            raise ZipLimitExceeded(
                f"member {name!r} compresses {declared / info.compress_size:.0f}:1 "
                f"(limit {lim.max_ratio:.0f}:1)"
            )
        if self._read_total + declared > lim.max_total_bytes:
            raise ZipLimitExceeded(f"more than {lim.max_total_bytes} bytes inflated in all")
        parts: list[bytes] = []
        got = 0
        with self._zf.open(info) as fh:
            while True:
                # Never ask for more than one byte past what the member may hold.
                want = min(_CHUNK, declared - got + 1)
                block = fh.read(want)
                if not block:
                    break
                got += len(block)
                if got > declared:
                    raise ZipLimitExceeded(f"member {name!r} holds more than it declares")
                parts.append(block)
        self._read_total += got
        return b"".join(parts)

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
