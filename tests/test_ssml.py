"""The SSML renderer: golden strings for the shipped templates, template selection and
errors, and the character counts Polly bills."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from audiobook.config import RenderOptions
from audiobook.errors import ConfigError
from audiobook.ingest import IngestOptions
from audiobook.model import Block, Book, Chapter
from audiobook.ssml import (
    billable_chars,
    clean_text,
    render_book,
    render_chapter,
    sentence_spans,
    spoken_text,
    total_chars,
)

BOOK = Book(
    title="Fables",
    authors=("Aesop",),
    language="en",
    chapters=(
        Chapter(
            title="The Fox & the Grapes",
            blocks=(
                Block("paragraph", "A hungry Fox saw some fine bunches of Grapes."),
                Block("heading", "The moral"),
                Block("list_item", "First item"),
                Block("list_item", "Second item"),
                Block("quote", 'He said: "They are sour."'),
            ),
            footnotes=(Block("note", "Grapes are fruit."),),
        ),
        Chapter(title="Part Two", level=1),
    ),
)

GOLDEN_DEFAULT = (
    '<speak><p>The Fox &amp; the Grapes</p><break time="1000ms"/>'
    "<p>A hungry Fox saw some fine bunches of Grapes.</p>"
    '<break time="900ms"/><p>The moral</p>'
    '<break time="600ms"/><p>First item</p>'
    '<break time="300ms"/><p>Second item</p>'
    '<break time="600ms"/><p>He said: &quot;They are sour.&quot;</p>'
    '<break time="900ms"/><p>Notes.</p><break time="600ms"/><p>Grapes are fruit.</p>'
    '<break time="1500ms"/></speak>'
)


def test_default_template_golden():
    assert render_chapter(BOOK, 0) == GOLDEN_DEFAULT


def test_empty_chapter_speaks_its_title_only():
    assert render_chapter(BOOK, 1) == '<speak><p>Part Two</p><break time="1500ms"/></speak>'
    plain = RenderOptions(template="plain")
    assert render_chapter(BOOK, 1, plain) == (
        '<speak><p>Part Two</p><break time="1500ms"/></speak>'
    )


def test_plain_template_speaks_no_title():
    ssml = render_chapter(BOOK, 0, RenderOptions(template="plain"))
    assert ssml.startswith("<speak><p>A hungry Fox")
    assert "Fox &amp; the Grapes" not in ssml


def test_sentences_template_wraps_each_sentence():
    book = Book("B", (Chapter("C", blocks=(Block("paragraph", "One. Mr. Two is here! Three?"),)),))
    ssml = render_chapter(book, 0, RenderOptions(template="sentences"))
    assert ssml == (
        '<speak><p>C</p><break time="1000ms"/>'
        "<p><s>One.</s><s>Mr. Two is here!</s><s>Three?</s></p>"
        '<break time="1500ms"/></speak>'
    )


def test_footnotes_dropped_by_option():
    # --footnotes drop: the ingestor keeps no notes, so none are read.
    dropped = replace(BOOK, chapters=(replace(BOOK.chapters[0], footnotes=()),))
    ssml = render_chapter(dropped, 0, RenderOptions())
    assert "Notes." not in ssml and "Grapes are fruit" not in ssml
    assert ssml.endswith('<p>He said: &quot;They are sour.&quot;</p><break time="1500ms"/></speak>')


def test_bad_footnotes_option():
    with pytest.raises(ConfigError, match="footnotes: 'middle'"):
        IngestOptions(footnotes="middle")


def test_notes_intro_follows_the_book_language():
    ssml = render_chapter(replace(BOOK, language="de-DE"), 0)
    assert "<p>Anmerkungen.</p>" in ssml


def test_titles_off_and_pauses_from_options():
    options = RenderOptions(
        speak_chapter_titles=False, paragraph_pause_ms=200, chapter_pause_ms=60_000
    )
    ssml = render_chapter(BOOK, 0, options)
    assert ssml.startswith("<speak><p>A hungry Fox")
    assert '<break time="200ms"/><p>First item' in ssml
    # Polly refuses breaks over 10 s: long pauses are clamped.
    assert ssml.endswith('<break time="10000ms"/></speak>')


def test_only_tags_every_polly_engine_accepts():
    for template in ("default", "plain", "sentences"):
        for ssml in render_book(BOOK, RenderOptions(template=template)):
            root = ET.fromstring(ssml)
            assert {el.tag for el in root.iter()} <= {"speak", "p", "s", "break"}
            for br in root.iter("break"):
                assert int(br.get("time", "0ms").removesuffix("ms")) <= 10_000


def test_whitespace_collapsed_and_empty_blocks_skipped():
    book = Book(
        "B",
        (
            Chapter(
                "  A\n title ",
                blocks=(
                    Block("paragraph", "  two\n\nlines\there  "),
                    Block("paragraph", " \n\t "),
                ),
            ),
        ),
    )
    assert render_chapter(book, 0) == (
        '<speak><p>A title</p><break time="1000ms"/><p>two lines here</p>'
        '<break time="1500ms"/></speak>'
    )


def test_clean_text_removes_what_xml_forbids():
    assert clean_text("a\x00b\x07c\ud800d\ufffee\uffff") == "abcde"
    assert clean_text("a\x0bb\x0cc\x1fd") == "a b c d"  # whitespace-like controls separate
    assert (
        clean_text("e\u0301 \U0001f600 \u05e9\u05dc\u05d5\u05dd")
        == "e\u0301 \U0001f600 \u05e9\u05dc\u05d5\u05dd"
    )


# --- templates -----------------------------------------------------------------------


def test_user_template_by_path_can_extend_a_builtin(tmp_path):
    path = tmp_path / "mine.ssml.j2"
    path.write_text(
        '{% extends "default.ssml.j2" %}{% set title_first = false %}'
        "{% block paragraph scoped %}{{ b.kind }}: {{ b.text }}{% endblock %}",
        encoding="utf-8",
    )
    ssml = render_chapter(BOOK, 0, RenderOptions(template=str(path)))
    assert ssml.startswith("<speak><p>paragraph: A hungry Fox")
    assert '<break time="900ms"/><p>heading: The moral</p>' in ssml


def test_a_first_heading_that_repeats_the_title_is_not_said_twice():
    book = Book(
        "B",
        (
            Chapter(
                "Chapter I.",
                blocks=(
                    Block("heading", "CHAPTER  I"),
                    Block("paragraph", "Text."),
                ),
            ),
        ),
    )
    assert render_chapter(book, 0) == (
        '<speak><p>Chapter I.</p><break time="1000ms"/><p>Text.</p><break time="1500ms"/></speak>'
    )
    # Where the title is not spoken, the heading is.
    for options in (RenderOptions(template="plain"), RenderOptions(speak_chapter_titles=False)):
        assert render_chapter(book, 0, options).startswith("<speak><p>CHAPTER I</p>")
    # Only a heading, and only the first block.
    book = Book(
        "B",
        (
            Chapter(
                "Intro",
                blocks=(
                    Block("paragraph", "Intro"),
                    Block("heading", "Intro"),
                ),
            ),
        ),
    )
    assert render_chapter(book, 0).count("<p>Intro</p>") == 3


def test_user_template_output_is_autoescaped(tmp_path):
    # A template that prints a value we did not pre-escape still gets it escaped.
    path = tmp_path / "raw.j2"
    path.write_text("<speak><p>{{ '<break time=\"10s\"/>' }}</p></speak>", encoding="utf-8")
    ssml = render_chapter(BOOK, 0, RenderOptions(template=str(path)))
    assert ssml == "<speak><p>&lt;break time=&#34;10s&#34;/&gt;</p></speak>"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "template file not found"),
        ("<speak>{% if %}</speak>", "bad.j2:1: template syntax error"),
        ("<speak>{{ nosuchvar }}</speak>", "template error"),
        ("<speak><p>unclosed</speak>", "not well-formed SSML"),
        ("<p>no speak root</p>", "one <speak> document"),
        ('<!DOCTYPE speak [<!ENTITY x "y">]><speak>&x;</speak>', "DOCTYPE"),
    ],
)
def test_bad_template_is_a_one_line_config_error(tmp_path, content, expected):
    path = tmp_path / "bad.j2"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        render_chapter(BOOK, 0, RenderOptions(template=str(path)))
    message = str(info.value)
    assert expected in message
    assert "bad.j2" in message and "\n" not in message
    assert info.value.exit_code == 2


def test_unknown_template_name():
    with pytest.raises(ConfigError, match="nosuch: no such template .*default, plain"):
        render_chapter(BOOK, 0, RenderOptions(template="nosuch"))


# --- counting ------------------------------------------------------------------------


def test_billable_chars_counts_text_outside_tags_with_entities_decoded():
    ssml = '<speak><p>Tom &amp; &quot;Jerry&quot;</p><break time="600ms"/><p>x y</p></speak>'
    assert billable_chars(ssml) == len('Tom & "Jerry"') + len("x y")
    assert total_chars(ssml) == len(ssml)
    assert billable_chars("<speak>&#x263A;&#9786;<![CDATA[<a>]]><!-- no --></speak>") == 5
    assert billable_chars(GOLDEN_DEFAULT) == len(spoken_text(GOLDEN_DEFAULT).replace("\n\n", ""))


def test_spoken_text():
    assert spoken_text(GOLDEN_DEFAULT) == (
        "The Fox & the Grapes\n\nA hungry Fox saw some fine bunches of Grapes.\n\n"
        'The moral\n\nFirst item\n\nSecond item\n\nHe said: "They are sour."\n\n'
        "Notes.\n\nGrapes are fruit."
    )
    assert spoken_text("<speak><p><s>One.</s><s>Two.</s></p></speak>") == "One. Two."
    assert spoken_text("<speak>a<break/>b</speak>") == "a\n\nb"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three? Four", ["One. ", "Two! ", "Three? ", "Four"]),
        (
            "Mr. Smith and Dr. Who met J. R. Tolkien, e.g. today. End.",
            ["Mr. Smith and Dr. Who met J. R. Tolkien, e.g. today. ", "End."],
        ),
        ("He said “Go.” Then left… Fine.", ["He said “Go.” ", "Then left… ", "Fine."]),
        ("我是学生。你好吗？好！", ["我是学生。", "你好吗？", "好！"]),
        ("هل أنت بخير؟ نعم.", ["هل أنت بخير؟ ", "نعم."]),
        ("etc. and so on. Next", ["etc. and so on. ", "Next"]),
    ],
)
def test_sentence_spans(text, expected):
    assert sentence_spans(text) == expected


def test_espeak_accepts_rendered_ssml():
    from audiobook.engines.espeak import synthesize

    hostile = Book(
        "B",
        (
            Chapter(
                "A & <b>",
                blocks=(Block("paragraph", 'Say "hi" & it\'s </speak><break time="10s"/> fine.'),),
            ),
        ),
    )
    for template in ("default", "sentences"):
        pcm, rate = synthesize(render_chapter(hostile, 0, RenderOptions(template=template)), "en")
        seconds = len(pcm) / 2 / rate
        # Spoken, with the 1 s title pause and 1.5 s chapter pause; a 10 s break obeyed
        # would make it far longer.
        assert 3 < seconds < 9
