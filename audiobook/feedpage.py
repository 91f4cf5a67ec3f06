"""The feed page: ``index.html`` beside ``feed.xml``, so that the feed folder can be
published as it is. Each episode with its audio player, its details and its transcript.

    episodes of the index + their .vtt files ─feed_page─> index.html (templates/feed-page.html.j2)

Everything that comes from an article (title, authors, description, transcript, link)
is text to the page: the jinja2 environment autoescapes, and a link is written only
when it is http or https (``http_url``), so ``javascript:`` and ``data:`` links never
reach an ``href``. The page has no script of its own, and its Content-Security-Policy
allows none: even a mistake in escaping could not run one.
"""

from __future__ import annotations

import email.utils
import functools
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2

PAGE_NAME = "index.html"
TEMPLATE = "feed-page.html.j2"


def http_url(value: object) -> str | None:
    """``value`` when it is an absolute http(s) URL with a host; else None."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if any(c in url for c in "\x00\t\n\r"):
        return None
    return url


def file_url(name: str) -> str:
    """A file of the feed folder as a relative link (never a scheme: ``./`` first)."""
    return "./" + quote(name)


def _hms(seconds: float) -> str:
    total = round(seconds)
    h, m, s = total // 3600, total % 3600 // 60, total % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _day(rfc2822: str) -> str:
    """An RFC 2822 date as a reader says it: "29 November 2026"."""
    try:
        when = email.utils.parsedate_to_datetime(rfc2822)
    except (TypeError, ValueError, IndexError):
        return rfc2822
    return f"{when.day} {when:%B %Y}"


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    from .ssml import _builtin_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_builtin_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["http_url"] = http_url
    env.filters["file_url"] = file_url
    env.filters["hms"] = _hms
    env.filters["day"] = _day
    return env


def transcript_lines(vtt: str) -> list[str]:
    """The text of a WebVTT file's cues, one line per cue, unescaped (plain text)."""
    lines: list[str] = []
    for block in vtt.replace("\r\n", "\n").split("\n\n")[1:]:
        rows = [r for r in block.split("\n") if r.strip()]
        timing = next((i for i, r in enumerate(rows) if "-->" in r), None)
        if timing is None:
            continue
        text = " ".join(rows[timing + 1 :]).strip()
        if text:
            lines.append(html.unescape(text))
    return lines


def feed_page(
    *,
    title: str,
    description: str,
    language: str,
    image: str | None,
    episodes: Sequence[Any],
    transcripts: dict[str, list[str]],
) -> str:
    """The page (pure): ``episodes`` are ``podcast.Episode`` values, newest first;
    ``transcripts`` each episode's cue texts by guid."""
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            title=title,
            description=description,
            language=language if language.replace("-", "").isalnum() else "en",
            image=image,
            episodes=list(episodes),
            transcripts=transcripts,
        )
    )


def read_transcripts(folder: Path, episodes: Iterable[Any]) -> dict[str, list[str]]:
    """Each episode's transcript from its .vtt file in ``folder`` (missing: none)."""
    out: dict[str, list[str]] = {}
    for ep in episodes:
        try:
            out[ep.guid] = transcript_lines((folder / ep.transcript).read_text("utf-8"))
        except (OSError, UnicodeDecodeError):
            out[ep.guid] = []
    return out


__all__ = ["PAGE_NAME", "feed_page", "file_url", "http_url", "read_transcripts", "transcript_lines"]
