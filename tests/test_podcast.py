"""Articles to podcast: episodes through the real pipeline, the feed read back by
feedparser and lxml, re-runs that synthesize only what is new."""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import itertools
import json
import re
import shutil
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from lxml import etree
from mutagen import File as MutagenFile
from PIL import Image

from audiobook.captions import vtt_time
from audiobook.cli import cli
from audiobook.engines.fake import FakeEngine
from audiobook.errors import InputError, NoTextError
from audiobook.options import ConvertOptions
from audiobook.podcast import (
    ITUNES_NS,
    PODCAST_NS,
    PodcastOptions,
    build_episodes,
    chapters_json,
    cue_texts,
    transcript_vtt,
)
from tests.conftest import corpus_path

THREE = ["mozilla-1", "rtl-1", "v8-blog"]
FOURTH = "mozilla-2"
BASE = "https://podcast.example.org/read-later/"
CUE_TIMING = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2}):(\d{2}):(\d{2})\.(\d{3})$")
NS = {"itunes": ITUNES_NS, "podcast": PODCAST_NS}
FIRST_RUN = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
SECOND_RUN = dt.datetime(2026, 2, 9, 8, 0, tzinfo=dt.UTC)


def article(_corpus, name: str) -> Path:
    return corpus_path("html", f"readability-{name}.html")


def options(fmt: str = "m4b") -> ConvertOptions:
    return ConvertOptions(fmt=fmt, synchronous=True)


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    corpus = None
    """A feed of three corpus articles, then a second run adding a fourth."""
    root = tmp_path_factory.mktemp("podcast")
    folder, state = root / "feed", root / "state"
    image = root / "art.png"
    image.write_bytes(PNG)
    first_engine = FakeEngine()
    first = build_episodes(
        [article(corpus, n) for n in THREE],
        folder,
        options(),
        PodcastOptions(
            title="Read Later",
            base_url=BASE,
            image=image,
            description="Saved articles, read aloud.",
            author="Ann Reader",
        ),
        engine=first_engine,
        now=lambda: FIRST_RUN,
        state_dir=state,
    )
    snapshot = {
        p.name: (p.stat().st_mtime_ns, p.read_bytes())
        for p in folder.iterdir()
        if p.suffix in (".m4b", ".json", ".vtt") and p.name != "episodes.json"
    }
    feed_after_first = (folder / "feed.xml").read_bytes()
    second_engine = FakeEngine()
    second = build_episodes(
        [article(corpus, n) for n in THREE + [FOURTH]],
        folder,
        options(),
        engine=second_engine,
        now=lambda: SECOND_RUN,
        state_dir=state,
    )
    return {
        "folder": folder,
        "state": state,
        "root": root,
        "first": first,
        "second": second,
        "first_engine": first_engine,
        "second_engine": second_engine,
        "snapshot": snapshot,
        "feed_after_first": feed_after_first,
    }


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_first_feed_parses_with_required_podcast_tags(feed):
    doc = etree.fromstring(feed["feed_after_first"])
    parsed = feedparser.parse(feed["feed_after_first"])
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "rss20"
    assert len(parsed.entries) == 3
    channel = doc.find("channel")
    for path in (
        "title",
        "link",
        "description",
        "language",
        "itunes:author",
        "itunes:image",
        "itunes:category",
        "itunes:explicit",
    ):
        assert channel.find(path, NS) is not None, path
    assert channel.findtext("title") == "Read Later"
    assert channel.find("itunes:image", NS).get("href") == BASE + "cover.png"
    assert channel.find("itunes:explicit", NS).text in ("false", "true")
    assert channel.find("itunes:category", NS).get("text")
    for item in channel.findall("item"):
        for path in (
            "title",
            "enclosure",
            "guid",
            "pubDate",
            "itunes:duration",
            "podcast:chapters",
            "podcast:transcript",
        ):
            assert item.find(path, NS) is not None, path
        assert item.find("guid").get("isPermaLink") == "false"
        assert item.find("enclosure").get("type") == "audio/x-m4a"
        assert item.find("podcast:chapters", NS).get("type") == "application/json+chapters"
        assert item.find("podcast:transcript", NS).get("type") == "text/vtt"
        assert re.fullmatch(r"\d{2}:\d{2}:\d{2}", item.findtext("itunes:duration", namespaces=NS))
    assert {e.title for e in parsed.entries} == {
        "Firefox — Customize and make it your own — The most flexible browser on the Web",
        "RTL Test",
        "standalone WebAssembly binaries using Emscripten · V8",
    }


def _local(folder: Path, url: str) -> Path:
    assert url.startswith(BASE)
    return folder / url[len(BASE) :]


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_enclosure_length_equals_file_size_and_audio_has_the_chapters(feed):
    folder = feed["folder"]
    parsed = feedparser.parse((folder / "feed.xml").read_bytes())
    assert not parsed.bozo and len(parsed.entries) == 4
    for entry in parsed.entries:
        enclosure = entry.enclosures[0]
        audio = _local(folder, enclosure.href)
        assert int(enclosure.length) == audio.stat().st_size
        chapters = json.loads(_local(folder, entry.podcast_chapters["url"]).read_text())
        tagged = MutagenFile(audio)
        assert [c.title for c in tagged.chapters] == [c["title"] for c in chapters["chapters"]]
        assert tagged.tags["\xa9gen"] == ["Podcast"]
        assert tagged.tags["\xa9alb"] == ["Read Later"]
        hours, minutes, seconds = map(int, entry.itunes_duration.split(":"))
        assert abs(hours * 3600 + minutes * 60 + seconds - tagged.info.length) <= 1


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_chapters_json_is_valid(feed):
    folder = feed["folder"]
    for ep in feed["second"].episodes:
        data = json.loads((folder / ep.chapters).read_text("utf-8"))
        assert data["version"] == "1.2.0"
        starts = [c["startTime"] for c in data["chapters"]]
        assert starts[0] == 0 and starts == sorted(starts)
        assert all(isinstance(c["title"], str) and c["title"] for c in data["chapters"])
        assert data["chapters"][-1]["endTime"] <= ep.duration + 0.5
    v8 = next(e for e in feed["second"].episodes if "V8" in e.title)
    titles = [c["title"] for c in json.loads((folder / v8.chapters).read_text())["chapters"]]
    assert titles[:2] == [
        "standalone WebAssembly binaries using Emscripten · V8",
        "Using standalone mode in Emscripten",
    ]


def _cues(vtt: str) -> list[tuple[float, float, str]]:
    assert vtt.startswith("WEBVTT\n")
    cues = []
    for block in vtt.split("\n\n")[1:]:
        lines = [line for line in block.splitlines() if line]
        if not lines:
            continue
        timing = next(line for line in lines if "-->" in line)
        m = CUE_TIMING.match(timing)
        assert m, timing
        g = [int(x) for x in m.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        text = "\n".join(lines[lines.index(timing) + 1 :])
        assert text and "-->" not in text and "<" not in text
        cues.append((start, end, text))
    return cues


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_transcript_is_valid_webvtt_with_a_cue_per_chapter(feed):
    folder = feed["folder"]
    for ep in feed["second"].episodes:
        cues = _cues((folder / ep.transcript).read_text("utf-8"))
        chapters = json.loads((folder / ep.chapters).read_text())["chapters"]
        assert len(cues) >= len(chapters)
        for (s1, e1, _), (s2, _e2, _) in itertools.pairwise(cues):
            assert s1 < e1 <= s2 + 0.001
        assert cues[-1][1] <= ep.duration + 0.5
        # every chapter opens with its title, at the chapter's start
        starts = {round(c["startTime"], 3): c["title"] for c in chapters}
        for start, _end, text in cues:
            if round(start, 3) in starts and text == starts[round(start, 3)]:
                starts.pop(round(start, 3))
        assert not starts


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_rerun_with_a_fourth_article_synthesizes_only_the_fourth(feed, corpus, tmp_path):
    first, second = feed["first"], feed["second"]
    assert set(second.kept) == set(first.added) and len(second.added) == 1
    assert second.chunks_submitted == len(feed["second_engine"].submitted) > 0
    # What the fourth alone costs from an empty cache:
    alone = FakeEngine()
    build_episodes(
        [article(corpus, FOURTH)],
        tmp_path / "alone",
        options(),
        engine=alone,
        state_dir=tmp_path / "st",
    )
    assert len(feed["second_engine"].submitted) == len(alone.submitted)
    assert sorted(c.ssml for c in feed["second_engine"].submitted) == sorted(
        c.ssml for c in alone.submitted
    )
    # The three old episodes' files were not touched.
    folder = feed["folder"]
    for name, (mtime, data) in feed["snapshot"].items():
        assert (folder / name).stat().st_mtime_ns == mtime
        assert (folder / name).read_bytes() == data


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_guid_and_pubdate_stable_across_runs(feed):
    before = {e.guid: e for e in feed["first"].episodes}
    after = {e.guid: e for e in feed["second"].episodes}
    assert set(before) <= set(after)
    for guid, ep in before.items():
        assert after[guid].pub_date == ep.pub_date
    # the v8 post has a date of its own; the others were first seen on the first run
    v8 = next(e for e in before.values() if "V8" in e.title)
    assert v8.pub_date == "Thu, 21 Nov 2019 00:00:00 +0000"
    rtl = next(e for e in before.values() if e.title == "RTL Test")
    assert rtl.pub_date == "Mon, 05 Jan 2026 08:00:00 +0000"
    new = next(e for e in after.values() if e.guid not in before)
    assert new.pub_date == "Mon, 09 Feb 2026 08:00:00 +0000"
    # feed order: newest first
    dates = [email.utils.parsedate_to_datetime(e.pub_date) for e in feed["second"].episodes]
    assert dates == sorted(dates, reverse=True)


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_same_articles_in_a_new_folder_get_the_same_guids(feed, corpus, tmp_path):
    again = build_episodes(
        [article(corpus, n) for n in THREE],
        tmp_path / "other",
        options(),
        engine=FakeEngine(),
        state_dir=feed["state"],
    )
    assert {e.guid for e in again.episodes} == set(feed["first"].added)
    assert again.chunks_submitted == 0  # the pipeline's cache had every chunk


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_changed_article_is_updated_in_place_with_the_same_guid(corpus, tmp_path):
    src = tmp_path / "post.html"
    shutil.copyfile(article(corpus, "v8-blog"), src)
    folder, state = tmp_path / "feed", tmp_path / "state"
    first = build_episodes([src], folder, options(), engine=FakeEngine(), state_dir=state)
    text = src.read_text("utf-8")
    src.write_text(
        text.replace(
            "Emscripten has always focused first and foremost",
            "Emscripten has always, truly, focused first and foremost",
        ),
        "utf-8",
    )
    engine = FakeEngine()
    second = build_episodes([src], folder, options(), engine=engine, state_dir=state)
    assert second.updated == first.added and not second.added
    assert 0 < len(engine.submitted) < len(first.episodes) + first.chunks_submitted
    assert second.episodes[0].pub_date == first.episodes[0].pub_date
    assert "truly" in (folder / second.episodes[0].transcript).read_text()


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_mp3_episodes(corpus, tmp_path):
    result = build_episodes(
        [article(corpus, "rtl-1")],
        tmp_path / "feed",
        options(fmt="mp3"),
        PodcastOptions(base_url=BASE),
        engine=FakeEngine(),
        state_dir=tmp_path / "state",
    )
    ep = result.episodes[0]
    assert ep.audio.endswith(".mp3") and ep.media_type == "audio/mpeg"
    parsed = feedparser.parse((tmp_path / "feed" / "feed.xml").read_bytes())
    enclosure = parsed.entries[0].enclosures[0]
    assert enclosure.type == "audio/mpeg"
    assert int(enclosure.length) == (tmp_path / "feed" / ep.audio).stat().st_size
    assert MutagenFile(tmp_path / "feed" / ep.audio).tags["TCON"].text == ["Podcast"]


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_corrupt_index_is_a_one_line_error(corpus, tmp_path):
    folder = tmp_path / "feed"
    folder.mkdir()
    (folder / "episodes.json").write_text("{not json")
    with pytest.raises(InputError) as info:
        build_episodes(
            [article(corpus, "rtl-1")],
            folder,
            options(),
            engine=FakeEngine(),
            state_dir=tmp_path / "s",
        )
    assert "\n" not in str(info.value) and "episodes.json" in str(info.value)


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_cli_podcast_with_the_local_engine(corpus, tmp_path):
    runner = CliRunner()
    args = [
        "podcast",
        str(article(corpus, "rtl-1")),
        "--feed",
        str(tmp_path / "feed"),
        "--title",
        "CLI feed",
        "--base-url",
        BASE,
        "--state-dir",
        str(tmp_path / "st"),
        "--engine",
        "espeak",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "1 added" in result.output
    parsed = feedparser.parse((tmp_path / "feed" / "feed.xml").read_bytes())
    assert parsed.feed.title == "CLI feed" and len(parsed.entries) == 1
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and "1 kept" in again.output
    missing = runner.invoke(
        cli, ["podcast", str(tmp_path / "nope.html"), "--feed", str(tmp_path / "feed")]
    )
    assert missing.exit_code == InputError.exit_code
    assert "nope.html" in missing.output and "Traceback" not in missing.output


@pytest.mark.ffmpeg
@pytest.mark.corpus
def test_an_unreadable_article_fails_alone(corpus, tmp_path):
    landing = tmp_path / "landing.html"
    landing.write_text("<html><body><nav><a href='/'>Home</a></nav></body></html>")
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "podcast",
            str(landing),
            str(article(corpus, "rtl-1")),
            "--feed",
            str(tmp_path / "feed"),
            "--engine",
            "espeak",
            "--state-dir",
            str(tmp_path / "st"),
        ],
    )
    assert result.exit_code == NoTextError.exit_code
    assert "1 added" in result.output
    assert f"audiobook: error: {landing}: no article text found" in result.output
    assert "Traceback" not in result.output
    assert len(feedparser.parse((tmp_path / "feed" / "feed.xml").read_bytes()).entries) == 1


@pytest.mark.ffmpeg
def test_lead_image_becomes_channel_artwork_when_none_is_given(tmp_path):
    page = tmp_path / "post.html"
    (tmp_path / "lead.png").write_bytes(PNG)
    page.write_text(
        "<html><head><title>A post with a picture</title></head><body><article>"
        "<img src='lead.png' alt=''><p>"
        + "Words of the post, enough of them. " * 20
        + "</p></article></body></html>"
    )
    build_episodes(
        [page],
        tmp_path / "feed",
        options(),
        PodcastOptions(base_url=BASE),
        engine=FakeEngine(),
        state_dir=tmp_path / "st",
    )
    doc = etree.parse(str(tmp_path / "feed" / "feed.xml"))
    assert doc.find("channel/itunes:image", NS).get("href") == BASE + "cover.png"
    with Image.open(tmp_path / "feed" / "cover.png") as cover:
        assert (cover.size, cover.mode) == ((1400, 1400), "RGB")
        assert cover.getpixel((700, 700)) == (200, 120, 40)


# --- pure pieces ---------------------------------------------------------------------------


def test_vtt_timestamps_and_escaping():
    from audiobook.model import Block, Book, Chapter

    assert vtt_time(3725.5) == "01:02:05.500"
    book = Book("T", (Chapter("One", 1, (Block("paragraph", "a <b> & c --> d"),)),))
    vtt = transcript_vtt(book, [("One", 0.0, 2.0)], 2.0)
    assert "a &lt;b&gt; &amp; c --&gt; d" in vtt
    assert [c[:2] for c in _cues(vtt)][-1][1] == 2.0
    assert chapters_json([("One", 0.0, 2.0)]) == {
        "version": "1.2.0",
        "chapters": [{"startTime": 0.0, "endTime": 2.0, "title": "One"}],
    }


def test_a_title_is_captioned_once_as_it_is_spoken_once():
    """An article whose first heading repeats its title (the usual <h1>): the voice
    says the title once (the SSML drops the heading), and so does the transcript."""
    from audiobook.config import RenderOptions
    from audiobook.model import Block, Book, Chapter
    from audiobook.ssml import render_chapter, spoken_text

    book = Book(
        "Tides",
        (
            Chapter(
                "Tides",
                1,
                (
                    Block("heading", "Tides"),
                    Block("paragraph", "The sea rises and falls twice a day."),
                    Block("heading", "The moon"),
                    Block("paragraph", "Its pull heaps the water up."),
                ),
            ),
        ),
    )
    texts = [c[2] for c in _cues(transcript_vtt(book, [("Tides", 0.0, 4.0)], 4.0))]
    assert texts == [
        "Tides",
        "The sea rises and falls twice a day.",
        "The moon",
        "Its pull heaps the water up.",
    ]
    assert spoken_text(render_chapter(book, 0)).split("\n\n") == texts  # what is said
    # A rendering that speaks no titles captions none: the heading is said, once.
    quiet = RenderOptions(speak_chapter_titles=False)
    texts = [c[2] for c in _cues(transcript_vtt(book, [], 4.0, quiet))]
    assert texts.count("Tides") == 1 and texts[0] == "Tides" and len(texts) == 4


@pytest.mark.ffmpeg
def test_an_episode_transcript_and_page_say_the_title_once(tmp_path):
    """An EPUB chapter opens with an <h1> that says its title from the table of
    contents: one caption of it in the transcript, one line of it on the feed page."""
    from tests.epubkit import Doc, build_epub

    body = "<h1>The Tides</h1>" + "<p>The sea rises and falls twice a day.</p>" * 3
    build_epub(
        tmp_path / "tides.epub", [Doc("c1.xhtml", body)], toc=[("The Tides", "c1.xhtml", [])]
    )
    result = build_episodes(
        [tmp_path / "tides.epub"],
        tmp_path / "feed",
        options(),
        engine=FakeEngine(),
        state_dir=tmp_path / "st",
    )
    (ep,) = result.episodes
    texts = [c[2] for c in _cues((tmp_path / "feed" / ep.transcript).read_text("utf-8"))]
    assert texts[0] == "The Tides" and texts.count("The Tides") == 1 and len(texts) == 4
    page = (tmp_path / "feed" / "index.html").read_text("utf-8")
    assert page.count("The Tides") == 1  # the transcript's line (the episode is "Test Book")


def test_long_blocks_are_cut_into_sentence_cues():
    sentence = "A sentence of some length, with a few words in it. "
    cues = cue_texts((sentence * 10).strip(), limit=120)
    assert " ".join(cues) == (sentence * 10).strip()
    assert all(len(c) <= 120 for c in cues) and len(cues) == 5
    assert cue_texts("short") == ["short"]


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, (200, 120, 40, 255)).save(out, "PNG")
    return out.getvalue()


PNG = _png((1, 1))  # far from the 1400 px square the directories take: resized
