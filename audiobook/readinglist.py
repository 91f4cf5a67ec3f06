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
``read_list``, which fetches through ``fetch.Fetcher``.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import lxml.etree
import lxml.html

from .errors import CorruptDocument, InputError

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


def read_list(source: str, data: bytes, kind: ListKind, fetcher: Any) -> ReadingList:
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
