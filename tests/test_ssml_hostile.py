"""Hostile text through the renderer and the chunker: SSML metacharacters and fake tags,
XML-illegal characters, huge paragraphs with no sentence end, right-to-left, CJK and
emoji. Each test fails if the protection it covers is taken away."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiobook.chunk import chunk_book, split_ssml
from audiobook.config import POLLY_SYNC_LIMITS, POLLY_TASK_LIMITS, EngineLimits, RenderOptions
from audiobook.model import Block, Book, Chapter
from audiobook.ssml import billable_chars, render_chapter, spoken_text

ALLOWED_TAGS = {"speak", "p", "s", "break"}


def book_of(text: str, title: str = "Title") -> Book:
    return Book("B", (Chapter(title, blocks=(Block("paragraph", text),)),))


def parse(ssml: str) -> ET.Element:
    root = ET.fromstring(ssml)
    assert root.tag == "speak"
    return root


FAKE_MARKUP = [
    '<break time="10s"/>',
    "</speak>",
    '</p></speak><speak><audio src="http://evil.example/x.mp3"/>',
    "</speak><audio src=file:///etc/passwd>",
    "&amp; &lt; &#x41; &bogus; & &",
    "]]> <![CDATA[ x ]]>",
    "<!-- comment --> <!--",
    '<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY x "boom">]>&x;',
    '<prosody rate="x-slow" volume="+20dB">loud</prosody>',
    "<amazon:effect name=\"whispered\">psst</amazon:effect> <mark name='m'/>",
    "\"quotes\" 'apostrophes' <<>> >",
]


@pytest.mark.parametrize("text", FAKE_MARKUP)
@pytest.mark.parametrize("template", ["default", "plain", "sentences"])
def test_text_that_looks_like_ssml_is_spoken_not_interpreted(text, template):
    options = RenderOptions(template=template)
    ssml = render_chapter(book_of(text, title=text), 0, options)
    root = parse(ssml)
    # No element came from the text: only the template's own.
    assert {el.tag for el in root.iter()} <= ALLOWED_TAGS
    assert all(set(el.attrib) <= {"time"} for el in root.iter())
    # The text comes back exactly, as words to speak (as the title and the paragraph).
    assert spoken_text(ssml).count(" ".join(text.split())) == (1 if template == "plain" else 2)


def test_fake_markup_survives_chunking():
    text = " ".join(FAKE_MARKUP) * 20
    ssml = render_chapter(book_of(text), 0)
    pieces = split_ssml(ssml, EngineLimits(150, 600))
    assert len(pieces) > 5
    for piece in pieces:
        assert {el.tag for el in parse(piece).iter()} <= ALLOWED_TAGS
    assert "".join("".join(parse(p).itertext()) for p in pieces) == "".join(parse(ssml).itertext())


def test_break_in_text_adds_no_pause_in_espeak():
    from audiobook.engines.espeak import synthesize

    ssml = render_chapter(book_of('a <break time="10s"/> b'), 0, RenderOptions(template="plain"))
    pcm, rate = synthesize(ssml, "en")
    assert len(pcm) / 2 / rate < 8  # a 10 s pause obeyed would be longer


CONTROL = "".join(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r")
ILLEGAL = [CONTROL, "\ud800", "\udfff", "a\ud83dz", "\ufffe", "\uffff", "\x7f\x80\x9f"]


@pytest.mark.parametrize("bad", ILLEGAL)
def test_characters_illegal_in_xml_are_removed(bad):
    text = f"before{bad}after"
    ssml = render_chapter(book_of(text, title=bad + "T"), 0)
    root = parse(ssml)  # an XML parser accepts it
    ssml.encode("utf-8")  # and it encodes (no lone surrogates)
    assert "before" in "".join(root.itertext())
    for piece in split_ssml(ssml, EngineLimits(5, 100)):
        parse(piece).tag  # noqa: B018


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet=st.characters(codec=None, min_codepoint=0), max_size=200))
def test_any_unicode_renders_to_parseable_ssml(text):
    ssml = render_chapter(book_of(text, title=text), 0)
    parse(ssml)
    ssml.encode("utf-8")
    for piece in split_ssml(ssml, EngineLimits(20, 120)):
        parse(piece)


def test_huge_paragraph_without_sentence_end_is_chunked():
    # 2 MB with no sentence end and no whitespace: cut between characters, every piece
    # under Polly's limits. The algorithm is linear: this runs in well under a second.
    text = ("abcdefghij" * 100 + "汉字かな") * 2000
    assert len(text) > 2_000_000
    limits = POLLY_SYNC_LIMITS  # Polly's 3,000 and 6,000, less the headroom we keep
    chunks = chunk_book(book_of(text), limits)
    assert len(chunks) <= -(-(len(text) + len("Title")) // limits.max_billable) + 1
    assert all(billable_chars(c.ssml) <= 3000 and len(c.ssml) <= 6000 for c in chunks)
    assert all(
        billable_chars(c.ssml) <= limits.max_billable and len(c.ssml) <= limits.max_total
        for c in chunks
    )
    assert "".join("".join(parse(c.ssml).itertext()) for c in chunks) == "Title" + text


def test_huge_paragraph_of_escapes_and_words():
    # 1 MB of reserved characters (5 MB of entities) and 1 MB of words with no full stop.
    for text in ["<&>\"'" * 200_000, "word " * 200_000]:
        ssml = render_chapter(book_of(text), 0)
        for limits in (POLLY_SYNC_LIMITS, POLLY_TASK_LIMITS):
            pieces = split_ssml(ssml, limits)
            assert all(billable_chars(p) <= limits.max_billable for p in pieces)
            assert all(len(p) <= limits.max_total for p in pieces)
            assert sum(billable_chars(p) for p in pieces) == billable_chars(ssml)
        parse(pieces[len(pieces) // 2])


@pytest.mark.parametrize(
    "text",
    [
        "مرحبا بالعالم. هذا نص عربي طويل، بلا نهاية" * 40,  # Arabic (RTL)
        "שלום עולם. זה טקסט בעברית \u200f" * 40,  # Hebrew with RLM
        "这是一个很长的中文句子没有标点符号" * 40,  # CJK, no punctuation, no spaces
        "👨‍👩‍👧‍👦🇯🇵👍🏽" * 100,  # ZWJ sequences, flags, skin tones
        "e\u0301a\u0308\u0915\u094d\u0937" * 100,  # combining marks, Devanagari virama
    ],
)
def test_rtl_cjk_emoji_and_combining_marks(text):
    ssml = render_chapter(book_of(text), 0)
    pieces = split_ssml(ssml, EngineLimits(97, 400))
    assert len(pieces) > 2
    texts = ["".join(parse(p).itertext()) for p in pieces]
    assert "".join(texts) == "".join(parse(ssml).itertext())
    for t in texts:
        # No piece starts with a combining mark or a joiner, and none cuts a flag in two.
        assert t[0] not in "\u0301\u0308\u094d\u200d\U0001f3fd\ufe0f"
        assert t[-1] != "\u200d"
        assert t.count("\U0001f1ef") == t.count("\U0001f1f5")
