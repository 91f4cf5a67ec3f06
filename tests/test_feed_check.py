"""`podcast --check`: the checks Apple Podcasts and the Podcast Index apply. Our own
feed passes them (and feedparser reads it without bozo); a copy broken in each way the
issue lists fails, saying why, with exit code 12."""

from __future__ import annotations

import io
import shutil

import feedparser
import pytest
from click.testing import CliRunner
from lxml import etree
from PIL import Image

from audiobook.cli import cli
from audiobook.engines.fake import FakeEngine
from audiobook.errors import FeedCheckFailed
from audiobook.feedcheck import (
    ITUNES_NS,
    PODCAST_NS,
    artwork_problems,
    check_feed,
    feed_problems,
    fit_artwork,
)
from audiobook.options import ConvertOptions
from audiobook.podcast import PodcastOptions, build_episodes

pytestmark = pytest.mark.ffmpeg
BASE = "https://podcast.example.org/checked/"
NS = {"itunes": ITUNES_NS, "podcast": PODCAST_NS}


def image(size, mode="RGB", fmt="PNG") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    for n in (1, 2):
        (root / f"post{n}.html").write_text(
            f"<html><head><title>Post {n}</title></head><body><article><h1>Post {n}</h1>"
            + f"<p>Words of post {n}, enough to be an article of its own. </p>" * 8
            + "</article></body></html>"
        )
    art = root / "art.png"
    art.write_bytes(image((800, 600), "RGBA"))
    result = build_episodes(
        [root / "post1.html", root / "post2.html"],
        root / "feed",
        ConvertOptions(fmt="m4b", synchronous=True),
        PodcastOptions(title="Checked", base_url=BASE, image=art),
        engine=FakeEngine(),
        state_dir=root / "state",
    )
    return result


def test_our_feed_passes_and_parses_without_bozo(ours):
    assert ours.problems == ()
    assert check_feed(ours.feed) == []
    parsed = feedparser.parse(ours.feed.read_bytes())
    assert not parsed.bozo and len(parsed.entries) == 2
    out = CliRunner().invoke(cli, ["podcast", "--check", str(ours.feed)])
    assert out.exit_code == 0 and "passes" in out.output, out.output


def test_wrong_sized_artwork_is_resized_with_a_note(ours):
    cover = ours.feed.parent / "cover.png"
    with Image.open(cover) as img:
        assert img.size == (1400, 1400) and img.mode == "RGB" and img.format == "PNG"
    assert any("artwork 800x600 RGBA made 1400x1400 RGB" in w for w in ours.warnings)
    big = fit_artwork(image((3600, 3600), fmt="JPEG"))
    assert Image.open(io.BytesIO(big[0])).size == (3000, 3000) and big[1] == "image/jpeg"
    right = image((1500, 1500))
    assert fit_artwork(right) == (right, "image/png", None)
    with pytest.raises(ValueError, match="GIF"):
        fit_artwork(image((1500, 1500), "P", "GIF"))


def _broken(ours, tmp_path, name, change):
    """A copy of our feed, beside our files, with ``change`` applied to its tree."""
    folder = tmp_path / "copy"
    shutil.copytree(ours.feed.parent, folder)
    doc = etree.parse(str(folder / "feed.xml"))
    change(doc.getroot().find("channel"), folder)
    out = folder / f"{name}.xml"
    doc.write(str(out), xml_declaration=True, encoding="UTF-8")
    return out


def _artwork(data):
    def change(ch, folder):
        (folder / "other.img").write_bytes(data)
        ch.find("itunes:image", NS).set("href", BASE + "other.img")

    return change


def _first_item(fn):
    return lambda ch, folder: fn(ch.find("item"))


def _remove(el, path):
    found = el.find(path, NS)
    found.getparent().remove(found)


def _duplicate_guid(ch, folder):
    items = ch.findall("item")
    items[1].find("guid").text = items[0].find("guid").text


BROKEN = {
    "artwork-not-square": (_artwork(image((1500, 1400))), "1500x1400 px is not square"),
    "artwork-too-small": (_artwork(image((600, 600))), "600x600 px is outside 1400-3000"),
    "artwork-too-large": (_artwork(image((3200, 3200))), "3200x3200 px is outside"),
    "artwork-gif": (_artwork(image((1400, 1400), "P", "GIF")), "a GIF image"),
    "artwork-cmyk": (_artwork(image((1400, 1400), "CMYK", "JPEG")), "colour mode CMYK"),
    "artwork-missing": (
        lambda ch, f: _remove(ch, "itunes:image"),
        "no artwork",
    ),
    "artwork-not-http": (
        lambda ch, f: ch.find("itunes:image", NS).set("href", "file:///x/cover.png"),
        "not an http(s) URL",
    ),
    "explicit-missing": (lambda ch, f: _remove(ch, "itunes:explicit"), "itunes:explicit"),
    "explicit-wrong": (
        lambda ch, f: setattr(ch.find("itunes:explicit", NS), "text", "maybe"),
        "must be true or false, not 'maybe'",
    ),
    "enclosure-type": (
        _first_item(lambda it: it.find("enclosure").attrib.pop("type")),
        "enclosure type '' is not an audio type",
    ),
    "enclosure-type-video": (
        _first_item(lambda it: it.find("enclosure").set("type", "text/html")),
        "enclosure type 'text/html'",
    ),
    "enclosure-length-missing": (
        _first_item(lambda it: it.find("enclosure").attrib.pop("length")),
        "enclosure length '' is not a byte count",
    ),
    "enclosure-length-wrong": (
        _first_item(lambda it: it.find("enclosure").set("length", "123")),
        "enclosure length 123 but",
    ),
    "enclosure-not-http": (
        _first_item(lambda it: it.find("enclosure").set("url", "file:///tmp/a.m4b")),
        "enclosure URL(s) are not http(s)",
    ),
    "date-iso": (
        _first_item(lambda it: setattr(it.find("pubDate"), "text", "2026-01-05T08:00:00Z")),
        "is not an RFC 2822 date",
    ),
    "guid-duplicate": (_duplicate_guid, "is also episode 1's"),
    "guid-missing": (_first_item(lambda it: _remove(it, "guid")), "no <guid>"),
    "chapters-missing": (
        _first_item(lambda it: _remove(it, "podcast:chapters")),
        "no <podcast:chapters",
    ),
    "transcript-missing": (
        _first_item(lambda it: _remove(it, "podcast:transcript")),
        "no <podcast:transcript",
    ),
    "no-episodes": (
        lambda ch, f: [ch.remove(it) for it in ch.findall("item")],
        "no episodes",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_feed_broken_in_each_way_fails_the_check(ours, tmp_path, name):
    change, words = BROKEN[name]
    feed = _broken(ours, tmp_path, name, change)
    problems = check_feed(feed)
    assert any(words in p for p in problems), problems
    assert all("\n" not in p for p in problems)
    out = CliRunner().invoke(cli, ["podcast", "--check", str(feed)])
    assert out.exit_code == FeedCheckFailed.exit_code == 12
    assert f"audiobook: error: {feed}: " in out.output and "Traceback" not in out.output


def test_a_feed_that_is_not_xml_fails(tmp_path):
    feed = tmp_path / "feed.xml"
    feed.write_text("<rss version='2.0'><channel><title>x</channel>")
    assert check_feed(feed)[0].startswith("not well-formed XML")


def test_the_rules_are_a_pure_function_of_the_feed_and_what_is_beside_it(ours):
    """``feed_problems`` looks at nothing but its arguments: the same feed bytes pass
    with the sizes of the files beside it, and fail with a size that disagrees or an
    artwork problem handed in, wherever the feed is."""
    data = ours.feed.read_bytes()
    folder = ours.feed.parent
    sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    assert feed_problems(data, sizes=sizes) == []
    audio = ours.episodes[0].audio
    wrong = feed_problems(data, sizes={**sizes, audio: 7})
    where = f"episode 1 ({ours.episodes[0].title[:40]})"
    assert wrong == [f"{where}: enclosure length {sizes[audio]:,} but {audio} has 7 bytes"]
    art = artwork_problems(image((800, 600), "RGBA"))
    assert art == ["800x600 px is not square", "colour mode RGBA, not RGB"]
    assert feed_problems(data, sizes=sizes, artwork=art) == [f"channel artwork: {p}" for p in art]


def test_every_update_runs_the_check_and_the_cli_warns(tmp_path):
    post = tmp_path / "post.html"
    post.write_text(
        "<html><head><title>Local</title></head><body><article>"
        + "<p>An article served from nowhere yet, words enough to read. </p>" * 8
        + "</article></body></html>"
    )
    out = CliRunner().invoke(
        cli,
        [
            "podcast",
            str(post),
            "--feed",
            str(tmp_path / "feed"),
            "--state-dir",
            str(tmp_path / "state"),
            "--workers",
            "1",
        ],
    )
    assert out.exit_code == 0, out.output
    warned = [ln for ln in out.output.splitlines() if ln.startswith("audiobook: warning:")]
    assert any("no artwork" in w for w in warned), out.output
    assert any("enclosure URL(s) are not http(s)" in w for w in warned), out.output


def test_check_takes_no_articles(tmp_path, ours):
    out = CliRunner().invoke(cli, ["podcast", "--check", str(ours.feed), "a.html"])
    assert out.exit_code == 2
