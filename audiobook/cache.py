"""The audio cache: finished pieces by content key, in a local folder or shared in S3.

    cache = open_cache("s3://bucket/pieces", Path("~/.local/share/audiobook/cache"))
    cache.fetch(key, "mp3")      # the piece's local file (downloaded first), or None
    cache.publish(path)          # a piece written whole in the local folder, shared

A piece is named by its content key as ``<first two hex>/<key>.<ext>``, in the folder
and, for S3, under the prefix. The state store records each piece's size and sha256
after it is in the cache and checks them before reuse (``StateStore.check_cached``),
whichever cache holds it.

- **LocalCache** (the default): the state folder's ``cache/``. Fetching is looking,
  publishing is nothing (the piece is already where it belongs).
- **S3Cache** (``--cache s3://BUCKET/PREFIX``): the pieces shared by the workers of
  many machines. The local folder is this machine's copy: a piece is downloaded into it
  (streamed to a temp file, then renamed) before it is checked, reused or stitched, so
  a book is never held in memory. An upload is atomic for a reader: S3 shows an object
  whole or not at all (a multipart upload appears when it completes), and the store
  marks the piece done only after its upload returned.

The one module that speaks to S3 for the cache (boto3); its errors become
``StateError`` with one line naming the cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from .errors import StateError, one_line


def piece_name(key: str, ext: str) -> str:
    """A piece's path inside a cache: ``ab/<key>.<ext>``."""
    return f"{key[:2]}/{key}.{ext}"


class PieceCache(Protocol):
    """Where finished pieces live (see the module docstring)."""

    where: str  # the cache, for messages and ``status``
    folder: Path  # this machine's folder of pieces

    def local_path(self, key: str, ext: str) -> Path:
        """Where the piece's local file is (or goes)."""
        ...

    def fetch(self, key: str, ext: str) -> Path | None:
        """The piece's local file, brought from the shared cache first if need be;
        None when the cache has no such piece."""
        ...

    def publish(self, path: Path) -> None:
        """Share the piece written whole at ``path`` (a ``local_path``)."""
        ...

    def entries(self) -> Iterator[tuple[str, int]]:
        """Every piece in the cache: its name (``<key>.<ext>``) and size in bytes."""
        ...

    def remove(self, name: str) -> None:
        """Remove the piece ``<key>.<ext>`` (its local file too)."""
        ...


class LocalCache:
    """The pieces in a local folder (the default)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.where = str(folder)

    def local_path(self, key: str, ext: str) -> Path:
        return self.folder / piece_name(key, ext)

    def fetch(self, key: str, ext: str) -> Path | None:
        p = self.local_path(key, ext)
        return p if p.is_file() else None

    def publish(self, path: Path) -> None:
        return None

    def entries(self) -> Iterator[tuple[str, int]]:
        if self.folder.is_dir():
            for p in sorted(self.folder.glob("*/*")):
                if p.is_file():
                    yield p.name, p.stat().st_size

    def remove(self, name: str) -> None:
        (self.folder / name[:2] / name).unlink(missing_ok=True)


class S3Cache(LocalCache):
    """The pieces in ``s3://bucket/prefix``, with this machine's copies in ``folder``.
    ``client``: a boto3 S3 client (else one made the usual boto3 way)."""

    def __init__(self, url: str, folder: Path, client: Any = None) -> None:
        super().__init__(folder)
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise StateError(f"{url}: not a cache URL (s3://BUCKET/PREFIX)")
        self.where = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._client = client
        self._lock = threading.Lock()

    @property
    def s3(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3

                try:
                    self._client = boto3.session.Session().client("s3")
                except Exception as e:  # NoRegionError and friends, at the edge
                    raise self._error(e, "cannot make an S3 client") from e
            return self._client

    def _object(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _error(self, e: BaseException, what: str) -> StateError:
        return StateError(f"{self.where}: {what} ({one_line(e)})")

    def fetch(self, key: str, ext: str) -> Path | None:
        p = self.local_path(key, ext)
        if p.is_file():
            return p
        from botocore.exceptions import ClientError

        p.parent.mkdir(parents=True, exist_ok=True)
        # The scheduler's temp name (``files.sweep_stale`` knows whose it is).
        tmp = p.with_name(f"{key}.tmp{os.getpid()}-{threading.get_ident()}.{ext}")
        try:
            self.s3.download_file(self.bucket, self._object(piece_name(key, ext)), str(tmp))
            os.replace(tmp, p)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(e, f"cannot download {piece_name(key, ext)}") from e
        except Exception as e:  # connection errors, at the edge
            raise self._error(e, f"cannot download {piece_name(key, ext)}") from e
        finally:
            tmp.unlink(missing_ok=True)
        return p

    def publish(self, path: Path) -> None:
        name = f"{path.parent.name}/{path.name}"
        try:
            self.s3.upload_file(str(path), self.bucket, self._object(name))
        except Exception as e:  # S3UploadFailedError, connection errors, at the edge
            raise self._error(e, f"cannot upload {name}") from e

    def entries(self) -> Iterator[tuple[str, int]]:
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            ):
                for obj in page.get("Contents", ()):
                    yield str(obj["Key"]).rsplit("/", 1)[-1], int(obj["Size"])
        except StateError:
            raise
        except Exception as e:
            raise self._error(e, "cannot list the cache") from e

    def remove(self, name: str) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self._object(f"{name[:2]}/{name}"))
        except Exception as e:
            raise self._error(e, f"cannot remove {name}") from e
        super().remove(name)


def open_cache(url: str | None, folder: Path) -> PieceCache:
    """The cache of ``url`` (``s3://BUCKET/PREFIX``; else ``$AUDIOBOOK_CACHE_URL``; none:
    the local ``folder``), with this machine's copies of its pieces in ``folder``."""
    url = url or os.environ.get("AUDIOBOOK_CACHE_URL") or None
    if url is None or url == str(folder):
        return LocalCache(folder)
    if not url.startswith("s3://"):
        raise StateError(f"{url}: not a cache URL (s3://BUCKET/PREFIX)")
    return S3Cache(url, folder)
