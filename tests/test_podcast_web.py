"""Podcasts from the web: articles, feeds and read-later exports served by a real
server on 127.0.0.1 (tests/webserver.py), through the real pipeline with FakeEngine."""

from __future__ import annotations

import datetime as dt
import io

import feedparser
import pytest
from click.testing import CliRunner
from lxml import etree
from PIL import Image

from audiobook.cli import cli
from audiobook.engines.fake import FakeEngine
from audiobook.errors import CorruptDocument, FetchError, InputError, UnsupportedFormat
from audiobook.fetch import FetchConfig
from audiobook.options import ConvertOptions
from audiobook.podcast import ITUNES_NS, PodcastOptions, build_episodes

pytestmark = pytest.mark.ffmpeg
BASE = "https://podcast.example.org/web/"
NS = {"itunes": ITUNES_NS}
FAST = FetchConfig(timeout=0.5, max_bytes=200_000)


def page(
    title: str,
    *,
    words: str = "",
    canonical: str | None = None,
    date: str | None = None,
    author: str | None = None,
    image: str | None = None,
) -> str:
    head = f"<title>{title}</title>"
    if canonical:
        head += f"<link rel='canonical' href='{canonical}'>"
    if date:
        head += f"<meta property='article:published_time' content='{date}'>"
    if author:
        head += f"<meta name='author' content='{author}'>"
    if image:
        head += f"<meta property='og:image' content='{image}'>"
    body = (words or f"The story of {title}, told plainly. ") * 12
    return f"<html><head>{head}</head><body><article><h1>{title}</h1><p>{body}</p></article></body></html>"


def png(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "teal" if mode == "RGB" else None).save(out, "PNG")
    return out.getvalue()


def rss(items: list[tuple[str, str, str]]) -> str:
    body = "".join(
        f"<item><title>{t}</title><link>{link}</link><pubDate>{d}</pubDate></item>"
        for t, link, d in items
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>Blog</title><link>http://blog/</link><description>d</description>{body}"
        "</channel></rss>"
    )


def options() -> ConvertOptions:
    # the engine the CLI uses in the suite (AUDIOBOOK_ENGINE), so that its runs keep ours
    return ConvertOptions(fmt="m4b", engine="espeak", synchronous=True)


def build(inputs, tmp_path, engine=None, **kw):
    return build_episodes(
        inputs,
        tmp_path / "feed",
        options(),
        PodcastOptions(title="Web", base_url=BASE),
        engine=engine or FakeEngine(),
        state_dir=tmp_path / "state",
        fetch_config=FAST,
        **kw,
    )


def test_each_failing_url_is_one_line_and_the_batch_completes(web, tmp_path):
    good = web.page("/good", page("A good article"))
    moved = web.page("/moved-here", page("A moved article"))
    faults = {
        web.page("/gone", "no", status=404, content_type="text/plain"): (FetchError, "HTTP 404"),
        web.page("/boom", "no", status=500, content_type="text/plain"): (FetchError, "HTTP 500"),
        web.page("/slow", page("Slow"), delay=2): (FetchError, "timed out"),
        web.page("/huge", page("Huge", words="word " * 60_000)): (FetchError, "too large"),
        web.page("/pic", png(), content_type="image/png"): (UnsupportedFormat, "image/png"),
        web.page("/latin", page("Café"), encoding="cp1252"): (CorruptDocument, "is not utf-8"),
        web.page("/klingon", page("Q"), content_type="text/html; charset=x-klingon"): (
            CorruptDocument,
            "unknown charset 'x-klingon'",
        ),
        "file:///etc/hostname": (FetchError, "only http and https"),
    }
    redirect = web.redirect("/old", "/moved-here", 301)
    inputs = [good, *faults, redirect]
    result = build(inputs, tmp_path)
    assert {e.title for e in result.episodes} == {"A good article", "A moved article"}
    by_url = {err.path: err for err in result.failed}
    assert set(by_url) == set(faults)
    for url, (kind, words) in faults.items():
        err = by_url[url]
        assert type(err) is kind and words in str(err), str(err)
        assert "\n" not in str(err) and str(err).startswith(f"{url}: ")
    moved_ep = next(e for e in result.episodes if e.title == "A moved article")
    assert moved_ep.source == redirect and moved_ep.link == moved
    # The CLI says the same, one line each, and exits with the failures' highest code.
    out = CliRunner().invoke(
        cli,
        [
            "podcast",
            *inputs,
            "--feed",
            str(tmp_path / "feed"),
            "--state-dir",
            str(tmp_path / "state"),
            "--timeout",
            "0.5",
            "--max-size",
            "0.2",
        ],
    )
    assert out.exit_code == FetchError.exit_code, out.output
    errors = [line for line in out.output.splitlines() if line.startswith("audiobook: error:")]
    assert len(errors) == len(faults) and "Traceback" not in out.output
    assert "2 kept" in out.output


def test_a_second_nightly_run_downloads_nothing_and_synthesizes_nothing(web, tmp_path):
    day = "Thu, 01 Jan 2026 06:00:00 +0000"
    for n in (1, 2, 3, 4):
        web.page(f"/post/{n}", page(f"Post number {n}"))
    feed = web.page(
        "/feed.xml",
        rss([(f"Post {n}", web.url(f"/post/{n}"), day) for n in (1, 2)]),
        content_type="application/rss+xml",
    )
    pocket = tmp_path / "pocket.html"
    pocket.write_text(
        "<!DOCTYPE html><html><head><title>Pocket Export</title></head><body><ul>"
        f"<li><a href='{web.url('/post/3')}' time_added='1767225600' tags=''>3</a></li>"
        "</ul></body></html>"
    )
    inputs = [feed, str(pocket), web.url("/post/4")]
    first_engine = FakeEngine()
    first = build(inputs, tmp_path, first_engine)
    assert len(first.added) == 4 and not first.failed and first_engine.submitted
    assert first.downloads == 5  # the feed and four pages
    web.reset_counts()
    engine = FakeEngine()
    second = build(inputs, tmp_path, engine)
    assert engine.submitted == [] and second.chunks_submitted == 0
    assert not second.added and not second.updated and len(second.episodes) == 4
    assert second.already == 3  # the feed's and the export's items, known by their URL
    assert web.downloads == 0 and second.downloads == 0
    assert web.not_modified == 2 == second.not_modified  # the feed and the direct URL
    assert {p: dict(c) for p, c in web.counts.items()} == {
        "/feed.xml": {304: 1},
        "/post/4": {304: 1},
    }


def test_episode_metadata_comes_from_the_page_and_the_list(web, tmp_path):
    art = web.page("/lead.png", png((50, 50)), content_type="image/png")
    post = web.page(
        "/posts/a?utm_source=x",
        page(
            "Own metadata",
            canonical="https://blog.example.org/posts/a",
            date="2025-11-02T10:00:00Z",
            author="Ann Writer",
            image="/lead.png",
        ),
    )
    bare = web.page("/posts/b", page("Bare page"))
    feed = web.page(
        "/feed.xml",
        "<?xml version='1.0'?><rss version='2.0' xmlns:dc='http://purl.org/dc/elements/1.1/'>"
        "<channel><title>B</title><link>http://b/</link><description>d</description>"
        f"<item><title>B</title><link>{bare}</link><pubDate>Mon, 03 Nov 2025 07:00:00 +0000"
        "</pubDate><dc:creator>Bo Lister</dc:creator></item></channel></rss>",
        content_type="application/rss+xml",
    )
    result = build([post, feed], tmp_path)
    eps = {e.title: e for e in result.episodes}
    a, b = eps["Own metadata"], eps["Bare page"]
    assert a.link == "https://blog.example.org/posts/a" and a.source == post
    assert a.pub_date == "Sun, 02 Nov 2025 10:00:00 +0000" and a.authors == ("Ann Writer",)
    assert b.link == bare and b.pub_date == "Mon, 03 Nov 2025 07:00:00 +0000"
    assert b.authors == ("Bo Lister",)
    assert a.image and (tmp_path / "feed" / a.image).read_bytes() == web.routes["/lead.png"].body
    doc = etree.parse(str(tmp_path / "feed" / "feed.xml"))
    item = next(i for i in doc.iter("item") if i.findtext("title") == "Own metadata")
    assert item.find("itunes:image", NS).get("href") == BASE + a.image
    assert item.findtext("link") == "https://blog.example.org/posts/a"
    assert art
    parsed = feedparser.parse((tmp_path / "feed" / "feed.xml").read_bytes())
    assert not parsed.bozo
    # The guids hold in another folder and another run: made from the URL, not the run.
    again = build_episodes(
        [post, feed],
        tmp_path / "other",
        options(),
        engine=FakeEngine(),
        state_dir=tmp_path / "state",
        fetch_config=FAST,
    )
    assert {e.guid for e in again.episodes} == {e.guid for e in result.episodes}


def test_since_and_limit_choose_from_a_feed(web, tmp_path):
    dates = {
        1: "Mon, 01 Dec 2025 00:00:00 +0000",
        2: "Thu, 01 Jan 2026 00:00:00 +0000",
        3: "Fri, 02 Jan 2026 00:00:00 +0000",
        4: "Sat, 03 Jan 2026 00:00:00 +0000",
    }
    for n in dates:
        web.page(f"/p{n}", page(f"Entry {n}"))
    feed = web.page(
        "/feed",
        rss([(f"E{n}", web.url(f"/p{n}"), d) for n, d in dates.items()]),
        content_type="application/rss+xml",
    )
    first = build([feed], tmp_path, since=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), limit=2)
    assert {e.title for e in first.episodes} == {"Entry 4", "Entry 3"}
    assert web.counts["/p1"][200] == 0 and web.counts["/p2"][200] == 0
    second = build([feed], tmp_path, since=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert second.already == 2 and [e.title for e in second.episodes][-1] == "Entry 2"
    assert len(second.episodes) == 3


def test_a_reading_list_that_is_not_one_fails_alone(web, tmp_path):
    good = web.page("/good", page("Fine"))
    junk = web.page("/list.json", '{"not": "wallabag"}', content_type="application/json")
    result = build([junk, good], tmp_path)
    assert [e.title for e in result.episodes] == ["Fine"]
    assert len(result.failed) == 1 and isinstance(result.failed[0], InputError)
    assert str(result.failed[0]).startswith(junk + ": ")
