"""HTML ingestion over the shared corpus, against mozilla/readability's expected outputs.

Similarity is measured on words: both texts are split on whitespace (which also
normalizes it), and ``difflib.SequenceMatcher(None, expected, got, autojunk=False).ratio()``
must reach 0.93. ``got`` is every word that will be spoken (chapter titles, block texts,
table summaries and code notes included), so what is measured is what a listener hears.
The 1 MB New Zealand page (~18k words each side) compares in about a second.
"""

from __future__ import annotations

import difflib
import json

import lxml.html
import pytest

from audiobook.ingest.base import IngestOptions
from audiobook.ingest.html import HtmlIngestor, book_words

pytestmark = pytest.mark.corpus

PAGES = ["mozilla-1", "mozilla-2", "rtl-1", "v8-blog", "wikipedia", "wikipedia-2"]


def expected_words(corpus, name: str) -> list[str]:
    path = corpus("html", "expected", f"readability-{name}.expected.html")
    return lxml.html.fromstring(path.read_text("utf-8")).text_content().split()


def expected_meta(corpus, name: str) -> dict:
    path = corpus("html", "expected", f"readability-{name}.expected-metadata.json")
    return json.loads(path.read_text("utf-8"))


def word_similarity(expected: list[str], got: list[str]) -> float:
    return difflib.SequenceMatcher(None, expected, got, autojunk=False).ratio()


@pytest.fixture(scope="module")
def books():
    cache: dict = {}

    def get(corpus, name):
        if name not in cache:
            path = corpus("html", f"readability-{name}.html")
            cache[name] = HtmlIngestor().read(path, IngestOptions())
        return cache[name]

    return get


@pytest.mark.parametrize("name", PAGES)
def test_title_and_byline_equal_expected_metadata(corpus, books, name):
    meta = expected_meta(corpus, name)
    book = books(corpus, name)
    assert book.title == meta["title"]
    assert book.authors == ((meta["byline"],) if meta["byline"] else ())


@pytest.mark.parametrize("name", PAGES)
def test_text_similarity_at_least_0_93(corpus, books, name):
    expected = expected_words(corpus, name)
    got = book_words(books(corpus, name))
    ratio = word_similarity(expected, got)
    assert ratio >= 0.93, f"{name}: similarity {ratio:.3f}"


@pytest.mark.parametrize("name", PAGES)
def test_direction_and_language(corpus, books, name):
    meta = expected_meta(corpus, name)
    book = books(corpus, name)
    assert book.direction == meta["dir"]
    assert book.language == meta.get("lang")


def test_published_date_from_json_ld(corpus, books):
    assert books(corpus, "wikipedia-2").date == "2001-10-29T01:59:14Z"


def test_wikipedia_chapters_follow_headings(corpus, books):
    book = books(corpus, "wikipedia")
    titles = [c.title for c in book.chapters]
    assert titles[0] == "Mozilla - Wikipedia"  # the text before the first heading
    assert "History" in titles
    assert all(c.level >= 1 for c in book.chapters)
    # Footnote markers are not read aloud.
    assert not any("[1]" in b.text for c in book.chapters for b in c.blocks)


def test_code_blocks_are_replaced_by_a_note(corpus, books):
    book = books(corpus, "v8-blog")
    kinds = [b.kind for c in book.chapters for b in c.blocks]
    assert "code" in kinds
    code = [b.text for c in book.chapters for b in c.blocks if b.kind == "code"]
    assert set(code) == {"Code example omitted."}
    source = corpus("html", "readability-v8-blog.html").read_text("utf-8")
    assert "EMSCRIPTEN_KEEPALIVE" in source
    assert "EMSCRIPTEN_KEEPALIVE" not in " ".join(book_words(book))


def test_no_navigation_or_script_text(corpus, books):
    text = " ".join(book_words(books(corpus, "wikipedia")))
    source = corpus("html", "readability-wikipedia.html").read_text("utf-8")
    for chrome in ("Navigation menu", "Personal tools", "Create account", "window.RLQ"):
        assert chrome in source
        assert chrome not in text
