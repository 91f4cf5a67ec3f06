"""HTML ingestion on small crafted pages: boilerplate, captions, tables, code, encodings."""

from __future__ import annotations

import base64

import pytest

from audiobook.errors import NoTextError
from audiobook.ingest.base import IngestOptions
from audiobook.ingest.html import CODE_NOTE, HtmlIngestor, html_to_book

LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. "
) * 3
P = f"<p>{LOREM}</p>"
ROWS = "".join(
    f"<tr><td>Person number {i}, a long name</td><td>{i * 3} years old</td></tr>" for i in range(6)
)

ARTICLE = f"""<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8"><title>Great Article</title>
<meta name="author" content="By Jane Doe">
<meta property="article:published_time" content="2024-03-01T10:00:00Z">
</head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/news">News desk</a></li></ul></nav>
<div id="cookie-consent">We use cookies to improve your experience. Accept all</div>
<div class="ad-slot advert">Buy the SuperWidget today</div>
<article><h1>Great Article</h1>{P}
<figure><img src="cat.png" alt="A cat on a mat"><figcaption>The cat, resting.</figcaption>
</figure>{P}
<h2>Numbers</h2>{P}
<table><caption>Ages of people</caption><tr><th>Name</th><th>Age</th></tr>{ROWS}</table>
<pre><code>def secret_function():
    return 42</code></pre>{P}
<h3>Details</h3>{P}<blockquote><p>Quoted words, spoken as a quotation.</p></blockquote>
<ul><li>The first item of the list, which has quite a few words, really.</li>
<li>Second item of the list, with words, commas, and more words to say.</li></ul>{P}
<script>var tracking = "SCRIPTTEXT";</script>
</article>
<div class="comments"><h3>Comments</h3><p>I disagree with all of this, COMMENTTEXT.</p></div>
<aside class="related"><h3>Related stories</h3><ul><li><a href="/x">Other story</a></li></ul>
</aside><footer>Copyright 2024 FOOTERTEXT</footer></body></html>"""


def spoken(book) -> str:
    return " ".join(
        [c.title for c in book.chapters] + [b.text for c in book.chapters for b in c.blocks]
    )


def test_article_metadata_and_chapters():
    book = html_to_book(ARTICLE, source="great.html")
    assert book.title == "Great Article"
    assert book.authors == ("Jane Doe",)
    assert book.date == "2024-03-01T10:00:00Z"
    assert book.language == "en-GB"
    assert [(c.title, c.level) for c in book.chapters] == [
        ("Great Article", 1),
        ("Numbers", 1),
        ("Details", 2),
    ]


def test_boilerplate_is_not_spoken():
    text = spoken(html_to_book(ARTICLE, source="great.html"))
    for junk in (
        "News desk",
        "cookies",
        "SuperWidget",
        "COMMENTTEXT",
        "Other story",
        "FOOTERTEXT",
        "SCRIPTTEXT",
    ):
        assert junk not in text
    assert "Quoted words" in text


def test_block_kinds():
    book = html_to_book(ARTICLE, source="great.html")
    kinds = {(b.kind, b.text) for c in book.chapters for b in c.blocks}
    assert ("quote", "Quoted words, spoken as a quotation.") in kinds
    assert (
        "list_item",
        "The first item of the list, which has quite a few words, really.",
    ) in kinds
    assert ("code", CODE_NOTE) in kinds
    assert "secret_function" not in spoken(book)


def test_captions_and_alt_text_by_option():
    with_captions = spoken(html_to_book(ARTICLE, IngestOptions(captions=True)))
    without = spoken(html_to_book(ARTICLE, IngestOptions(captions=False)))
    assert "A cat on a mat" in with_captions and "The cat, resting." in with_captions
    assert "A cat on a mat" not in without and "The cat, resting." not in without


def test_tables_read_row_by_row_by_default():
    said = spoken(html_to_book(ARTICLE))
    assert "Ages of people. Name: Person number 0, a long name; Age: 0 years old." in said
    assert "Name: Person number 5, a long name; Age: 15 years old." in said
    rows = "".join(f"<tr><td>Item {i}</td><td>{i} units</td></tr>" for i in range(45))
    long_table = (
        f"<html><body><article>{P}<table><tr><th>What</th><th>How many</th></tr>{rows}"
        f"</table>{P}</article></body></html>"
    )
    said = spoken(html_to_book(long_table))
    assert "A table with 45 rows; columns: What, How many." in said
    assert "What: Item 29; How many: 29 units." in said
    assert "Item 30" not in said and "And 15 more rows." in said


def test_tables_summarized_skipped_or_read():
    summary = spoken(html_to_book(ARTICLE, IngestOptions(tables="summary")))
    assert "A table with 6 rows: Ages of people; columns: Name, Age." in summary
    assert "Person number 3" not in summary
    skipped = spoken(html_to_book(ARTICLE, IngestOptions(tables="skip")))
    assert "A table with" not in skipped and "Person number 3" not in skipped
    read = spoken(html_to_book(ARTICLE, IngestOptions(tables="read")))
    assert "Person number 3, a long name 9 years old" in read


def test_short_article_is_one_chapter_with_spoken_headings():
    html = (
        "<html><head><title>Short note here</title></head><body><article>"
        "<h2>Part one</h2><p>Just a few words of text in this short note.</p>"
        "<h2>Part two</h2><p>And a few more words to end it.</p></article></body></html>"
    )
    book = html_to_book(html)
    assert len(book.chapters) == 1
    assert [b.kind for b in book.chapters[0].blocks] == [
        "heading",
        "paragraph",
        "heading",
        "paragraph",
    ]


def test_footnote_markers_not_spoken():
    html = (
        f"<html><body><article><p>{LOREM}<sup class='reference'><a href='#n1'>[1]</a>"
        f"</sup> More text<sup><a href='#n2'>2</a></sup>.</p></article></body></html>"
    )
    text = spoken(html_to_book(html))
    assert "[1]" not in text and "More text." in text
    bare = (
        f"<html><body><article><p>{LOREM} A claim<a href='#note-7'>7</a>, and "
        f"<a href='#sec'>section two</a>.</p></article></body></html>"
    )
    assert "A claim, and section two." in spoken(html_to_book(bare))


@pytest.mark.parametrize(
    "html",
    [
        (
            "<html><head><title>Home</title></head><body><nav><a href='/'>Home</a>"
            "<a href='/a'>About</a></nav><div class='cookie-banner'>We use cookies.</div></body></html>"
        ),
        "<html><body></body></html>",
        "<html><body><script>document.write('hello world, a long script text')</script></body></html>",
    ],
)
def test_page_without_article_is_one_line_error(tmp_path, html):
    page = tmp_path / "landing.html"
    page.write_text(html)
    with pytest.raises(NoTextError) as info:
        HtmlIngestor().read(page, IngestOptions())
    message = str(info.value)
    assert "\n" not in message and str(page) in message and "no article" in message
    assert info.value.exit_code == NoTextError.exit_code


def test_empty_file_is_no_text(tmp_path):
    page = tmp_path / "empty.html"
    page.write_bytes(b"")
    with pytest.raises(NoTextError):
        HtmlIngestor().read(page, IngestOptions())


# --- encodings ---------------------------------------------------------------------------

CP1252_TEXT = "Café au lait — “naïve” façade, €5 and Œuvre. " * 8
SJIS_TEXT = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。" * 6


def _page(body: str, head: str = "") -> str:
    return (
        f"<html><head>{head}<title>Encoding test page</title></head>"
        f"<body><article><p>{body}</p></article></body></html>"
    )


@pytest.mark.parametrize(
    "text,encoding,head",
    [
        (CP1252_TEXT, "windows-1252", '<meta charset="windows-1252">'),
        (CP1252_TEXT, "windows-1252", '<meta charset="iso-8859-1">'),  # WHATWG: = 1252
        (
            CP1252_TEXT,
            "windows-1252",
            '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">',
        ),
        (SJIS_TEXT, "shift_jis", '<meta charset="Shift_JIS">'),
        (
            SJIS_TEXT,
            "shift_jis",
            '<meta http-equiv="content-type" content="text/html;charset=shift_jis">',
        ),
        (SJIS_TEXT, "shift_jis", ""),  # no declaration: detected
        (CP1252_TEXT, "windows-1252", ""),  # no declaration: detected
        (SJIS_TEXT, "utf-8", ""),
    ],
)
def test_declared_or_detected_encodings(tmp_path, text, encoding, head):
    page = tmp_path / "page.html"
    page.write_bytes(_page(text, head).encode(encoding))
    book = HtmlIngestor().read(page, IngestOptions())
    assert book.chapters[0].blocks[0].text == text.strip()


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_byte_order_mark(tmp_path, encoding):
    page = tmp_path / "bom.html"
    page.write_bytes(_page(CP1252_TEXT, '<meta charset="windows-1252">').encode(encoding))
    book = HtmlIngestor().read(page, IngestOptions())  # the BOM wins over the meta
    assert book.chapters[0].blocks[0].text == CP1252_TEXT.strip()


def test_xml_declaration_encoding(tmp_path):
    page = tmp_path / "page.xhtml"
    xhtml = (
        '<?xml version="1.0" encoding="Shift_JIS"?>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>XHTML page</title>'
        f"</head><body><article><p>{SJIS_TEXT}</p></article></body></html>"
    )
    page.write_bytes(xhtml.encode("shift_jis"))
    book = HtmlIngestor().read(page, IngestOptions())
    assert book.chapters[0].blocks[0].text == SJIS_TEXT


def test_rtl_direction_and_language():
    html = (
        "<html dir='rtl' lang='ar'><head><title>مقال تجريبي طويل</title></head><body>"
        "<article><p>"
        + "هذا نص عربي طويل بما يكفي ليكون مقالا. " * 10
        + "</p></article></body></html>"
    )
    book = html_to_book(html)
    assert book.direction == "rtl" and book.language == "ar"


# --- lead image ----------------------------------------------------------------------------

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_lead_image_from_local_file(tmp_path):
    (tmp_path / "cat.png").write_bytes(PNG)
    page = tmp_path / "a.html"
    page.write_text(ARTICLE)
    book = HtmlIngestor().read(page, IngestOptions())
    assert book.cover is not None and book.cover.media_type == "image/png"
    assert book.cover.data == PNG


def test_lead_image_from_data_uri_and_never_outside_the_folder(tmp_path):
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    page = tmp_path / "sub" / "a.html"
    page.parent.mkdir()
    (tmp_path / "secret.png").write_bytes(PNG)
    page.write_text(ARTICLE.replace('src="cat.png"', 'src="../secret.png"'))
    assert HtmlIngestor().read(page, IngestOptions()).cover is None
    page.write_text(ARTICLE.replace('src="cat.png"', f'src="{uri}"'))
    assert HtmlIngestor().read(page, IngestOptions()).cover.data == PNG


def test_reference_lists_read_or_dropped_by_the_footnotes_option():
    html = (
        f"<html><body><article>{P}<h2>References</h2><div class='reflist'><ol>"
        "<li>Smith, J. (2001). A REFERENCEBODY title.</li></ol></div>"
        f"<ol class='references'><li>Another REFERENCEBODY.</li></ol>{P}"
        "</article></body></html>"
    )
    assert "REFERENCEBODY" in spoken(html_to_book(html, IngestOptions(footnotes="end")))
    assert "REFERENCEBODY" not in spoken(html_to_book(html, IngestOptions(footnotes="drop")))
