"""Articles to podcast episodes and an RSS 2.0 feed that podcast apps subscribe to.

    article (HTML, Markdown, text, EPUB, PDF) ─read_book─> Book
        ─pipeline.convert_book─> <slug>.m4b | <slug>.mp3   (chapters from headings, tags)
        ─chapters_json────────> <slug>.chapters.json        (Podcasting 2.0 chapters 1.2.0)
        ─transcript_vtt───────> <slug>.vtt                  (WebVTT)
    every episode of the index ─rss_feed─> feed.xml         (RSS 2.0, iTunes, podcast:)
                               ─feed_page─> index.html      (players and transcripts)

The feed folder keeps ``episodes.json``, the index of every episode ever built: its
guid, files, sizes, duration, content hash and publication date. A re-run reads it back,
so that:

- an episode whose article is unchanged (same text, same conversion options) is kept as
  it is: no reading of audio, no synthesis, same guid, same pubDate;
- a new article becomes a new episode; a changed article is converted again (the
  pipeline's content-addressed cache still synthesizes only the chunks that changed);
- the guid is derived from the article's identity (its canonical URL when the page
  declares one, else the file's absolute path), never from the time of the run;
- pubDate is the article's own date when it has one, else the time the article was
  first seen, recorded in the index and kept from then on.

Transcript timings: each chapter's cue span is the chapter's real start and end in the
stitched audio (``ConvertResult.chapter_times``); inside a chapter, each paragraph of
what is spoken (the chapter's SSML: its title once, then its blocks) at least one cue
(long ones are cut into cues of whole sentences, about 200 characters each), with times
proportional to their number of characters: the chapter marks are exact, the cues
inside a chapter are estimates.
With an engine that reports its timings (espeak-ng, Polly with speech marks), the
transcript is the pipeline's captions instead: a cue per sentence, from the time the
voice starts it (``--captions vtt`` of the episode's audio).

Every file is written to a temporary name and moved into place (``os.replace``), the
feed last, so a podcast app never reads a half-written feed or an enclosure whose length
disagrees with the file. A lock file keeps two runs on one feed folder apart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from lxml import etree

from .captions import vtt_escape, vtt_time
from .config import RenderOptions
from .errors import ConfigError, InputError
from .feedcheck import ITUNES_NS, PODCAST_NS, check_feed, fit_artwork
from .feedpage import PAGE_NAME, feed_page, http_url, read_transcripts
from .fetch import CACHE_FOLDER, DEFAULT_FETCH, FetchConfig, Fetcher, is_url
from .model import Book
from .readinglist import gather, known_urls, read_source
from .ssml import DEFAULT_OPTIONS, render_chapter, spoken_text
from .state import default_state_dir

ATOM_NS = "http://www.w3.org/2005/Atom"
CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
NSMAP = {"itunes": ITUNES_NS, "podcast": PODCAST_NS, "atom": ATOM_NS, "content": CONTENT_NS}

INDEX_NAME = "episodes.json"
FEED_NAME = "feed.xml"
MEDIA_TYPES = {"m4b": "audio/x-m4a", "mp3": "audio/mpeg"}
GUID_NAMESPACE = uuid.UUID("6b1f0f3e-2f4e-4f3a-9a57-5d0c2f8a7e11")  # this project's own
INDEX_VERSION = 1
_IMAGE_EXT = {"image/jpeg": ".jpg", "image/png": ".png"}  # what podcast apps show
CUE_CHARS = 200  # transcript cues hold whole sentences up to about this many characters


@dataclass(frozen=True)
class PodcastOptions:
    """The channel: what a podcast app shows for the whole feed.

    title:       channel title [default: the one recorded in the feed folder, else the
                 folder's name]
    base_url:    where the feed folder is served; enclosure and file URLs are
                 ``base_url + file name`` [default: the folder's file:// URI]
    image:       channel artwork (JPEG/PNG, ideally 1400-3000 px square), copied into
                 the folder
    """

    title: str | None = None
    base_url: str | None = None
    image: Path | None = None
    description: str | None = None
    author: str | None = None
    language: str | None = None
    category: str = "News"
    explicit: bool = False
    link: str | None = None


@dataclass(frozen=True)
class Episode:
    """One episode as recorded in the index (all paths are names inside the folder)."""

    guid: str
    title: str
    audio: str
    size: int
    duration: float
    media_type: str
    chapters: str
    transcript: str
    content_hash: str
    pub_date: str  # RFC 2822
    first_seen: str  # ISO 8601, UTC
    source: str
    authors: tuple[str, ...] = ()
    description: str = ""
    link: str | None = None
    language: str | None = None
    image: str | None = None  # the article's lead image, beside the audio


@dataclass(frozen=True)
class FeedResult:
    feed: Path
    episodes: tuple[Episode, ...]  # every episode in the feed, newest first
    added: tuple[str, ...] = ()  # guids converted by this run (new)
    updated: tuple[str, ...] = ()  # guids converted again because their article changed
    kept: tuple[str, ...] = ()  # guids left as they were
    chunks_submitted: int = 0  # synthesis start calls made by this run, all episodes
    warnings: tuple[str, ...] = field(default=())
    # Articles that could not be read (no article text, binary, unreadable): the others
    # still become episodes. Each error is one line naming the file.
    failed: tuple[InputError, ...] = field(default=())
    already: int = 0  # reading-list items left out: the podcast has them (by URL)
    problems: tuple[str, ...] = ()  # what check_feed finds in the feed written
    downloads: int = 0  # bodies downloaded (pages, lists, images)
    not_modified: int = 0  # fetches answered 304: the cached copy served


# --- pure pieces ----------------------------------------------------------------------


def episode_guid(book: Book, article: Path | str) -> str:
    """Stable across runs: from the canonical URL, else the URL asked for, else the
    file's absolute path."""
    identity = book.url or (article.resolve().as_uri() if isinstance(article, Path) else article)
    return str(uuid.uuid5(GUID_NAMESPACE, identity))


def content_hash(book: Book, options_fingerprint: str) -> str:
    """Everything that changes an episode's audio: the spoken text and the options."""
    doc = {
        "title": book.title,
        "authors": list(book.authors),
        "chapters": [
            [
                c.title,
                c.level,
                [[b.kind, b.text] for b in c.blocks],
                [[b.kind, b.text] for b in c.footnotes],
            ]
            for c in book.chapters
        ],
        "options": options_fingerprint,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode("utf-8")).hexdigest()


def slug(title: str, guid: str, limit: int = 60) -> str:
    """A file name stem: ASCII words of the title and 8 characters of the guid."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.sub(r"[^A-Za-z0-9]+", "-", ascii_title).strip("-").lower()[:limit].strip("-")
    short = guid.replace("-", "")[:8]
    return f"{words}-{short}" if words else f"episode-{short}"


def chapters_json(chapter_times: Sequence[tuple[str, float, float]]) -> dict[str, Any]:
    """Podcasting 2.0 JSON chapters (version 1.2.0)."""
    return {
        "version": "1.2.0",
        "chapters": [
            {"startTime": round(start, 3), "endTime": round(end, 3), "title": title}
            for title, start, end in chapter_times
        ],
    }


def transcript_vtt(
    book: Book,
    chapter_times: Sequence[tuple[str, float, float]],
    duration: float,
    render: RenderOptions = DEFAULT_OPTIONS,
) -> str:
    """WebVTT of what is spoken: each chapter's text as ``render`` makes it into SSML,
    so that the captions say what the voice says, once (a chapter title is spoken once:
    a first heading that repeats it is left out of the speech and of the captions; a
    template that speaks no titles captions none). Cues are timed within the chapter's
    real span in proportion to characters (module docstring)."""
    spoken = [_spoken_cues(book, i, render) for i in range(len(book.chapters))]
    spans = list(chapter_times)
    if len(spans) != len(book.chapters):
        # No per-chapter times (or not one per chapter): spread over the whole episode.
        chars = [sum(len(c) for c in cues) for cues in spoken]
        total = sum(chars) or 1
        spans, t = [], 0.0
        for ch, n in zip(book.chapters, chars):
            d = duration * n / total
            spans.append((ch.title, t, t + d))
            t += d
    lines = ["WEBVTT", ""]
    n = 0
    for texts, (_title, start, end) in zip(spoken, spans):
        weights = [len(t) + 20 for t in texts]  # + a pause's worth for each piece
        total = sum(weights) or 1
        t = start
        for text, w in zip(texts, weights):
            cue_end = min(end, t + (end - start) * w / total)
            if cue_end <= t:
                cue_end = t + 0.001
            n += 1
            lines += [str(n), f"{vtt_time(t)} --> {vtt_time(cue_end)}", vtt_escape(text), ""]
            t = cue_end
    return "\n".join(lines)


def _spoken_cues(book: Book, index: int, render: RenderOptions) -> list[str]:
    """Chapter ``index``'s spoken paragraphs (its SSML's text), each in cues."""
    text = spoken_text(render_chapter(book, index, render))
    return [piece for para in text.split("\n\n") if para for piece in cue_texts(para)]


_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")


def cue_texts(text: str, limit: int = CUE_CHARS) -> list[str]:
    """A block's text in cues of whole sentences, each up to ``limit`` characters where
    the sentences allow (a longer sentence is one cue of its own)."""
    if len(text) <= limit:
        return [text]
    cues: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if cues and len(cues[-1]) + 1 + len(sentence) <= limit:
            cues[-1] += " " + sentence
        else:
            cues.append(sentence)
    return cues


def rfc2822(when: dt.datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return email.utils.format_datetime(when.astimezone(dt.UTC))


def parse_date(value: str | None) -> dt.datetime | None:
    """An article's date (ISO 8601 or RFC 2822) as an aware datetime, or None."""
    if not value:
        return None
    value = value.strip()
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))  # noqa: FURB162 - also takes a date-only "2024-01-01Z"
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when


def hms(seconds: float) -> str:
    total = round(seconds)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def file_url(base_url: str, name: str) -> str:
    return base_url + quote(name)


def rss_feed(
    channel: PodcastOptions,
    base_url: str,
    episodes: Iterable[Episode],
    image_name: str | None,
    now: dt.datetime,
) -> bytes:
    """The RSS 2.0 document (pure: everything comes in as arguments)."""
    rss = etree.Element("rss", nsmap=NSMAP, version="2.0")
    ch = etree.SubElement(rss, "channel")
    eps = list(episodes)

    def sub(
        parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None
    ) -> etree._Element:
        el = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
        if text is not None:
            el.text = text
        return el

    title = channel.title or "Articles"
    link = channel.link or base_url
    sub(ch, "title", title)
    sub(ch, "link", link)
    sub(ch, "description", channel.description or f"{title}: articles read aloud.")
    sub(
        ch,
        "language",
        channel.language or next((e.language for e in eps if e.language), None) or "en",
    )
    sub(ch, "generator", "audiobook")
    sub(ch, "lastBuildDate", rfc2822(now))
    if base_url.startswith(("http://", "https://")):
        sub(
            ch,
            f"{{{ATOM_NS}}}link",
            href=file_url(base_url, FEED_NAME),
            rel="self",
            type="application/rss+xml",
        )
    author = channel.author or title
    sub(ch, f"{{{ITUNES_NS}}}author", author)
    sub(ch, f"{{{ITUNES_NS}}}summary", channel.description or f"{title}: articles read aloud.")
    if image_name:
        url = file_url(base_url, image_name)
        sub(ch, f"{{{ITUNES_NS}}}image", href=url)
        image = sub(ch, "image")
        sub(image, "url", url)
        sub(image, "title", title)
        sub(image, "link", link)
    category = etree.SubElement(ch, f"{{{ITUNES_NS}}}category")
    category.set("text", channel.category)
    sub(ch, f"{{{ITUNES_NS}}}explicit", "true" if channel.explicit else "false")
    sub(ch, f"{{{ITUNES_NS}}}type", "episodic")
    sub(ch, f"{{{PODCAST_NS}}}locked", "no")
    for ep in eps:
        item = sub(ch, "item")
        sub(item, "title", ep.title)
        if ep.description:
            sub(item, "description", ep.description)
        if http_url(ep.link):  # a page's javascript: or data: "canonical URL" is no link
            sub(item, "link", ep.link)
        sub(
            item,
            "enclosure",
            url=file_url(base_url, ep.audio),
            length=str(ep.size),
            type=ep.media_type,
        )
        sub(item, "guid", ep.guid, isPermaLink="false")
        sub(item, "pubDate", ep.pub_date)
        if ep.authors:
            sub(item, f"{{{ITUNES_NS}}}author", ", ".join(ep.authors))
        sub(item, f"{{{ITUNES_NS}}}duration", hms(ep.duration))
        if ep.image:
            sub(item, f"{{{ITUNES_NS}}}image", href=file_url(base_url, ep.image))
        sub(item, f"{{{ITUNES_NS}}}episodeType", "full")
        sub(item, f"{{{ITUNES_NS}}}explicit", "true" if channel.explicit else "false")
        sub(
            item,
            f"{{{PODCAST_NS}}}chapters",
            url=file_url(base_url, ep.chapters),
            type="application/json+chapters",
        )
        sub(
            item,
            f"{{{PODCAST_NS}}}transcript",
            url=file_url(base_url, ep.transcript),
            type="text/vtt",
            language=ep.language,
        )
    return etree.tostring(rss, xml_declaration=True, encoding="UTF-8", pretty_print=True)


# --- the index ------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedIndex:
    channel: dict[str, Any]
    episodes: dict[str, Episode]

    @classmethod
    def load(cls, path: Path) -> FeedIndex:
        if not path.exists():
            return cls({}, {})
        try:
            data = json.loads(path.read_text("utf-8"))
            episodes = {}
            for guid, raw in data.get("episodes", {}).items():
                raw["authors"] = tuple(raw.get("authors", ()))
                episodes[guid] = Episode(**raw)
            return cls(dict(data.get("channel", {})), episodes)
        except (ValueError, TypeError, AttributeError) as exc:
            raise InputError(
                path, f"feed index unreadable ({exc}); move it aside to rebuild the feed"
            ) from None

    def dumps(self) -> bytes:
        data = {
            "version": INDEX_VERSION,
            "channel": self.channel,
            "episodes": {g: dataclasses.asdict(e) for g, e in self.episodes.items()},
        }
        return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")


# --- side effects ---------------------------------------------------------------------


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # served over HTTP: readable by the web server
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class _FeedLock:
    def __init__(self, folder: Path) -> None:
        self.path = folder / ".feed.lock"
        self.fd: int | None = None

    def __enter__(self) -> Self:
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise ConfigError(
                f"{self.path.parent}: another podcast run is updating this feed folder"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_episodes(
    articles: Sequence[str | os.PathLike[str]],
    feed_dir: str | os.PathLike[str],
    opts: Any = None,
    podcast: PodcastOptions | None = None,
    hooks: Any = None,
    *,
    engine: Any = None,
    store: Any = None,
    state_dir: str | os.PathLike[str] | None = None,
    now: Callable[[], dt.datetime] = _utcnow,
    on_episode: Callable[[str, Episode], None] | None = None,
    hooks_factory: Callable[[Path], Any] | None = None,
    since: dt.datetime | None = None,
    limit: int | None = None,
    fetch_config: FetchConfig = DEFAULT_FETCH,
    fetch_dir: str | os.PathLike[str] | None = None,
) -> FeedResult:
    """Turn ``articles`` into episodes in ``feed_dir`` and (re)write its ``feed.xml``.

    ``opts`` is the pipeline's ``ConvertOptions`` (format m4b or mp3, engine, voice,
    ingest options); ``engine``/``store``/``state_dir`` are passed to
    ``pipeline.convert_book`` (an Engine instance such as FakeEngine, a shared
    StateStore, the state folder). ``on_episode(status, episode)`` is called with "added", "updated" or
    "kept" for each article; an article that cannot be read is reported in
    ``result.failed`` and the others go on. ``hooks_factory(article)`` makes fresh
    progress hooks for each conversion (closed after it, when they have ``close()``),
    instead of ``hooks``.

    ``articles`` may be files, http(s) URLs and reading lists (feeds, OPML, URL lists,
    read-later exports; see ``readinglist``): a list's items already in the podcast
    (by URL) are left out, then those dated before ``since``, then all but the
    ``limit`` newest. URLs are fetched through ``fetch.Fetcher`` with ``fetch_config``
    into ``fetch_dir`` [default: ``web/`` in the state folder], whose ETags and
    Last-Modified dates make the next run's fetch of an unchanged page a 304.
    Returns what was done; the feed lists every episode of the folder, newest first.
    """
    from .options import ConvertOptions
    from .pipeline import convert_book

    opts = opts or ConvertOptions()
    podcast = podcast or PodcastOptions()
    if opts.fmt not in MEDIA_TYPES:
        raise ConfigError(f"podcast episodes are m4b or mp3, not {opts.fmt!r}")
    folder = Path(feed_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot create the feed folder ({exc.strerror})") from None
    for a in articles:
        p = Path(a)
        if not is_url(a) and not p.is_file():
            raise InputError(p, "no such file" if not p.exists() else "not a file")
    if fetch_dir is None:
        state = store.dir if store is not None else state_dir
        fetch_dir = (Path(state) if state is not None else default_state_dir()) / CACHE_FOLDER
    with _FeedLock(folder), Fetcher(fetch_dir, fetch_config) as fetcher:
        index = FeedIndex.load(folder / INDEX_NAME)
        channel = _channel(podcast, index, folder)
        base_url = channel.base_url or (folder.resolve().as_uri() + "/")
        if not base_url.endswith("/"):
            base_url += "/"
        warnings: list[str] = []
        image_name = (
            _install_image(podcast.image, folder, warnings)
            if podcast.image
            else index.channel.get("image")
        )
        fingerprint = opts.fingerprint()
        # The transcript from the voice's timings, where the engine has them.
        episode_opts = dataclasses.replace(opts, captions="vtt")
        episodes = dict(index.episodes)
        added: list[str] = []
        updated: list[str] = []
        kept: list[str] = []
        submitted = 0
        gathered = gather(
            articles,
            fetcher,
            known=known_urls(list(episodes.values())),
            since=since,
            limit=limit,
        )
        failed: list[InputError] = list(gathered.failed)
        warnings += gathered.warnings
        for source in gathered.sources:
            try:
                book, notes = read_source(source, fetcher, opts.ingest)
            except InputError as exc:
                failed.append(exc)
                continue
            # what progress is labelled with: the file, or the URL's last part
            article = source.path or Path(source.name.rstrip("/").rsplit("/", 1)[-1])
            warnings += [f"{source.name}: {w}" for w in (*book.warnings, *notes)]
            if image_name is None and book.cover is not None:
                # No artwork given or recorded: the first article's lead image serves.
                image_name = _write_cover(book.cover.data, book.cover.media_type, folder, warnings)
            guid = episode_guid(book, source.identity)
            chash = content_hash(book, fingerprint)
            old = episodes.get(guid)
            if old is not None and old.content_hash == chash and _intact(folder, old):
                kept.append(guid)
                if on_episode:
                    on_episode("kept", old)
                continue
            stem = slug(book.title, guid)
            audio = folder / f"{stem}.{opts.fmt}"
            episode_hooks = hooks_factory(article) if hooks_factory else hooks
            try:
                result = convert_book(
                    book,
                    audio,
                    episode_opts,
                    episode_hooks,
                    store=store,
                    state_dir=state_dir,
                    engine=engine,
                )
            finally:
                if hooks_factory and hasattr(episode_hooks, "close"):
                    episode_hooks.close()
            submitted += result.chunks_submitted
            tag_episode(
                audio,
                opts.fmt,
                album=channel.title or folder.name,
                date=(parse_date(book.date) or now()).date().isoformat(),
                comment=_description(book),
                artist=", ".join(book.authors) or None,
            )
            chapter_times = tuple(result.chapter_times)
            duration = float(result.duration)
            atomic_write(
                folder / f"{stem}.chapters.json",
                json.dumps(chapters_json(chapter_times), ensure_ascii=False, indent=2).encode(
                    "utf-8"
                ),
            )
            transcript = folder / f"{stem}.vtt"
            timed = {Path(p).resolve() for p in result.outputs}
            if transcript.resolve() not in timed:  # no timings: estimated from the text
                atomic_write(
                    transcript,
                    transcript_vtt(book, chapter_times, duration, opts.render).encode("utf-8"),
                )
            episode_image = None
            if book.cover is not None and book.cover.media_type in _IMAGE_EXT:
                episode_image = f"{stem}{_IMAGE_EXT[book.cover.media_type]}"
                atomic_write(folder / episode_image, book.cover.data)
            first_seen = old.first_seen if old else now().isoformat(timespec="seconds")
            published = parse_date(book.date) or dt.datetime.fromisoformat(first_seen)
            episode = Episode(
                guid=guid,
                title=book.title,
                audio=audio.name,
                size=audio.stat().st_size,
                duration=duration,
                media_type=MEDIA_TYPES[opts.fmt],
                chapters=f"{stem}.chapters.json",
                transcript=f"{stem}.vtt",
                content_hash=chash,
                pub_date=rfc2822(published),
                first_seen=first_seen,
                source=os.fspath(source.path.resolve()) if source.path else source.name,
                authors=tuple(book.authors),
                description=_description(book),
                link=book.url,
                language=book.language,
                image=episode_image,
            )
            if old is not None:
                _remove_replaced(folder, old, episode)
            episodes[guid] = episode
            (updated if old is not None else added).append(guid)
            if on_episode:
                on_episode("updated" if old is not None else "added", episode)
            # Record each finished episode at once: a crash later keeps what was done.
            _save(folder, channel, image_name, episodes, now())
        feed = _save(folder, channel, image_name, episodes, now())
        ordered = _newest_first(episodes.values())
        # What the directories would refuse, said after every update.
        check = check_feed(feed)
    return FeedResult(
        feed=feed,
        episodes=tuple(ordered),
        added=tuple(added),
        updated=tuple(updated),
        kept=tuple(kept),
        chunks_submitted=submitted,
        warnings=tuple(warnings),
        failed=tuple(failed),
        already=gathered.already,
        problems=tuple(check),
        downloads=fetcher.downloads,
        not_modified=fetcher.not_modified,
    )


def tag_episode(
    path: Path,
    fmt: str,
    *,
    album: str,
    date: str,
    comment: str,
    artist: str | None = None,
    genre: str = "Podcast",
) -> None:
    """Tag an episode as a podcast episode (album = the channel, genre Podcast, date,
    description), on a copy that replaces the file: a reader never sees it half-tagged.
    The pipeline's chapters and cover are left as they are."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copyfile(path, tmp)
        os.chmod(tmp, 0o644)
        if fmt == "m4b":
            from mutagen.mp4 import MP4

            audio = MP4(tmp)
            if audio.tags is None:
                audio.add_tags()
            tags = audio.tags
            assert tags is not None
            tags["\xa9alb"] = [album]
            tags["\xa9gen"] = [genre]
            tags["\xa9day"] = [date]
            tags["desc"] = [comment[:255]]
            tags["stik"] = [21]  # iTunes media kind: podcast
            if artist:
                tags["\xa9ART"] = [artist]
            audio.save()
        else:
            from mutagen.id3 import COMM, ID3, TALB, TCON, TDRC, TPE1, ID3NoHeaderError

            try:
                id3 = ID3(tmp)
            except ID3NoHeaderError:
                id3 = ID3()
            id3.setall("TALB", [TALB(encoding=3, text=[album])])
            id3.setall("TCON", [TCON(encoding=3, text=[genre])])
            id3.setall("TDRC", [TDRC(encoding=3, text=[date])])
            id3.setall("COMM", [COMM(encoding=3, lang="eng", desc="", text=[comment])])
            if artist:
                id3.setall("TPE1", [TPE1(encoding=3, text=[artist])])
            id3.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _channel(podcast: PodcastOptions, index: FeedIndex, folder: Path) -> PodcastOptions:
    """Options given now win; otherwise what the folder recorded; otherwise defaults."""
    recorded = index.channel
    merged = {}
    for f in dataclasses.fields(PodcastOptions):
        if f.name == "image":
            continue
        given = getattr(podcast, f.name)
        default = f.default
        merged[f.name] = given if given != default else recorded.get(f.name, default)
    if not merged["title"]:
        merged["title"] = folder.resolve().name or "Articles"
    return PodcastOptions(**merged)


def _install_image(image: Path, folder: Path, notes: list[str]) -> str:
    """The channel artwork given, copied into the folder as cover.jpg / cover.png, made
    what the directories take (``fit_artwork``; ``notes`` gets what was changed)."""
    if not image.is_file():
        raise InputError(image, "no such image file")
    try:
        data, media, note = fit_artwork(image.read_bytes())
    except ValueError as exc:
        raise InputError(image, f"podcast artwork must be a JPEG or PNG image: {exc}") from None
    except OSError as exc:
        raise InputError(image, f"cannot read: {exc.strerror or exc}") from None
    if note:
        notes.append(f"{image}: {note}")
    name = f"cover{_IMAGE_EXT[media]}"
    dest = folder / name
    if not (dest.exists() and dest.read_bytes() == data):
        atomic_write(dest, data)
    return name


def _write_cover(data: bytes, media_type: str, folder: Path, notes: list[str]) -> str | None:
    if media_type not in _IMAGE_EXT:  # podcast apps take JPEG and PNG only
        return None
    try:
        data, media_type, note = fit_artwork(data)
    except ValueError:
        return None
    if note:
        notes.append(f"channel artwork from the lead image: {note}")
    name = f"cover{_IMAGE_EXT[media_type]}"
    atomic_write(folder / name, data)
    return name


def _intact(folder: Path, ep: Episode) -> bool:
    audio = folder / ep.audio
    return (
        audio.is_file()
        and audio.stat().st_size == ep.size
        and (folder / ep.chapters).is_file()
        and (folder / ep.transcript).is_file()
    )


def _remove_replaced(folder: Path, old: Episode, new: Episode) -> None:
    for name_old, name_new in (
        (old.audio, new.audio),
        (old.chapters, new.chapters),
        (old.transcript, new.transcript),
        (old.image, new.image),
    ):
        if name_old and name_old != name_new:
            try:
                (folder / name_old).unlink()
            except FileNotFoundError:
                pass


def _description(book: Book, limit: int = 600) -> str:
    if book.description:
        return book.description
    for ch in book.chapters:
        for b in ch.blocks:
            if b.kind == "paragraph" and len(b.text) > 40:
                text = b.text
                return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
    return book.title


def _newest_first(episodes: Iterable[Episode]) -> list[Episode]:
    def key(e: Episode) -> tuple[float, str]:
        when = parse_date(e.pub_date)
        return (when.timestamp() if when else 0.0, e.guid)

    return sorted(episodes, key=key, reverse=True)


def _save(
    folder: Path,
    channel: PodcastOptions,
    image_name: str | None,
    episodes: dict[str, Episode],
    when: dt.datetime,
) -> Path:
    base_url = channel.base_url or (folder.resolve().as_uri() + "/")
    if not base_url.endswith("/"):
        base_url += "/"
    recorded = {
        k: v for k, v in dataclasses.asdict(channel).items() if k != "image" and v is not None
    }
    if image_name:
        recorded["image"] = image_name
    atomic_write(folder / INDEX_NAME, FeedIndex(recorded, episodes).dumps())
    ordered = _newest_first(episodes.values())
    page = feed_page(
        title=channel.title or "Articles",
        description=channel.description or f"{channel.title or 'Articles'}: articles read aloud.",
        language=channel.language
        or next((e.language for e in ordered if e.language), None)
        or "en",
        image=image_name,
        episodes=ordered,
        transcripts=read_transcripts(folder, ordered),
    )
    atomic_write(folder / PAGE_NAME, page.encode("utf-8"))
    feed = folder / FEED_NAME
    atomic_write(
        feed, rss_feed(channel, base_url, _newest_first(episodes.values()), image_name, when)
    )
    return feed
