"""The web's seam: documents fetched over HTTP(S) with httpx, kept in a conditional cache.

    url ─Fetcher.fetch─> Fetched(path of the body in the cache, kind, final URL, ...)
         │  only http/https (file:, ftp:, data:, javascript: ... refused, redirects too)
         │  redirects followed one by one, at most FetchConfig.max_redirects
         │  a timeout for connecting and for each read, a deadline for the whole body
         │  a size cap (Content-Length first, then the bytes as they come)
         │  the Content-Type decides the kind: html, markdown, text, pdf, epub, feed,
         │  opml, csv, json, image (application/octet-stream: the URL's extension decides)
         │  the declared charset decodes text: the body is stored as UTF-8 with a BOM,
         │  so the ingestors read it as the server said (a BOM outranks <meta charset>)
         └─ If-None-Match / If-Modified-Since from the cache: a 304 costs no download

Every failure is a ``FetchError`` (or ``UnsupportedFormat`` for a content type we do not
read, ``CorruptDocument`` for a body that its declared charset cannot decode) whose
message is one line naming the URL. The cache is a folder: ``<key>.json`` (the URL's
validators and what the body is) beside ``<key>.<ext>`` (the body; ``SUFFIX`` gives
the extension, and a JSON body's is ``.body.json``), each written whole
(``files.write_atomic``), so a crash leaves the previous entry or none. A fetch the
cache serves (a 304) touches the entry's record: the record's mtime says when the entry
was last used, and ``prune_cache`` (``audiobook gc``) removes the entries not used for
``UNUSED_DAYS`` days. The cache of a state folder is its ``web/`` (``CACHE_FOLDER``).

Tests inject nothing: they serve pages from a real HTTP server on 127.0.0.1. The
``transport=`` argument is httpx's own seam, there for a caller that needs it.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

import httpx

from . import __version__ as _version
from .errors import CorruptDocument, FetchError, UnsupportedFormat, one_line
from .files import write_atomic
from .ingest._decode import codec_for

CACHE_FOLDER = "web"  # the conditional cache's folder in a state folder
UNUSED_DAYS = 30.0  # gc removes a cached download that no fetch used for this long

Kind = Literal["html", "markdown", "text", "pdf", "epub", "feed", "opml", "csv", "json", "image"]
DOCUMENT_KINDS: tuple[Kind, ...] = ("html", "markdown", "text", "pdf", "epub")
LIST_KINDS: tuple[Kind, ...] = ("feed", "opml", "csv", "json")

# Content-Type (without parameters) -> what the body is.
MEDIA_KINDS: dict[str, Kind] = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
    "application/epub+zip": "epub",
    "application/rss+xml": "feed",
    "application/atom+xml": "feed",
    "application/feed+json": "json",
    "application/xml": "feed",
    "text/xml": "feed",
    "application/rdf+xml": "feed",
    "text/x-opml": "opml",
    "text/x-opml+xml": "opml",
    "application/xml+opml": "opml",
    "text/csv": "csv",
    "application/json": "json",
    "image/jpeg": "image",
    "image/png": "image",
}
# A server that does not say (application/octet-stream): the URL's extension decides.
EXTENSION_KINDS: dict[str, Kind] = {
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".pdf": "pdf",
    ".epub": "epub",
    ".rss": "feed",
    ".atom": "feed",
    ".xml": "feed",
    ".opml": "opml",
    ".csv": "csv",
    ".json": "json",
    ".jpg": "image",
    ".jpeg": "image",
    ".png": "image",
}
SUFFIX: dict[Kind, str] = {
    "html": ".html",
    "markdown": ".md",
    "text": ".txt",
    "pdf": ".pdf",
    "epub": ".epub",
    "feed": ".xml",
    "opml": ".opml",
    "csv": ".csv",
    "json": ".body.json",  # not <key>.json: that name is the entry's record
    "image": ".img",
}
# Bodies decoded with the declared charset and stored as UTF-8 (with a BOM where the
# reader honours one); XML keeps its bytes: its parser reads its own declaration.
_TEXT_KINDS: tuple[Kind, ...] = ("html", "markdown", "text", "csv", "json")
_CHUNK = 64 * 1024
_KIND_NAMES = {
    "html": "HTML",
    "markdown": "Markdown",
    "text": "text",
    "pdf": "PDF",
    "epub": "EPUB",
    "feed": "RSS/Atom",
    "opml": "OPML",
    "csv": "CSV",
    "json": "JSON",
    "image": "JPEG/PNG",
}


@dataclass(frozen=True)
class FetchConfig:
    """The knobs of every download.

    timeout:       seconds to connect, and to wait for each piece of the body
    deadline:      seconds for a whole response, redirects included
    max_bytes:     the largest body taken (Content-Length is checked first)
    max_redirects: redirects followed before giving up
    """

    timeout: float = 20.0
    deadline: float = 120.0
    max_bytes: int = 64 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = f"audiobook/{_version} (articles read aloud)"


DEFAULT_FETCH = FetchConfig()


@dataclass(frozen=True)
class Fetched:
    """A document on disk, as the web served it.

    url:       the URL asked for; ``final_url`` where the redirects ended
    path:      the body in the cache (its extension says the kind)
    status:    "downloaded" (a 200) or "not-modified" (a 304: the cached body serves)
    """

    url: str
    final_url: str
    path: Path
    kind: Kind
    media_type: str
    charset: str | None
    status: Literal["downloaded", "not-modified"]
    etag: str | None = None
    last_modified: str | None = None
    notes: tuple[str, ...] = field(default=())


def is_url(text: str | os.PathLike[str]) -> bool:
    """Whether an argument names a URL rather than a file (``scheme://`` or ``scheme:``
    with a scheme of two letters or more, so that ``C:\\`` stays a path)."""
    s = os.fspath(text)
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", s)) and not Path(s).exists()


def check_url(url: str) -> str:
    """``url`` if it is http(s) with a host; else a one-line FetchError."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise FetchError(url, "not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(url, f"only http and https URLs are fetched, not {scheme or 'no'}:")
    if not parts.hostname:
        raise FetchError(url, "a URL without a host")
    return url


def media_kind(content_type: str | None, url: str) -> tuple[Kind | None, str, str | None]:
    """(kind, media type, declared charset) from a Content-Type header and the URL."""
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    kind = MEDIA_KINDS.get(media)
    if kind is None and media in ("", "application/octet-stream", "binary/octet-stream"):
        kind = EXTENSION_KINDS.get(Path(urlsplit(url).path).suffix.lower())
    if kind is None and media.endswith("+xml") and ("rss" in media or "atom" in media):
        kind = "feed"
    return kind, media or "application/octet-stream", charset


def cache_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


class Fetcher:
    """Fetches URLs into ``cache_dir`` (see the module docstring); one httpx client.

    ``fetch(url, kinds=...)`` accepts only the listed kinds (the documents audiobook
    reads, by default). Counters say what the runs cost: ``downloads`` (bodies
    received) and ``not_modified`` (304s). Use as a context manager, or ``close()``.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        config: FetchConfig = DEFAULT_FETCH,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.config = config
        self.downloads = 0
        self.not_modified = 0
        self._client = httpx.Client(
            timeout=httpx.Timeout(config.timeout),
            follow_redirects=False,
            headers={"User-Agent": config.user_agent},
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # --- the cache ------------------------------------------------------------------

    def _meta_path(self, url: str) -> Path:
        return self.cache_dir / f"{cache_key(url)}.json"

    def cached(self, url: str) -> Fetched | None:
        """The cached copy of ``url`` when both its record and its body are there."""
        try:
            meta = json.loads(self._meta_path(url).read_text("utf-8"))
            path = self.cache_dir / meta["file"]
            if not path.is_file():
                return None
            return Fetched(
                url=url,
                final_url=meta["final_url"],
                path=path,
                kind=meta["kind"],
                media_type=meta["media_type"],
                charset=meta.get("charset"),
                status="not-modified",
                etag=meta.get("etag"),
                last_modified=meta.get("last_modified"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, fetched: Fetched, body: bytes) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(fetched.path, body)
        meta = {
            "url": fetched.url,
            "final_url": fetched.final_url,
            "file": fetched.path.name,
            "kind": fetched.kind,
            "media_type": fetched.media_type,
            "charset": fetched.charset,
            "etag": fetched.etag,
            "last_modified": fetched.last_modified,
        }
        write_atomic(self._meta_path(fetched.url), json.dumps(meta, indent=1).encode("utf-8"))

    # --- fetching -------------------------------------------------------------------

    def fetch(self, url: str, kinds: tuple[Kind, ...] = DOCUMENT_KINDS) -> Fetched:
        """``url`` into the cache (or the cached copy, when the server says 304)."""
        check_url(url)
        cached = self.cached(url)
        headers = {}
        if cached is not None and cached.kind in kinds:
            if cached.etag:
                headers["If-None-Match"] = cached.etag
            if cached.last_modified:
                headers["If-Modified-Since"] = cached.last_modified
        try:
            return self._fetch(url, kinds, headers, cached)
        except httpx.TimeoutException:
            raise FetchError(
                url, f"timed out (no answer within {self.config.timeout:g} s)"
            ) from None
        except httpx.TooManyRedirects:
            raise FetchError(url, f"more than {self.config.max_redirects} redirects") from None
        except httpx.UnsupportedProtocol as exc:
            raise FetchError(url, f"redirected to an unsupported URL ({one_line(exc)})") from None
        except httpx.HTTPError as exc:
            raise FetchError(url, f"cannot fetch ({one_line(exc) or type(exc).__name__})") from None

    def _fetch(
        self, url: str, kinds: tuple[Kind, ...], headers: dict[str, str], cached: Fetched | None
    ) -> Fetched:
        start = time.monotonic()
        request = self._client.build_request("GET", url, headers=headers)
        target = url
        for _hop in range(self.config.max_redirects + 1):
            response = self._client.send(request, stream=True)
            try:
                next_request = response.next_request
                if next_request is None:
                    return self._answer(url, response, kinds, cached, start)
                target = str(next_request.url)
                scheme = next_request.url.scheme
                if scheme not in ("http", "https"):
                    raise FetchError(url, f"redirected to a {scheme}: URL, which is not fetched")
            finally:
                response.close()
            request = next_request
        raise FetchError(url, f"more than {self.config.max_redirects} redirects (last: {target})")

    def _answer(
        self,
        url: str,
        response: httpx.Response,
        kinds: tuple[Kind, ...],
        cached: Fetched | None,
        start: float,
    ) -> Fetched:
        final = str(response.url)
        if response.status_code == 304 and cached is not None:
            self.not_modified += 1
            with contextlib.suppress(OSError):  # used now: what gc goes by
                os.utime(self._meta_path(url))
            return cached
        if response.status_code != 200:
            reason = response.reason_phrase or ""
            raise FetchError(url, f"HTTP {response.status_code} {reason}".rstrip())
        kind, media, charset = media_kind(response.headers.get("content-type"), final)
        if kind is None or kind not in kinds:
            wanted = ", ".join(_KIND_NAMES.get(k, k) for k in kinds)
            raise UnsupportedFormat(
                url, f"content type {media} is not one audiobook reads here ({wanted})"
            )
        cap = self.config.max_bytes
        length = response.headers.get("content-length")
        if length and length.isdigit() and int(length) > cap:
            raise FetchError(url, f"too large ({int(length):,} bytes; the limit is {cap:,})")
        chunks: list[bytes] = []
        received = 0
        for chunk in response.iter_bytes(_CHUNK):
            received += len(chunk)
            if received > cap:
                raise FetchError(url, f"too large (over the limit of {cap:,} bytes)")
            if time.monotonic() - start > self.config.deadline:
                raise FetchError(url, f"too slow (not done within {self.config.deadline:g} s)")
            chunks.append(chunk)
        body = b"".join(chunks)
        self.downloads += 1
        if kind in _TEXT_KINDS:
            body = _as_utf8(url, body, charset, bom=kind in ("html", "markdown", "text"))
        fetched = Fetched(
            url=url,
            final_url=final,
            path=self.cache_dir / f"{cache_key(url)}{SUFFIX[kind]}",
            kind=kind,
            media_type=media,
            charset=charset,
            status="downloaded",
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )
        if cached is not None and cached.path != fetched.path:
            cached.path.unlink(missing_ok=True)
        self._store(fetched, body)
        return fetched


# --- housekeeping -----------------------------------------------------------------------


def stale_downloads(
    files: Iterable[tuple[str, float]],
    bodies: Mapping[str, str],
    *,
    now: float,
    max_age: float,
) -> list[str]:
    """The names of the cache files to remove (pure). ``files``: (name, mtime) of each
    file in the cache; ``bodies``: each readable record's key and the body file it
    names. An entry (the files whose name starts with one key) goes when it was not
    used for ``max_age`` seconds: since its record's mtime (touched by every fetch it
    served) or, with no record, since its newest file was written. A record whose body
    is gone (or that cannot be read) goes at once: it serves nothing. Temp files
    (``.name...tmp``) are ``files.sweep_stale``'s."""
    entries: dict[str, dict[str, float]] = {}
    for name, mtime in files:
        if not name.startswith("."):
            entries.setdefault(name.split(".", 1)[0], {})[name] = mtime
    doomed: list[str] = []
    for key, entry in sorted(entries.items()):
        record = f"{key}.json"
        used = entry.get(record, max(entry.values()))
        broken = record in entry and bodies.get(key) not in entry
        if broken or now - used > max_age:
            doomed += sorted(entry)
    return doomed


def prune_cache(
    cache_dir: str | os.PathLike[str],
    *,
    max_age_days: float = UNUSED_DAYS,
    dry_run: bool = False,
    now: float | None = None,
) -> tuple[int, int]:
    """Remove the downloads of ``cache_dir`` that no fetch used for ``max_age_days``
    days, and records that serve nothing (``stale_downloads``); returns (files removed,
    bytes freed), or what would be with ``dry_run``. A missing folder has nothing."""
    folder = Path(cache_dir)
    files: list[tuple[str, float]] = []
    sizes: dict[str, int] = {}
    bodies: dict[str, str] = {}
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:  # removed meanwhile
            continue
        files.append((entry.name, st.st_mtime))
        sizes[entry.name] = st.st_size
        key, _, rest = entry.name.partition(".")
        if rest == "json":
            try:
                bodies[key] = str(json.loads(Path(entry.path).read_text("utf-8"))["file"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
    clock = time.time() if now is None else now
    removed = freed = 0
    for name in stale_downloads(files, bodies, now=clock, max_age=max_age_days * 86400):
        if not dry_run:
            try:
                (folder / name).unlink()
            except FileNotFoundError:
                continue
        removed += 1
        freed += sizes[name]
    return removed, freed


_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _as_utf8(url: str, body: bytes, charset: str | None, *, bom: bool) -> bytes:
    """A text body decoded as its Content-Type declares, as UTF-8 (a BOM in the body
    outranks the header, as in browsers). Without a declared charset the bytes stay as
    they are, for the ingestor's own sniffing."""
    if charset is None or any(body.startswith(b) for b in _BOMS):
        return body
    codec = codec_for(charset)
    if codec is None:
        raise CorruptDocument(url, f"declares an unknown charset {charset!r}")
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        raise CorruptDocument(
            url,
            f"is not {charset} as its Content-Type declares "
            f"(byte 0x{body[exc.start]:02x} at offset {exc.start:,})",
        ) from None
    return (codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8")
