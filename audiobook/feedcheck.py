"""What the podcast directories accept: ``podcast --check`` and the artwork they take.

    feed.xml ─check_feed─> [problem, ...]            (edge: reads the feed, the files
               │                                      beside it, fetches the artwork)
               └─ feed_problems(data, sizes, artwork) (pure: the feed's bytes, the sizes
                                                       of the files beside it, what is
                                                       wrong with its artwork)
    image bytes ─fit_artwork─> square RGB JPEG/PNG of 1400-3000 px, and a note (pure)

The rules are those of Apple Podcasts and the Podcast Index: RSS 2.0 that feedparser
reads without error; channel title, description, language, category, itunes:explicit
and artwork (JPEG or PNG, square, 1400-3000 px, RGB); at least one episode; each with a
title, an enclosure of an audio type with an http(s) URL and its byte length, a guid
found once in the feed, an RFC 2822 pubDate, podcast:chapters and podcast:transcript.
``podcast.build_episodes`` runs ``check_feed`` after every update and fits the artwork
it is given with ``fit_artwork``.
"""

from __future__ import annotations

import email.utils
import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lxml import etree

from .errors import InputError, one_line
from .fetch import Fetcher

ITUNES_NS = "http://www.itunes.com/dtds/podcast-1.0.dtd"
PODCAST_NS = "https://podcastindex.org/namespace/1.0"
ARTWORK_MIN, ARTWORK_MAX = 1400, 3000  # px, square: Apple Podcasts' and Podcast Index's
AUDIO_TYPES = ("audio/mpeg", "audio/x-m4a", "audio/mp4", "audio/aac", "audio/ogg", "audio/opus")
_NS = {"itunes": ITUNES_NS, "podcast": PODCAST_NS}
_RFC2822 = re.compile(
    r"^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d{1,2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}(?::\d{2})? (?:[+-]\d{4}|GMT|UT|[ECMP][SD]T)$"
)


# --- pure -----------------------------------------------------------------------------


def fit_artwork(data: bytes) -> tuple[bytes, str, str | None]:
    """Artwork as the directories take it: (bytes, media type, note). A square RGB
    JPEG or PNG of 1400-3000 px is kept as it is (note None); any other size or colour
    mode is cropped to its centre square, scaled into 1400-3000 px and made RGB, in its
    own format, and the note says what was done. Not JPEG or PNG: a ValueError."""
    from PIL import Image, UnidentifiedImageError

    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not an image Pillow reads ({one_line(exc)})") from None
    fmt = img.format
    if fmt not in ("JPEG", "PNG"):
        raise ValueError(f"a {fmt or 'unknown'} image; podcast artwork is JPEG or PNG")
    media = "image/jpeg" if fmt == "JPEG" else "image/png"
    w, h = img.size
    if w == h and ARTWORK_MIN <= w <= ARTWORK_MAX and img.mode == "RGB":
        return data, media, None
    mode = img.mode
    if img.mode != "RGB":
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", img.size, "white")  # transparency over white
        flat.paste(rgba, mask=rgba.getchannel("A"))
        img = flat
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    target = min(max(side, ARTWORK_MIN), ARTWORK_MAX)
    img = img.crop((left, top, left + side, top + side)).resize(
        (target, target), Image.Resampling.LANCZOS
    )
    out = io.BytesIO()
    if fmt == "JPEG":
        img.save(out, "JPEG", quality=90)
    else:
        img.save(out, "PNG", optimize=True)
    note = (
        f"artwork {w}x{h} {mode} made {target}x{target} RGB"
        + (" (its centre square)" if w != h else "")
        + f": podcast directories take square RGB artwork of {ARTWORK_MIN}-{ARTWORK_MAX} px"
    )
    return out.getvalue(), media, note


def artwork_problems(data: bytes) -> list[str]:
    """What the directories refuse in an artwork image (format, shape, size, mode)."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        return ["not an image"]
    problems = []
    if img.format not in ("JPEG", "PNG"):
        problems.append(f"a {img.format} image, not JPEG or PNG")
    w, h = img.size
    if w != h:
        problems.append(f"{w}x{h} px is not square")
    elif not ARTWORK_MIN <= w <= ARTWORK_MAX:
        problems.append(f"{w}x{h} px is outside {ARTWORK_MIN}-{ARTWORK_MAX} px")
    if img.mode != "RGB":
        problems.append(f"colour mode {img.mode}, not RGB")
    return problems


def artwork_href(data: bytes) -> str | None:
    """The channel artwork's URL (``<itunes:image href>``), if the feed parses and has one."""
    try:
        root = _parse(data)
    except etree.XMLSyntaxError:
        return None
    image = root.find("channel/itunes:image", _NS)
    return (image.get("href") or None) if image is not None else None


def local_name(url: str) -> str:
    """The file name a URL of the feed has beside it (its last path segment)."""
    return unquote(url.rsplit("/", 1)[-1])


def feed_problems(
    data: bytes, *, sizes: Mapping[str, int], artwork: Sequence[str] = ()
) -> list[str]:
    """What Apple Podcasts or the Podcast Index would refuse in the feed ``data``, one
    line each (module docstring). ``sizes``: the files beside the feed by name, whose
    sizes enclosure lengths must match; ``artwork``: what is wrong with the channel
    artwork, found by whoever could look at it (``check_feed``)."""
    import feedparser

    try:
        root = _parse(data)
    except etree.XMLSyntaxError as exc:
        return [f"not well-formed XML ({one_line(exc)})"]
    problems: list[str] = []
    parsed: Any = feedparser.parse(data)
    if parsed.bozo:
        problems.append(f"feedparser: {one_line(parsed.get('bozo_exception', 'bozo'))}")
    channel = root.find("channel")
    if root.tag != "rss" or root.get("version") != "2.0" or channel is None:
        return [*problems, "not an RSS 2.0 feed (<rss version='2.0'><channel>)"]

    def text(el: etree._Element, p: str) -> str:
        return (el.findtext(p, namespaces=_NS) or "").strip()

    for tag in ("title", "description", "language"):
        if not text(channel, tag):
            problems.append(f"channel: no <{tag}>")
    category = channel.find("itunes:category", _NS)
    if category is None or not category.get("text"):
        problems.append("channel: no <itunes:category text=...>")
    explicit = text(channel, "itunes:explicit")
    if explicit not in ("true", "false"):
        problems.append(
            "channel: <itunes:explicit> must be true or false"
            + (f", not {explicit!r}" if explicit else " (it is missing)")
        )
    image = channel.find("itunes:image", _NS)
    href = image.get("href", "") if image is not None else ""
    if not href:
        problems.append("channel: no artwork (<itunes:image href=...>)")
    else:
        if not href.startswith(("http://", "https://")):
            problems.append(f"channel artwork: {href[:60]} is not an http(s) URL")
        problems += [f"channel artwork: {p}" for p in artwork]
    items = channel.findall("item")
    if not items:
        problems.append("channel: no episodes (<item>)")
    guids: dict[str, int] = {}
    not_http: list[str] = []
    for n, item in enumerate(items, 1):
        where = f"episode {n} ({text(item, 'title')[:40] or 'no title'})"
        if not text(item, "title"):
            problems.append(f"{where}: no <title>")
        enclosure = item.find("enclosure")
        if enclosure is None:
            problems.append(f"{where}: no <enclosure>")
        else:
            url = enclosure.get("url", "")
            kind = enclosure.get("type", "")
            length = enclosure.get("length", "")
            if not url:
                problems.append(f"{where}: enclosure without url")
            elif not url.startswith(("http://", "https://")):
                not_http.append(url)
            if kind not in AUDIO_TYPES:
                problems.append(f"{where}: enclosure type {kind!r} is not an audio type")
            if not length.isdigit() or int(length) <= 0:
                problems.append(f"{where}: enclosure length {length!r} is not a byte count")
            elif url:
                name = local_name(url)
                size = sizes.get(name)
                if size is not None and size != int(length):
                    problems.append(
                        f"{where}: enclosure length {int(length):,} but {name} has {size:,} bytes"
                    )
        guid = text(item, "guid")
        if not guid:
            problems.append(f"{where}: no <guid>")
        elif guid in guids:
            problems.append(f"{where}: guid {guid} is also episode {guids[guid]}'s")
        else:
            guids[guid] = n
        date = text(item, "pubDate")
        if not date:
            problems.append(f"{where}: no <pubDate>")
        elif not _rfc2822(date):
            problems.append(f"{where}: pubDate {date!r} is not an RFC 2822 date")
        for tag, wanted in (
            ("podcast:chapters", "application/json+chapters"),
            ("podcast:transcript", None),
        ):
            el = item.find(tag, _NS)
            if el is None or not el.get("url") or not el.get("type"):
                problems.append(f"{where}: no <{tag} url=... type=...>")
            elif wanted and el.get("type") != wanted:
                problems.append(f"{where}: {tag} type {el.get('type')!r}, not {wanted}")
    if not_http:
        problems.append(
            f"{len(not_http)} enclosure URL(s) are not http(s) ({not_http[0][:60]}): podcast "
            "apps cannot download them; serve the folder and give --base-url"
        )
    return problems


def _parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


def _rfc2822(value: str) -> bool:
    if not _RFC2822.match(value):
        return False
    try:
        email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    return True


# --- the edge: the feed's folder, the web ---------------------------------------------


def check_feed(feed: str | os.PathLike[str], fetcher: Fetcher | None = None) -> list[str]:
    """What Apple Podcasts or the Podcast Index would refuse in ``feed`` (a feed.xml),
    one line each; an empty list when there is nothing. Files the feed points to are
    looked for beside it (by name) and, for the artwork, when not there and ``fetcher``
    is given, fetched. The checks are ``feed_problems``'."""
    path = Path(feed)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    folder = path.parent
    sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    href = artwork_href(data)
    artwork = _artwork_at(href, folder, fetcher) if href else []
    return feed_problems(data, sizes=sizes, artwork=artwork)


def _artwork_at(href: str, folder: Path, fetcher: Fetcher | None) -> list[str]:
    """What is wrong with the artwork at ``href``: the file of its name beside the feed,
    else fetched (http(s) only), else that it is nowhere to be seen."""
    local = folder / local_name(href)
    if local.is_file():
        return artwork_problems(local.read_bytes())
    if fetcher is not None and href.startswith(("http://", "https://")):
        try:
            return artwork_problems(fetcher.fetch(href, kinds=("image",)).path.read_bytes())
        except InputError as exc:
            return [f"cannot be fetched ({exc.problem})"]
    return [f"{local.name} is not beside the feed"]
