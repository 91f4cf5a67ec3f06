"""Hostile HTML: each case gives a clear error or safe output, never a hang or a crash.

Every test names the protection it proves and fails without it: the text after a deep,
unclosed or huge construct must still be spoken (libxml2 drops it silently otherwise),
content of script-like elements must never be spoken, no file outside the page's folder
is read, no entity is expanded.
"""

from __future__ import annotations

import base64

import lxml.html
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiobook.errors import InputError
from audiobook.ingest._decode import decode_bytes
from audiobook.ingest.base import IngestOptions
from audiobook.ingest.html import (
    MAX_ATTRIBUTES,
    MAX_DEPTH,
    HtmlIngestor,
    article_blocks,
    flatten_nesting,
    html_to_book,
)

SENTENCE = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. "
P = f"<p>{SENTENCE * 3}</p>"
START = (
    f"<p>The article starts here with enough words to be an article of its own. {SENTENCE * 2}</p>"
)
END = f"<p>The final words of the article survive everything before them. {SENTENCE * 2}</p>"


def spoken(book) -> str:
    return " ".join(
        [c.title for c in book.chapters] + [b.text for c in book.chapters for b in c.blocks]
    )


def page(middle: str) -> str:
    return (
        f"<html><head><title>Hostile page test</title></head><body><article>{START}"
        f"{middle}{END}</article></body></html>"
    )


def test_ten_thousand_nested_divs_keep_the_text_after_them():
    # libxml2 stops at depth 255 and silently drops the rest of the document.
    deep = "<div>" * 10_000 + "<p>Deep inside the nesting sits a sentence.</p>" + "</div>" * 10_000
    book = html_to_book(page(deep))
    text = spoken(book)
    assert "Deep inside the nesting sits a sentence." in text
    assert "The final words of the article survive" in text
    assert any("flattened" in w for w in book.warnings)


def test_unclosed_tags_twenty_thousand_deep():
    unclosed = "<div><span><b>" * 7_000 + "Words in the unclosed depths. "
    text = spoken(html_to_book(page(unclosed)))
    assert "Words in the unclosed depths." in text
    assert "The final words of the article survive" in text


def test_flatten_nesting_keeps_text_and_shallow_structure():
    html = "<div>" * 5 + "x" + "</div>" * 5
    assert flatten_nesting(html, 3) == ("<div>" * 3 + "x" + "</div>" * 3, 2)
    assert flatten_nesting("<p>a<p>b<br>c", 1) == ("<p>a<p>b<br>c", 0)
    doc = lxml.html.document_fromstring(flatten_nesting("<div>" * 3000 + "deep", 100)[0])
    assert "deep" in doc.text_content()
    assert MAX_DEPTH < 255


@pytest.mark.parametrize(
    "tag",
    [
        "script",
        "style",
        "iframe",
        "object",
        "noscript",
        "template",
        "svg",
        "embed",
        "applet",
        "textarea",
        "select",
    ],
)
def test_script_like_content_is_never_spoken(tag):
    hostile = f"<{tag}>NEVERSPOKEN alert(document.cookie)</{tag}>"
    # Through the whole ingestor...
    assert "NEVERSPOKEN" not in spoken(html_to_book(page(P + hostile + P)))
    # ...and through the block walker alone (the extractor is not the only guard).
    fragment = lxml.html.fragment_fromstring(f"<div><p>kept words</p>{hostile}</div>")
    texts = [b.text for b in article_blocks(fragment, IngestOptions())]
    assert texts == ["kept words"]


def test_javascript_urls_are_never_spoken_or_followed(tmp_path):
    html = page(
        '<p>Read <a href="javascript:alert(1)">this link</a> now.</p>'
        '<img src="javascript:alert(2)" alt="">'
        '<meta property="og:image" content="javascript:alert(3)">'
    )
    path = tmp_path / "js.html"
    path.write_text(html)
    book = HtmlIngestor().read(path, IngestOptions())
    text = spoken(book)
    assert "Read this link now." in text
    assert "javascript" not in text and "alert" not in text
    assert book.cover is None


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.mark.parametrize(
    "src", ["../outside.png", "{abs}", "file://{abs}", "sub/../../outside.png"]
)
def test_images_outside_the_page_folder_are_never_read(tmp_path, src):
    outside = tmp_path / "outside.png"
    outside.write_bytes(PNG)
    folder = tmp_path / "site"
    folder.mkdir()
    path = folder / "page.html"
    path.write_text(page(f'<figure><img src="{src.format(abs=outside)}" alt="x"></figure>'))
    assert HtmlIngestor().read(path, IngestOptions()).cover is None


BOMB = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html [
<!ENTITY lol "lol">
<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
<!ENTITY xxe SYSTEM "file:///etc/hostname">
]>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Entity bomb page</title></head>
<body><article>START<p>Bomb: &lol9; and file: &xxe; end.</p>END</article></body></html>
"""


def test_entity_bomb_and_external_entity_in_xhtml(tmp_path):
    path = tmp_path / "bomb.xhtml"
    path.write_text(BOMB.replace("START", START).replace("END", END))
    book = HtmlIngestor().read(path, IngestOptions())
    text = spoken(book)
    assert "Bomb: and file: end." in text
    assert "lol" not in text and "&" not in text and "xxe" not in text
    assert "DOCTYPE internal subset (entity declarations) ignored" in book.warnings
    assert len(text) < 2_000


def test_huge_attribute_keeps_the_text_after_it():
    # libxml2 refuses attribute values over 10 MB and drops the rest of the page.
    huge = '<p data-x="' + "x" * 12_000_000 + '">Words after the huge attribute.</p>'
    book = html_to_book(page(huge))
    text = spoken(book)
    assert "Words after the huge attribute." in text
    assert "The final words of the article survive" in text
    assert any("emptied" in w for w in book.warnings)


def test_tag_with_too_many_attributes_is_stripped_not_parsed_quadratically():
    attrs = " ".join(f"a{i}=v" for i in range(MAX_ATTRIBUTES * 8))
    book = html_to_book(page(f"<p {attrs}>Words of the crowded tag.</p>"))
    assert "Words of the crowded tag." in spoken(book)
    assert any("attributes stripped" in w for w in book.warnings)


def test_deeply_nested_json_ld_is_ignored():
    bomb = '<script type="application/ld+json">' + "[" * 200_000 + "]" * 200_000 + "</script>"
    html = page("").replace("<title>", bomb + "<title>")
    book = html_to_book(html)
    assert book.title == "Hostile page test"
    assert "The final words of the article survive" in spoken(book)


def test_nul_bytes_and_control_characters():
    html = page("<p>Nul\x00 in\x01 the\x1f mid\x00dle of words.</p>" + "\x00" * 1000)
    text = spoken(html_to_book(html))
    assert "Nul in the middle of words." in text
    assert "\x00" not in text and "\ufffd" not in text


def test_nul_bytes_in_a_file(tmp_path):
    path = tmp_path / "nul.html"
    path.write_bytes(page("<p>Nul\x00 in the mid\x00dle.</p>").encode("utf-8") + b"\x00" * 10)
    text = spoken(HtmlIngestor().read(path, IngestOptions()))
    assert "Nul in the middle." in text
    decoded = decode_bytes(b"plain text with a nul\x00 byte and a bell\x07 here", markup=True)
    assert decoded.text == "plain text with a nul byte and a bell here"


@pytest.mark.parametrize("data", [bytes(range(256)) * 50, b"<p>text</p>" + b"\x00" * 4000])
def test_binary_garbage_named_html_is_a_clear_error(tmp_path, data):
    path = tmp_path / "garbage.html"
    path.write_bytes(data)
    with pytest.raises(InputError) as info:
        HtmlIngestor().read(path, IngestOptions())
    assert "\n" not in str(info.value) and str(path) in str(info.value)


TAGS = st.sampled_from(
    [
        "div",
        "p",
        "span",
        "table",
        "tr",
        "td",
        "ul",
        "li",
        "h2",
        "h3",
        "pre",
        "code",
        "figure",
        "figcaption",
        "img",
        "a",
        "script",
        "blockquote",
        "br",
        "svg",
        "sup",
        "article",
        "nav",
        "!--",
        "![CDATA[",
    ]
)
PIECES = st.one_of(
    TAGS.map(lambda t: f"<{t}>"),
    TAGS.map(lambda t: f"</{t}>"),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.sampled_from(
        [
            "&amp;",
            "&#0;",
            "&#xD800;",
            "&bogus;",
            "<",
            ">",
            "\x00",
            "]]>",
            "<!DOCTYPE x [<!ENTITY a 'b'>]>",
            '<img alt="an image">',
        ]
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PIECES, max_size=60))
def test_random_markup_never_crashes(pieces):
    html = "".join(pieces)
    try:
        book = html_to_book(html + P, source="random.html")
    except InputError as err:  # NoTextError, CorruptDocument: one line, names the file
        assert "\n" not in str(err) and "random.html" in str(err)
        return
    for ch in book.chapters:
        for b in ch.blocks:
            assert "\x00" not in b.text and b.text == b.text.strip()
