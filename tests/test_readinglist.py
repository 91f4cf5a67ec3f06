"""Reading lists into the articles they point to: feeds (feedparser), OPML, URL lists
and the Pocket, Instapaper and Wallabag exports (samples in tests/data/lists)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from audiobook.errors import CorruptDocument
from audiobook.fetch import Fetcher
from audiobook.readinglist import ListItem, list_kind, parse_list, read_list, same_url, select

LISTS = Path(__file__).parent / "data" / "lists"
JAN1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DEC1 = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:media="http://search.yahoo.com/mrss/"><channel>
<title>A blog</title><link>https://example.org/</link><description>d</description>
<item><title>Newer</title><link>https://example.org/newer</link>
 <pubDate>Thu, 01 Jan 2026 00:00:00 +0000</pubDate><dc:creator>Ann Writer</dc:creator>
 <media:thumbnail url="https://example.org/newer.jpg"/></item>
<item><title>Older</title><link>/older</link>
 <pubDate>Mon, 01 Dec 2025 00:00:00 +0000</pubDate></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><id>urn:x</id>
<updated>2026-01-01T00:00:00Z</updated>
<entry><title>Atom post</title><id>urn:y</id><link rel="alternate" href="https://example.org/atom"/>
<updated>2026-01-01T00:00:00Z</updated><author><name>Bo</name></author></entry></feed>"""


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("pocket.html", "pocket-html"),
        ("pocket.csv", "pocket-csv"),
        ("instapaper.html", "instapaper-html"),
        ("instapaper.csv", "instapaper-csv"),
        ("wallabag.json", "wallabag"),
        ("urls.txt", "urls"),
    ],
)
def test_each_export_gives_its_two_articles(name, kind):
    data = (LISTS / name).read_bytes()
    assert list_kind(data, name) == kind
    rl = parse_list(data, name)
    assert [same_url(i.url) for i in rl.items] == [
        "https://example.org/one",
        "https://example.org/two",
    ]
    if kind in ("pocket-html", "pocket-csv", "instapaper-csv"):
        assert [i.published for i in rl.items] == [JAN1, DEC1]
    if kind == "pocket-html":
        assert rl.items[0].title == "One & only"
        assert rl.warnings and "javascript:" in rl.warnings[0]


def test_wallabag_gives_author_date_and_picture():
    rl = parse_list((LISTS / "wallabag.json").read_bytes(), "wallabag.json")
    one, two = rl.items
    assert one.author == "Ann Writer" and one.image == "https://example.org/one.jpg"
    assert one.published == dt.datetime(2025, 12, 31, 8, 30, tzinfo=dt.UTC)
    assert two.published == DEC1 and two.author is None


def test_rss_and_atom_items_carry_their_metadata():
    rl = parse_list(RSS.encode(), "https://example.org/feed.xml")
    assert rl.kind == "feed"
    newer, older = rl.items
    assert newer == ListItem(
        "https://example.org/newer", "Newer", JAN1, "Ann Writer", "https://example.org/newer.jpg"
    )
    assert older.url == "https://example.org/older" and older.published == DEC1
    atom = parse_list(ATOM.encode(), "feed.atom")
    assert atom.items[0].url == "https://example.org/atom" and atom.items[0].author == "Bo"


def test_an_article_is_not_a_list():
    assert (
        list_kind(b"<html><head><title>Post</title></head><body><p>x</p></body></html>", "a.html")
        is None
    )
    assert list_kind(b"Some text.\nhttps://example.org/\n", "a.txt") is None
    assert list_kind(b"# Title\n\nWords.", "a.md") is None
    with pytest.raises(CorruptDocument):
        parse_list(b"<rss><channel><item>", "broken.xml", "feed")


def test_select_since_limit_and_known():
    items = [
        ListItem("https://example.org/a", published=DEC1),
        ListItem("https://example.org/b", published=JAN1),
        ListItem("https://example.org/c"),
        ListItem("https://example.org/d", published=JAN1 + dt.timedelta(days=1)),
        ListItem("https://example.org/b#again", published=JAN1),
    ]
    chosen, skipped = select(items, known=["https://EXAMPLE.org/d/"])
    assert [i.url[-1] for i in chosen] == ["b", "a", "c"] and skipped == 1
    chosen, _ = select(items, since=JAN1, limit=2)
    assert [i.url[-1] for i in chosen] == ["d", "b"]


def test_opml_reads_its_feeds_through_the_fetcher(web, tmp_path):
    feed_url = web.page("/feed.xml", RSS, content_type="application/rss+xml")
    data = (LISTS / "subscriptions.opml").read_text().replace("FEED_URL", feed_url).encode()
    assert list_kind(data, "subscriptions.opml") == "opml"
    with Fetcher(tmp_path / "cache") as fetcher:
        rl = read_list("subscriptions.opml", data, "opml", fetcher)
    assert [i.url for i in rl.items] == [
        "https://example.org/three",
        "https://example.org/newer",
        web.url("/older"),  # a relative link, from where the feed was served
    ]
