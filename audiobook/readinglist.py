"""Reading lists: the articles a feed, an OPML file, a list of URLs or a read-later
export points to.

    RSS / Atom feed (URL or file)  ─feedparser─┐
    OPML (its feeds, its links)    ─lxml───────┤
    URLs, one per line             ────────────┤
    Pocket export (HTML or CSV)    ────────────┼──> ReadingList(items: ListItem(url, title,
    Instapaper export (HTML, CSV)  ────────────┤        published, author, image))
    Wallabag export (JSON)         ────────────┘

``list_kind(data, name)`` tells whether a document is a reading list (and which) or an
article: feeds and OPML by their root element, exports by the marks their services put
in them (Pocket's ``time_added`` links, Instapaper's "Instapaper: Export" title, the
columns of their CSVs, Wallabag's entry objects), a text file only when every line is
an http(s) URL. ``select`` keeps what a run should make episodes of: newer than
``since``, not already in the podcast (by URL), at most ``limit``, newest first.

Only http and https links are taken; anything else in a list (``javascript:``,
``file:``, ``mailto:``) is left out with a warning. Everything here is pure except
``read_list``, ``gather`` and ``read_source``, which fetch through ``fetch.Fetcher``:

    inputs (files, URLs) ─gather─> Source* (a file, or a URL with its list's metadata)
    Source ─read_source─> Book (source = the URL, url = canonical or final URL, date,
                                author and lead image from the page, else the list)
"""

from __future__ import annotations

import calendar
import contextlib
import csv
import datetime as dt
import io
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import lxml.etree
import lxml.html

from .errors import CorruptDocument, InputError, UnsupportedFormat
from .fetch import DEFAULT_FETCH, DOCUMENT_KINDS, LIST_KINDS, FetchConfig, Fetched, Fetcher, is_url
from .files import temp_dir_prefix
from .ingest import IngestOptions, read_book
from .model import Book, Cover

ListKind = Literal[
    "feed", "opml", "urls", "pocket-html", "pocket-csv", "instapaper-html", "instapaper-csv",
    "wallabag",
]  # fmt: skip


@dataclass(frozen=True)
class ListItem:
    """One article a reading list points to; what the list says about it is a fallback
    for what the page itself does not say."""

    url: str
    title: str | None = None
    published: dt.datetime | None = None  # aware, UTC
    author: str | None = None
    image: str | None = None  # the lead image's URL, where the list gives one


@dataclass(frozen=True)
class ReadingList:
    source: str
    kind: ListKind
    items: tuple[ListItem, ...]
    feeds: tuple[str, ...] = ()  # OPML: the feeds it subscribes to (read by read_list)
    warnings: tuple[str, ...] = field(default=())


# --- which kind -------------------------------------------------------------------------


def list_kind(data: bytes, name: str) -> ListKind | None:
    """Which reading list ``data`` is, or None when it is an article (or not a list we
    know). ``name`` is the file name or URL, whose extension helps."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name.rsplit("/", 1)[-1] else ""
    if head.startswith((b"<?xml", b"<rss", b"<feed", b"<rdf", b"<opml")):
        root = _xml_root(data)
        if root in ("rss", "feed", "RDF"):
            return "feed"
        if root == "opml":
            return "opml"
    if ext == ".json" or head.startswith((b"[", b"{")):
        try:
            doc = json.loads(data.decode("utf-8-sig"))
        except ValueError:
            return None
        return "wallabag" if _wallabag_entries(doc) is not None else None
    if ext == ".csv":
        header = _text(data).splitlines()[0:1]
        columns = {c.strip().lower() for c in header[0].split(",")} if header else set()
        if {"url", "title", "time_added"} <= columns:
            return "pocket-csv"
        if {"url", "title", "folder"} <= columns:
            return "instapaper-csv"
        return None
    if b"<html" in head or b"<!doctype" in head:
        text = _text(data[:200_000]).lower()
        if "<title>pocket export</title>" in text or " time_added=" in text:
            return "pocket-html"
        if "<title>instapaper: export</title>" in text:
            return "instapaper-html"
        return None
    lines = [line.strip() for line in _text(data).splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if lines and all(_is_http(line) and " " not in line for line in lines):
        return "urls"
    return None


def _xml_root(data: bytes) -> str | None:
    try:
        parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, recover=True)
        root = lxml.etree.fromstring(data, parser)
    except lxml.etree.XMLSyntaxError:
        return None
    if root is None:
        return None
    return lxml.etree.QName(root).localname


def _text(data: bytes) -> str:
    return data.decode("utf-8-sig", errors="replace")


def _is_http(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https") and bool(urlsplit(url).netloc)


# --- parsing ------------------------------------------------------------------------------


def parse_list(data: bytes, source: str, kind: ListKind | None = None) -> ReadingList:
    """The items of a reading list (its kind found by ``list_kind`` when not given)."""
    kind = kind or list_kind(data, source)
    if kind is None:
        raise CorruptDocument(source, "not a reading list audiobook knows")
    warnings: list[str] = []
    feeds: list[str] = []
    if kind == "feed":
        raw = _feed_items(data, source, warnings)
    elif kind == "opml":
        raw, feeds = _opml(data, source)
    elif kind == "urls":
        raw = [ListItem(line.strip()) for line in _text(data).splitlines() if _listed(line)]
    elif kind in ("pocket-html", "instapaper-html"):
        raw = _export_html(data, source)
    elif kind in ("pocket-csv", "instapaper-csv"):
        raw = _export_csv(data)
    else:
        raw = _wallabag(data, source)
    items: list[ListItem] = []
    for item in raw:
        if _is_http(item.url):
            items.append(item)
        else:
            warnings.append(f"{source}: left out {item.url[:80]!r}: not an http(s) link")
    return ReadingList(source, kind, tuple(items), tuple(feeds), tuple(warnings))


def _listed(line: str) -> bool:
    line = line.strip()
    return bool(line) and not line.startswith("#")


def _feed_items(data: bytes, source: str, warnings: list[str]) -> list[ListItem]:
    import feedparser

    parsed: Any = feedparser.parse(data, response_headers={"content-location": source})
    if parsed.bozo and not any(e.get("link") or e.get("links") for e in parsed.entries):
        problem = str(parsed.get("bozo_exception", "")) or "not a feed"
        raise CorruptDocument(source, f"not a readable feed ({' '.join(problem.split())})")
    if parsed.bozo:
        warnings.append(f"{source}: a damaged feed, read as far as it goes")
    items = []
    for entry in parsed.entries:
        link = entry.get("link") or next(
            (lk.get("href") for lk in entry.get("links", ()) if lk.get("rel") == "alternate"),
            None,
        )
        if not link:
            continue
        when = entry.get("published_parsed") or entry.get("updated_parsed")
        image = None
        for media in [*entry.get("media_thumbnail", ()), *entry.get("media_content", ())]:
            if media.get("url") and str(media.get("medium", "image")) == "image":
                image = media["url"]
                break
        items.append(
            ListItem(
                url=urljoin(source, link) if _is_http(source) else link,
                title=entry.get("title") or None,
                published=dt.datetime.fromtimestamp(calendar.timegm(when), dt.UTC)
                if when
                else None,
                author=entry.get("author") or None,
                image=image,
            )
        )
    return items


def _opml(data: bytes, source: str) -> tuple[list[ListItem], list[str]]:
    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, recover=True)
    try:
        root = lxml.etree.fromstring(data, parser)
    except lxml.etree.XMLSyntaxError as exc:
        raise CorruptDocument(source, f"not a readable OPML file ({exc})") from None
    if root is None:
        raise CorruptDocument(source, "not a readable OPML file")
    items: list[ListItem] = []
    feeds: list[str] = []
    for outline in root.iter("outline"):
        feed = outline.get("xmlUrl") or outline.get("xmlurl")
        link = outline.get("url") or outline.get("htmlUrl")
        if feed:
            feeds.append(feed)
        elif link and (outline.get("type") or "link").lower() == "link":
            title = outline.get("title") or outline.get("text")
            items.append(ListItem(link, title=title, published=_date(outline.get("created"))))
    return items, feeds


def _export_html(data: bytes, source: str) -> list[ListItem]:
    try:
        page = lxml.html.document_fromstring(_text(data))
    except (lxml.etree.ParserError, ValueError) as exc:
        raise CorruptDocument(source, f"not a readable export ({exc})") from None
    items = []
    for a in page.iter("a"):
        href = (a.get("href") or "").strip()
        if not href:
            continue
        added = a.get("time_added")
        items.append(
            ListItem(
                href,
                title=(a.text_content() or "").strip() or None,
                published=_epoch(added),
            )
        )
    return items


def _export_csv(data: bytes) -> list[ListItem]:
    rows = csv.DictReader(io.StringIO(_text(data)))
    items = []
    for row in rows:
        lower = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        url = lower.get("url", "")
        if not url:
            continue
        when = lower.get("time_added") or lower.get("timestamp")
        items.append(ListItem(url, title=lower.get("title") or None, published=_epoch(when)))
    return items


def _wallabag_entries(doc: Any) -> list[dict[str, Any]] | None:
    if isinstance(doc, dict):
        doc = doc.get("_embedded", {}).get("items") if "_embedded" in doc else None
    if not isinstance(doc, list) or not doc:
        return None
    entries = [e for e in doc if isinstance(e, dict)]
    if not entries or not all("url" in e for e in entries):
        return None
    return entries


def _wallabag(data: bytes, source: str) -> list[ListItem]:
    try:
        entries = _wallabag_entries(json.loads(_text(data))) or []
    except ValueError as exc:
        raise CorruptDocument(source, f"not a readable Wallabag export ({exc})") from None
    items = []
    for e in entries:
        authors = e.get("published_by") or []
        author = (
            ", ".join(a for a in authors if isinstance(a, str))
            if isinstance(authors, list)
            else None
        )
        items.append(
            ListItem(
                str(e["url"]),
                title=str(e["title"]) if e.get("title") else None,
                published=_date(e.get("published_at")) or _date(e.get("created_at")),
                author=author or None,
                image=e.get("preview_picture") or None,
            )
        )
    return items


def _epoch(value: str | None) -> dt.datetime | None:
    if value and value.strip().isdigit():
        return dt.datetime.fromtimestamp(int(value.strip()), dt.UTC)
    return _date(value)


def _date(value: object) -> dt.datetime | None:
    from .podcast import parse_date

    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    # Wallabag writes offsets without a colon (+0100), which fromisoformat takes since 3.11
    when = parse_date(text)
    if when is None and len(text) == 19 and text[10] == " ":
        when = parse_date(text.replace(" ", "T"))
    return when.astimezone(dt.UTC) if when else None


# --- choosing -----------------------------------------------------------------------------


def same_url(url: str) -> str:
    """A URL as compared with the podcast's episodes: without its fragment, scheme and
    host in lower case, no trailing slash on the path."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def select(
    items: Iterable[ListItem],
    *,
    since: dt.datetime | None = None,
    limit: int | None = None,
    known: Iterable[str] = (),
) -> tuple[list[ListItem], int]:
    """The items a run makes episodes of, newest first (undated ones after the dated,
    in list order), and how many were already in the podcast.

    since: leave out items the list dates before it (undated items are kept)
    limit: at most this many
    known: URLs already in the podcast (each episode's source and link)
    """
    seen = {same_url(u) for u in known}
    chosen: list[ListItem] = []
    skipped = 0
    taken: set[str] = set()
    for item in items:
        key = same_url(item.url)
        if key in seen:
            skipped += 1
            continue
        if key in taken:
            continue
        if since is not None and item.published is not None and item.published < since:
            continue
        taken.add(key)
        chosen.append(item)
    order = sorted(
        range(len(chosen)),
        key=lambda i: (
            chosen[i].published is None,
            -(chosen[i].published.timestamp() if chosen[i].published else 0.0),  # type: ignore[union-attr]
            i,
        ),
    )
    ordered = [chosen[i] for i in order]
    return (ordered[:limit] if limit is not None else ordered), skipped


def read_list(source: str, data: bytes, kind: ListKind, fetcher: Fetcher) -> ReadingList:
    """A reading list from its bytes; an OPML file's feeds are fetched (through
    ``fetcher``, a ``fetch.Fetcher``) and read too. A feed that cannot be fetched is a
    warning: the others go on."""
    rl = parse_list(data, source, kind)
    if rl.kind != "opml" or not rl.feeds:
        return rl
    items = list(rl.items)
    warnings = list(rl.warnings)
    for feed_url in rl.feeds:
        try:
            fetched = fetcher.fetch(feed_url, kinds=("feed",))
            sub = parse_list(fetched.path.read_bytes(), feed_url, "feed")
        except InputError as exc:
            warnings.append(str(exc))
            continue
        items += sub.items
        warnings += sub.warnings
    return ReadingList(source, rl.kind, tuple(items), rl.feeds, tuple(warnings))


def known_urls(episodes: Sequence[Any]) -> list[str]:
    """The URLs of a podcast's episodes (their source and their link)."""
    urls: list[str] = []
    for ep in episodes:
        urls += [u for u in (ep.source, ep.link) if u and _is_http(u)]
    return urls


# --- what a run reads ---------------------------------------------------------------------

# Files that may be reading lists rather than articles (looked into, up to this size).
LIST_SUFFIXES = (".opml", ".xml", ".rss", ".atom", ".csv", ".json", ".txt", ".html", ".htm")
MAX_LIST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    """One article a run reads: a file, or a URL with what its list said of it (and its
    copy in the fetch cache, when gathering already fetched it)."""

    path: Path | None = None
    item: ListItem | None = None
    fetched: Fetched | None = None

    @property
    def name(self) -> str:
        """The file, or the URL: what its messages name."""
        return os.fspath(self.path) if self.path is not None else self.item.url  # type: ignore[union-attr]

    @property
    def identity(self) -> str:
        """What the episode's guid is made of when the article has no canonical URL."""
        if self.path is not None:
            return self.path.resolve().as_uri()
        return self.item.url  # type: ignore[union-attr]


@dataclass(frozen=True)
class Gathered:
    sources: tuple[Source, ...]
    failed: tuple[InputError, ...] = ()
    warnings: tuple[str, ...] = ()
    already: int = 0  # list items left out because the podcast has them (by URL)


def gather(
    inputs: Sequence[str | os.PathLike[str]],
    fetcher: Fetcher,
    *,
    known: Iterable[str] = (),
    since: dt.datetime | None = None,
    limit: int | None = None,
) -> Gathered:
    """The articles of ``inputs`` (files, URLs, reading lists as files or URLs), in
    order: each file or URL given as an article, then the items the lists choose
    (``select``). A URL or list that cannot be fetched or read is in ``failed``; the
    others go on."""
    sources: list[Source] = []
    failed: list[InputError] = []
    warnings: list[str] = []
    listed: list[ListItem] = []
    for given in inputs:
        try:
            if is_url(given):
                url = os.fspath(given)
                fetched = fetcher.fetch(url, kinds=DOCUMENT_KINDS + LIST_KINDS)
                data = fetched.path.read_bytes() if fetched.kind not in ("pdf", "epub") else b""
                kind = list_kind(data, fetched.final_url) if data else None
                if kind is None and fetched.kind in LIST_KINDS:
                    raise CorruptDocument(url, f"a {fetched.media_type} that is no reading list")
                if kind is None:
                    sources.append(Source(item=ListItem(url), fetched=fetched))
                    continue
                rl = read_list(url, data, kind, fetcher)
            else:
                path = Path(given)
                kind = _file_list_kind(path)
                if kind is None:
                    sources.append(Source(path=path))
                    continue
                rl = read_list(os.fspath(path), path.read_bytes(), kind, fetcher)
        except InputError as exc:
            failed.append(exc)
            continue
        except OSError as exc:
            failed.append(InputError(given, f"cannot read: {exc.strerror or exc}"))
            continue
        listed += rl.items
        warnings += rl.warnings
    chosen, already = select(listed, since=since, limit=limit, known=known)
    sources += [Source(item=item) for item in chosen]
    return Gathered(tuple(sources), tuple(failed), tuple(warnings), already)


def _file_list_kind(path: Path) -> ListKind | None:
    if path.suffix.lower() not in LIST_SUFFIXES:
        return None
    try:
        if path.stat().st_size > MAX_LIST_BYTES:
            return None
        return list_kind(path.read_bytes(), path.name)
    except OSError:
        return None


def read_source(
    source: Source, fetcher: Fetcher, options: IngestOptions | None = None
) -> tuple[Book, tuple[str, ...]]:
    """The article of ``source`` as a Book, and notes on what was recovered from.

    A URL's book says where it came from: ``source`` is the URL, ``url`` its canonical
    URL (else where the redirects ended); its date, author and title fall back on what
    its reading list said; its lead image (the list's, else the page's og:image or
    JSON-LD image) is fetched when the page has none of its own. Errors name the URL.
    """
    if source.path is not None:
        return read_book(source.path, options), ()
    item = source.item
    assert item is not None
    fetched = source.fetched or fetcher.fetch(item.url)
    if fetched.kind not in DOCUMENT_KINDS:
        raise UnsupportedFormat(item.url, f"{fetched.media_type} is not an article")
    try:
        book = read_book(fetched.path, options)
    except InputError as exc:  # the same error, naming the URL instead of the cache file
        raise type(exc)(item.url, exc.problem) from None
    notes: list[str] = []
    cover = book.cover
    if cover is None and fetched.kind == "html":
        cover, note = _lead_image(item, fetched, fetcher)
        if note:
            notes.append(note)
    title = book.title
    if item.title and title == fetched.path.stem:  # the page had no title of its own
        title = item.title
    book = replace(
        book,
        title=title,
        source=item.url,
        url=book.url if book.url and _is_http(book.url) else fetched.final_url,
        date=book.date or (item.published.isoformat() if item.published else None),
        authors=book.authors or ((item.author,) if item.author else ()),
        cover=cover,
    )
    return book, tuple(notes)


def _lead_image(item: ListItem, fetched: Fetched, fetcher: Fetcher) -> tuple[Cover | None, str]:
    from .ingest.html import page_metadata, parse_html

    src = item.image
    if not src:
        try:
            src = page_metadata(parse_html(fetched.path.read_bytes())).image
        except (OSError, ValueError, lxml.etree.LxmlError):
            src = None
    if not src:
        return None, ""
    url = urljoin(fetched.final_url, src)
    if not _is_http(url):
        return None, ""
    try:
        image = fetcher.fetch(url, kinds=("image",))
        return Cover(image.path.read_bytes(), image.media_type), ""
    except (InputError, OSError) as exc:
        return None, f"lead image left out: {exc}"


def read_document(
    given: str | os.PathLike[str],
    options: IngestOptions | None = None,
    *,
    fetch_dir: str | os.PathLike[str] | None = None,
    config: FetchConfig = DEFAULT_FETCH,
) -> Book:
    """A file or an http(s) URL into a Book (``read_source``'s metadata for a URL). A
    URL is fetched into ``fetch_dir`` (its conditional cache), else a temporary folder
    removed after."""
    if not is_url(given):
        return read_book(given, options)
    url = os.fspath(given)
    with contextlib.ExitStack() as stack:
        folder = fetch_dir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix=temp_dir_prefix("fetch"))
        )
        fetcher = stack.enter_context(Fetcher(folder, config))
        return read_source(Source(item=ListItem(url)), fetcher, options)[0]


def output_name(book: Book, fmt: str) -> Path:
    """Where a URL's audiobook goes by default: its title's ASCII words, in the current
    folder (``lighthouse-keepers.m4b``; a folder for ``chapters``)."""
    ascii_title = unicodedata.normalize("NFKD", book.title).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9]+", "-", ascii_title).strip("-").lower()[:60].strip("-")
    stem = stem or "article"
    return Path(stem if fmt == "chapters" else f"{stem}.{fmt}")
