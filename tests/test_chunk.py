"""The chunker: properties over generated books and limits (hypothesis), and where it
chooses to cut."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiobook.chunk import chunk_book, split_ssml
from audiobook.config import POLLY_SYNC_LIMITS, POLLY_TASK_LIMITS, EngineLimits, RenderOptions
from audiobook.model import Block, Book, Chapter
from audiobook.ssml import billable_chars, render_chapter, spoken_text

_STRUCTURAL = re.compile(r"</?(?:speak|p|s)>")


def text_of(ssml: str) -> str:
    """The decoded text, as an independent XML parser reads it."""
    return "".join(ET.fromstring(ssml).itertext())


def check_pieces(
    ssml: str, pieces: list[str], limits: EngineLimits, structural: re.Pattern[str] = _STRUCTURAL
) -> None:
    assert pieces
    for piece in pieces:
        assert billable_chars(piece) <= limits.max_billable
        assert len(piece) <= limits.max_total
        assert ET.fromstring(piece).tag == "speak"  # well-formed: no cut inside a tag
        # billable_chars agrees with an XML parser's reading of the text
        assert billable_chars(piece) == len(text_of(piece))
    # Nothing lost, duplicated or reordered, whitespace included.
    assert "".join(text_of(p) for p in pieces) == text_of(ssml)
    # Apart from the <speak>/<p>/<s> tags that close and reopen at the cuts, the pieces
    # are the input cut in order: no tag or entity (&amp;) was cut through or changed.
    assert "".join(structural.sub("", p) for p in pieces) == structural.sub("", ssml)
    # No piece is a pause alone (a wasted request), where the limits leave room.
    if len(pieces) > 1 and limits.max_billable >= 20 and limits.max_total >= 80:
        assert all(billable_chars(p) > 0 for p in pieces)
    # What is spoken is the same, modulo whitespace at the cut points.
    spoken = "".join(spoken_text(p) for p in pieces)
    assert "".join(spoken.split()) == "".join(spoken_text(ssml).split())


# --- generated books -----------------------------------------------------------------

_ALPHABET = st.sampled_from(
    list("abcdefghij ABC   ..,;:!?—'\"<>&/=")
    + ["\u2026", "\u3002", "\uff01", "\uff1f", "\u061f", "\u060c", "\u3001"]  # … 。！？ ؟ ، 、
    + ["汉", "字", "語", "か", "ナ", "한"]  # CJK
    + ["\u05e9", "\u05dc", "\u0645", "\u0631", "\u200f"]  # Hebrew, Arabic, RLM
    + ["\u0301", "\u0308", "\u094d"]  # combining marks
    + ["\U0001f600", "\u200d", "\U0001f468", "\U0001f1eb", "\U0001f1f7", "\ufe0f"]  # emoji
    + ["\x00", "\x07", "\x0b", "\ud800", "\uffff", "\n", "\t"]  # illegal in XML / spaces
    + ["&amp;", "</speak>", '<break time="10s"/>', "]]>", "<!--", "Mr. ", "e.g. "]
)
_TEXT = st.one_of(
    st.lists(_ALPHABET, max_size=80).map("".join),
    st.builds(
        lambda c, n: c * n, st.sampled_from(["a", "汉", "&", "e\u0301", "ab "]), st.integers(1, 400)
    ),  # long runs with no punctuation (or no whitespace)
)
_BLOCK = st.builds(Block, st.sampled_from(["paragraph", "heading", "list_item", "quote"]), _TEXT)
_CHAPTER = st.builds(
    Chapter,
    title=_TEXT,
    blocks=st.lists(_BLOCK, max_size=6).map(tuple),
    footnotes=st.lists(_BLOCK, max_size=2).map(tuple),
)
_BOOK = st.builds(
    Book, title=st.just("T"), chapters=st.lists(_CHAPTER, min_size=1, max_size=3).map(tuple)
)
_LIMITS = st.one_of(
    st.builds(
        lambda b, extra: EngineLimits(b, 60 + extra), st.integers(1, 400), st.integers(0, 1500)
    ),
    st.builds(
        lambda b, extra: EngineLimits(b, 80 + extra), st.integers(20, 400), st.integers(0, 40)
    ),  # total-bound
)
_OPTIONS = st.sampled_from(
    [
        RenderOptions(),
        RenderOptions(template="sentences"),
        RenderOptions(template="plain"),
    ]
)

_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(book=_BOOK, limits=_LIMITS, options=_OPTIONS)
def test_split_properties_over_generated_books(book, limits, options):
    for index in range(len(book.chapters)):
        ssml = render_chapter(book, index, options)
        check_pieces(ssml, split_ssml(ssml, limits), limits)


@_SETTINGS
@given(book=_BOOK, limits=_LIMITS)
def test_chunk_book_keeps_chapters_apart(book, limits):
    chunks = chunk_book(book, limits)
    assert sorted({c.chapter_idx for c in chunks}) == list(range(len(book.chapters)))
    for index in range(len(book.chapters)):
        mine = [c for c in chunks if c.chapter_idx == index]
        assert [c.seq for c in mine] == list(range(len(mine)))
        ssml = render_chapter(book, index)
        check_pieces(ssml, [c.ssml for c in mine], limits)
    # In order: chapter by chapter, piece by piece.
    assert [(c.chapter_idx, c.seq) for c in chunks] == sorted(
        (c.chapter_idx, c.seq) for c in chunks
    )


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=300), limits=_LIMITS)
def test_split_properties_over_any_text(text, limits):
    book = Book("T", (Chapter("t", blocks=(Block("paragraph", text),)),))
    ssml = render_chapter(book, 0)
    check_pieces(ssml, split_ssml(ssml, limits), limits)


# --- real limits ---------------------------------------------------------------------


def _novel_chapter(paragraphs: int) -> Book:
    sentence = "It was the best of times, it was the worst of times; it was the age of wisdom."
    blocks = tuple(
        Block("paragraph", " ".join([sentence] * (3 + i % 7))) for i in range(paragraphs)
    )
    return Book("Novel", (Chapter("Chapter One", blocks=blocks),))


@pytest.mark.parametrize("limits", [POLLY_SYNC_LIMITS, POLLY_TASK_LIMITS])
def test_polly_limits_on_a_long_chapter(limits):
    book = _novel_chapter(900)  # about 350,000 characters
    ssml = render_chapter(book, 0)
    pieces = split_ssml(ssml, limits)
    check_pieces(ssml, pieces, limits)
    billed = [billable_chars(p) for p in pieces]
    # Filled close to the limit: few pieces (the last two may share what is left).
    least = -(-billable_chars(ssml) // limits.max_billable)
    assert len(pieces) <= least * 1.05 + 1
    assert min(billed[:-2], default=limits.max_billable) > limits.max_billable * 0.75
    # Cut between paragraphs (after a pause) or else at a sentence end.
    for piece in pieces[:-1]:
        assert piece.endswith(('"/></speak>', "wisdom. </p></speak>"))
    assert sum(p.endswith('"/></speak>') for p in pieces) > len(pieces) / 2


def test_fits_already_comes_back_unchanged():
    ssml = render_chapter(_novel_chapter(3), 0)
    assert split_ssml(ssml, POLLY_SYNC_LIMITS) == [ssml]


def test_no_tiny_last_piece():
    # A little more than one piece: two pieces of similar size, not a full one and a
    # scrap (nor a piece with nothing but the chapter's closing pause).
    words = " ".join(f"word{i}." for i in range(480))  # about 3,300 characters
    ssml = render_chapter(Book("B", (Chapter("", blocks=(Block("paragraph", words),)),)), 0)
    pieces = split_ssml(ssml, POLLY_SYNC_LIMITS)
    check_pieces(ssml, pieces, POLLY_SYNC_LIMITS)
    assert len(pieces) == 2
    assert min(billable_chars(p) for p in pieces) > 1000
    exact = "x" * 2999 + "."
    ssml = render_chapter(Book("B", (Chapter("", blocks=(Block("paragraph", exact),)),)), 0)
    pieces = split_ssml(ssml, EngineLimits(3000, 3030))  # the closing pause does not fit
    assert len(pieces) == 2 and all(billable_chars(p) > 1000 for p in pieces)


# --- where it cuts -------------------------------------------------------------------


def _split_text(text: str, limits: EngineLimits, template: str = "plain") -> list[str]:
    book = Book("B", (Chapter("", blocks=(Block("paragraph", text),)),))
    ssml = render_chapter(book, 0, RenderOptions(template=template))
    pieces = split_ssml(ssml, limits)
    check_pieces(ssml, pieces, limits)
    return [text_of(p) for p in pieces]


def test_cuts_at_sentence_ends_not_after_abbreviations():
    text = "The first sentence ends here. Then Mr. Smith met Dr. Jones, e.g. at noon today."
    texts = _split_text(" ".join([text] * 5), EngineLimits(100, 400))
    assert len(texts) > 3
    for t in texts[:-1]:
        assert t.endswith(("today. ", "here. "))


def test_cuts_at_clauses_then_whitespace_in_long_sentences():
    text = "one two three, four five six; seven eight — nine ten " * 10
    texts = _split_text(text, EngineLimits(60, 400))
    assert len(texts) > 5
    assert all(t.endswith((", ", "; ", "— ")) for t in texts[:-1])
    no_punct = "lorem ipsum dolor sit amet " * 40
    texts = _split_text(no_punct, EngineLimits(50, 400))
    assert all(t.endswith(" ") for t in texts[:-1])


def test_cjk_cut_at_full_stops_or_between_characters():
    texts = _split_text("我是学生你好吗今天天气很好。" * 30, EngineLimits(40, 400))
    assert all(t.endswith("。") for t in texts[:-1])
    texts = _split_text("汉" * 1000, EngineLimits(300, 2000))
    assert [len(t) for t in texts] == [300, 300, 300, 100]


def test_grapheme_clusters_stay_whole():
    for cluster in [
        "e\u0301",
        "\U0001f1eb\U0001f1f7",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\U0001f44d\U0001f3fd",
    ]:
        texts = _split_text(cluster * 200, EngineLimits(29, 400))
        assert len(texts) > 1
        assert all(t == cluster * (len(t) // len(cluster)) for t in texts), cluster


def test_entities_are_never_cut():
    texts = _split_text("&<>\"'" * 200, EngineLimits(7, 120))
    assert "".join(texts) == "&<>\"'" * 200
    assert max(len(t) for t in texts) <= 7


def test_sentence_elements_are_closed_and_reopened():
    text = "A sentence with no end in sight goes on and on and on " * 4
    pieces = split_ssml(
        render_chapter(
            Book("B", (Chapter("", blocks=(Block("paragraph", text),)),)),
            0,
            RenderOptions(template="sentences"),
        ),
        EngineLimits(80, 400),
    )
    assert all(p.startswith("<speak><p><s>") for p in pieces[1:])
    assert all(p.endswith("</s></p></speak>") for p in pieces[:-1])


def test_user_markup_is_reopened_with_its_attributes():
    ssml = '<speak><prosody rate="90%"><p>' + "word " * 60 + "</p></prosody></speak>"
    pieces = split_ssml(ssml, EngineLimits(100, 400))
    check_pieces(
        ssml,
        pieces,
        EngineLimits(100, 400),
        re.compile(
            r"</?(?:speak|p)>|"
            r"</?prosody[^>]*>"
        ),
    )
    assert len(pieces) == 3
    assert all(p.startswith('<speak><prosody rate="90%"><p>') for p in pieces)
    assert all(p.endswith("</p></prosody></speak>") for p in pieces)


def test_limits_too_small_is_an_error():
    ssml = render_chapter(_novel_chapter(1), 0)
    with pytest.raises(ValueError, match="limits too small"):
        split_ssml(ssml, EngineLimits(100, 20))


def test_not_a_speak_document_is_an_error():
    with pytest.raises(ValueError):
        split_ssml("<p>" + "x" * 100 + "</p>", EngineLimits(10, 100))


# --- real books ----------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.parametrize(
    "name",
    [
        "gutenberg-1661-adventures-of-sherlock-holmes.epub",
        "gutenberg-23962-xiyouji-zh.epub",
        "idpf-regime-anticancer-arabic.epub",
        "se-leaves-of-grass.epub",
    ],
)
def test_corpus_books_chunk_under_polly_limits(corpus, name):
    from audiobook.ingest import IngestOptions, read_book

    book = read_book(corpus("epub", name), IngestOptions())
    for limits in (POLLY_SYNC_LIMITS, POLLY_TASK_LIMITS):
        chunks = chunk_book(book, limits)
        for index in range(len(book.chapters)):
            ssml = render_chapter(book, index)
            pieces = [c.ssml for c in chunks if c.chapter_idx == index]
            assert all(billable_chars(p) <= limits.max_billable for p in pieces)
            assert all(len(p) <= limits.max_total for p in pieces)
            assert "".join(text_of(p) for p in pieces) == text_of(ssml)
            # Filled close to the limit: at most one piece more than the least possible.
            assert len(pieces) <= -(-billable_chars(ssml) // limits.max_billable) + 1
