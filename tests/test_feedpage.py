"""The feed page (index.html beside feed.xml): every episode with its player and
transcript; what comes from an article is text, and links are http(s) only."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import html as lxml_html

from audiobook.engines.fake import FakeEngine
from audiobook.feedpage import http_url, transcript_lines
from audiobook.options import ConvertOptions
from audiobook.podcast import PodcastOptions, build_episodes

DATA = Path(__file__).parent / "data"
BASE = "https://podcast.example.org/page/"


def build_page(tmp_path: Path) -> Path:
    good = tmp_path / "good.html"
    good.write_text(
        "<html><head><title>A calm post</title>"
        "<link rel='canonical' href='https://blog.example.org/calm'></head><body><article>"
        "<h1>A calm post</h1>"
        + "<p>Nothing here but words, plain and quiet. </p>" * 8
        + "</article></body></html>"
    )
    result = build_episodes(
        [DATA / "hostile-article.html", good],
        tmp_path / "feed",
        ConvertOptions(fmt="m4b", synchronous=True),
        PodcastOptions(title="Page <b>&</b> test", base_url=BASE),
        engine=FakeEngine(),
        state_dir=tmp_path / "state",
    )
    assert len(result.episodes) == 2 and not result.failed
    return tmp_path / "feed" / "index.html"


@pytest.mark.ffmpeg
def test_the_page_lists_every_episode_with_player_and_transcript(tmp_path):
    page = build_page(tmp_path)
    doc = lxml_html.parse(str(page)).getroot()
    episodes = doc.find_class("episode")
    assert len(episodes) == 2
    for ep in episodes:
        audio = ep.find(".//audio")
        assert audio is not None and audio.get("src").startswith("./")
        assert (page.parent / audio.get("src")[2:]).is_file()
        assert ep.find(".//details").text_content().count("Transcript") == 1
        assert len(ep.findall(".//details/p")) >= 2
    calm = next(ep for ep in episodes if "calm" in ep.text_content())
    assert calm.find(".//h2/a").get("href") == "https://blog.example.org/calm"
    assert doc.findtext(".//title") == "Page <b>&</b> test"


@pytest.mark.ffmpeg
def test_the_hostile_article_is_text_and_its_links_are_gone(tmp_path):
    page = build_page(tmp_path)
    source = page.read_text("utf-8")
    doc = lxml_html.fromstring(source)
    assert doc.findall(".//script") == [] and doc.findall(".//iframe") == []
    assert doc.findall(".//svg") == [] and doc.findall(".//img") == []
    for el in doc.iter():
        for name, value in el.attrib.items():
            assert not name.lower().startswith("on"), (el.tag, name)
            if name in ("href", "src"):
                assert value.startswith(("./", "https://", "data:,", "feed.xml")), value
    assert "javascript:" not in "".join(
        v for el in doc.iter() for k, v in el.attrib.items() if k in ("href", "src")
    )
    hostile = next(ep for ep in doc.find_class("episode") if "hostile" in ep.text_content())
    # The title is shown as the text it is, not as markup.
    assert '<script>window.__pwned = "title"</script>' in hostile.find(".//h2").text_content()
    assert hostile.find(".//h2/a") is None  # its javascript: canonical URL is no link
    # jinja2 does not evaluate what an article says
    assert "{{ 7*7 }}" in hostile.text_content() and "49" not in hostile.text_content()


def test_http_url_lets_only_http_and_https_through():
    assert http_url("https://example.org/a?b=1") == "https://example.org/a?b=1"
    assert http_url(" http://example.org ") == "http://example.org"
    for bad in (
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,x",
        "file:///x",
        "//example.org/x",
        "/relative",
        "vbscript:x",
        "http://",
        None,
        3,
        "java\nscript:alert(1)",
        "https://exa\tmple.org",
    ):
        assert http_url(bad) is None, bad


def test_transcript_lines_unescape_cues():
    vtt = "WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.000\na &lt;b&gt; &amp; c\n\n2\n00:00:01.000 --> 00:00:02.000\nd\n"
    assert transcript_lines(vtt) == ["a <b> & c", "d"]
