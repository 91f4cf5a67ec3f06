"""EPUB ingestor rules, each on a small EPUB built in tmp_path (tests/epubkit.py)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from audiobook.errors import CorruptDocument, InputError, NoTextError
from audiobook.ingest import IngestOptions, ingestor_for, read_book
from audiobook.ingest.epub import EpubIngestor, read_epub
from tests.epubkit import Doc, Extra, build_epub, xhtml

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def titles(book):
    return [c.title for c in book.chapters]


def texts(chapter):
    return [b.text for b in chapter.blocks]


def kinds(chapter):
    return [(b.kind, b.text) for b in chapter.blocks]


# ----------------------------------------------------------------------------- metadata


def test_metadata_epub3(tmp_path):
    path = build_epub(
        tmp_path / "m.epub",
        [Doc("c1.xhtml", "<p>Hello.</p>")],
        [("One", "c1.xhtml", [])],
        title="Main Title",
        authors=("First Author", "Second Author"),
        language="fr-CA",
        metadata_extra=(
            "<dc:title>A Subtitle</dc:title><dc:publisher>Pub</dc:publisher>"
            "<dc:date>1851-10-18</dc:date><dc:description>&lt;p&gt;About "
            "&lt;b&gt;it&lt;/b&gt;&lt;/p&gt;</dc:description>"
        ),
        extras=[Extra("images/c.jpg", "image/jpeg", JPEG, properties="cover-image")],
        page_direction="rtl",
    )
    book = read_epub(path)
    assert book.title == "Main Title"
    assert book.authors == ("First Author", "Second Author")
    assert book.language == "fr-CA"
    assert book.publisher == "Pub"
    assert book.date == "1851-10-18"
    assert book.description == "About it"
    assert book.direction == "rtl"
    assert book.cover is not None and book.cover.data == JPEG
    assert book.cover.media_type == "image/jpeg"
    assert book.source == str(path)
    assert book.warnings == ()


def test_epub2_meta_cover_png_and_svg_cover_skipped(tmp_path):
    p2 = build_epub(
        tmp_path / "a.epub",
        [Doc("c.xhtml", "<p>x</p>")],
        [("C", "c.xhtml", [])],
        version=2,
        metadata_extra='<meta name="cover" content="cov"/>',
        extras=[Extra("cover.png", "image/png", PNG, item_id="cov")],
    )
    book = read_epub(p2)
    assert book.cover is not None and book.cover.media_type == "image/png"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    p3 = build_epub(
        tmp_path / "b.epub",
        [Doc("c.xhtml", "<p>x</p>")],
        [("C", "c.xhtml", [])],
        extras=[Extra("cover.svg", "image/svg+xml", svg, properties="cover-image")],
    )
    assert read_epub(p3).cover is None


def test_title_falls_back_to_file_name(tmp_path):
    path = build_epub(
        tmp_path / "nameless.epub", [Doc("c.xhtml", "<p>x</p>")], [("C", "c.xhtml", [])], title=""
    )
    assert read_epub(path).title == "nameless"


def test_registry_picks_epub_ingestor(tmp_path):
    path = build_epub(tmp_path / "r.EPUB", [Doc("c.xhtml", "<p>x</p>")], [("C", "c.xhtml", [])])
    assert isinstance(ingestor_for(path), EpubIngestor)
    assert read_book(path).chapters[0].title == "C"


# ---------------------------------------------------------------------------- chapters


def test_nav_every_level_with_titles_and_levels(tmp_path):
    docs = [
        Doc("p1.xhtml", "<h1>Part</h1><p>Part intro.</p>"),
        Doc("c1.xhtml", "<h2>C1</h2><p>One.</p>"),
        Doc("c2.xhtml", "<h2>C2</h2><p>Two.</p><h3 id='s'>S</h3><p>Sub.</p>"),
    ]
    toc = [
        (
            "  Part\n   One ",
            "p1.xhtml",
            [
                ("Chapter 1", "c1.xhtml", []),
                ("Chapter 2", "c2.xhtml", [("Section", "c2.xhtml#s", [])]),
            ],
        )
    ]
    book = read_epub(build_epub(tmp_path / "n.epub", docs, toc))
    assert titles(book) == ["Part One", "Chapter 1", "Chapter 2", "Section"]
    assert [c.level for c in book.chapters] == [1, 2, 2, 3]
    assert texts(book.chapters[2]) == ["C2", "Two."]
    assert texts(book.chapters[3]) == ["S", "Sub."]
    assert book.chapters[3].source.endswith("c2.xhtml#s")


def test_anchors_split_one_file(tmp_path):
    body = (
        "<p>Before any anchor.</p>"
        "<h2 id='a'>A</h2><p>Text of A.</p><p>More <span id='b'>of B</span> here.</p>"
        "<div id='c'><h2>C</h2><p>Text of C.</p></div>"
    )
    toc = [("A", "book.xhtml#a", []), ("B", "book.xhtml#b", []), ("C", "book.xhtml#c", [])]
    book = read_epub(build_epub(tmp_path / "s.epub", [Doc("book.xhtml", body)], toc))
    assert titles(book) == ["A", "B", "C"]
    # text before the first TOC target goes into the first chapter: nothing is lost
    assert texts(book.chapters[0]) == ["Before any anchor.", "A", "Text of A.", "More"]
    assert texts(book.chapters[1]) == ["of B here."]
    assert texts(book.chapters[2]) == ["C", "Text of C."]


def test_legacy_a_name_anchor(tmp_path):
    body = "<p>Intro.</p><h2><a name='ch2'></a>Two</h2><p>Second.</p>"
    toc = [("One", "b.xhtml", []), ("Two", "b.xhtml#ch2", [])]
    book = read_epub(build_epub(tmp_path / "a.epub", [Doc("b.xhtml", body)], toc))
    assert texts(book.chapters[0]) == ["Intro."]
    assert texts(book.chapters[1]) == ["Two", "Second."]


def test_entry_without_text_still_yields_a_chapter(tmp_path):
    docs = [Doc("c1.xhtml", "<h1>One</h1><p>Text one.</p>"), Doc("c2.xhtml", "<p>Two.</p>")]
    toc = [
        ("Book One", "c1.xhtml", [("Chapter One", "c1.xhtml", [])]),
        ("Heading only", "", [("Leaf", "c2.xhtml#nowhere", [])]),
    ]
    book = read_epub(build_epub(tmp_path / "e.epub", docs, toc))
    assert titles(book) == ["Book One", "Chapter One", "Heading only", "Leaf"]
    assert [c.level for c in book.chapters] == [1, 2, 1, 2]
    assert book.chapters[0].blocks == () and book.chapters[2].blocks == ()
    assert texts(book.chapters[1]) == ["One", "Text one."]
    # a missing anchor starts the chapter at the top of its file, and says so
    assert texts(book.chapters[3]) == ["Two."]
    assert any("#nowhere" in w for w in book.warnings)


def test_untargeted_spine_items_join_previous_chapter(tmp_path):
    docs = [
        Doc("cover.xhtml", "<p>Cover words.</p>"),
        Doc("c1.xhtml", "<p>One.</p>"),
        Doc("c1b.xhtml", "<p>One, continued.</p>"),
        Doc("c2.xhtml", "<p>Two.</p>"),
    ]
    toc = [("One", "c1.xhtml", []), ("Two", "c2.xhtml", [])]
    book = read_epub(build_epub(tmp_path / "u.epub", docs, toc))
    assert titles(book) == ["One", "Two"]
    assert texts(book.chapters[0]) == ["Cover words.", "One.", "One, continued."]
    assert texts(book.chapters[1]) == ["Two."]


def test_chapters_follow_spine_order_not_toc_order(tmp_path):
    docs = [Doc("a.xhtml", "<p>A text.</p>"), Doc("b.xhtml", "<p>B text.</p>")]
    toc = [("B", "b.xhtml", []), ("A", "a.xhtml", [])]
    book = read_epub(build_epub(tmp_path / "o.epub", docs, toc))
    assert titles(book) == ["A", "B"]


def test_epub2_ncx_with_odd_toc_id(tmp_path):
    docs = [Doc("c1.xhtml", "<p>One.</p>"), Doc("c2.xhtml", "<p>Two.</p>")]
    toc = [("First", "c1.xhtml", [("Inner", "c2.xhtml", [])])]
    path = build_epub(
        tmp_path / "n2.epub", docs, toc, version=2, ncx_name="navigation.xml", ncx_id="navigation"
    )
    book = read_epub(path)
    assert titles(book) == ["First", "Inner"]
    assert [c.level for c in book.chapters] == [1, 2]


def test_nav_preferred_over_disagreeing_ncx(tmp_path):
    docs = [Doc("c1.xhtml", "<p>One.</p>"), Doc("c2.xhtml", "<p>Two.</p>")]
    book = read_epub(
        build_epub(
            tmp_path / "d.epub",
            docs,
            [("Nav 1", "c1.xhtml", []), ("Nav 2", "c2.xhtml", [])],
            ncx_toc=[("Ncx only", "c1.xhtml", [])],
        )
    )
    assert titles(book) == ["Nav 1", "Nav 2"]


def test_nav_not_in_spine_is_not_read(tmp_path):
    docs = [Doc("c1.xhtml", "<p>One.</p>")]
    book = read_epub(build_epub(tmp_path / "ns.epub", docs, [("Only", "c1.xhtml", [])]))
    assert titles(book) == ["Only"]
    assert "Contents" not in [b.text for c in book.chapters for b in c.blocks]


def test_nav_in_spine_does_not_read_its_toc_listing(tmp_path):
    docs = [Doc("c1.xhtml", "<p>One.</p>")]
    book = read_epub(
        build_epub(
            tmp_path / "nis.epub", docs, [("Listed title", "c1.xhtml", [])], nav_in_spine=True
        )
    )
    spoken = [b.text for c in book.chapters for b in c.blocks]
    assert "Listed title" not in spoken
    assert spoken[-1] == "One."


def test_licence_only_toc_falls_back_to_headings(tmp_path):
    docs = [
        Doc(
            "t.xhtml",
            "<p>The Project Gutenberg EBook of Test.</p>"
            "<p>*** START OF THIS PROJECT GUTENBERG EBOOK TEST ***</p>",
        ),
        Doc("c1.xhtml", "<h2>Chapter I</h2><p>First.</p><h2>Chapter II</h2><p>Second.</p>"),
        Doc(
            "l.xhtml",
            "<p>*** END OF THIS PROJECT GUTENBERG EBOOK TEST ***</p>"
            "<h3 id='lic'>Section 1. General Terms of Use</h3><p>Legal.</p>",
        ),
    ]
    toc = [
        (
            "*** START: FULL LICENSE ***",
            "l.xhtml#lic",
            [
                (
                    "Section 1. General Terms of Use and Redistributing Project Gutenberg-tm",
                    "l.xhtml",
                    [],
                )
            ],
        )
    ]
    keep = IngestOptions(skip_matter=False)
    book = read_epub(build_epub(tmp_path / "pg.epub", docs, toc, version=2), keep)
    assert titles(book) == ["Test Book", "Chapter I", "Chapter II", "Project Gutenberg licence"]
    assert [c.role for c in book.chapters] == ["front", "body", "body", "back"]
    assert texts(book.chapters[2]) == ["Chapter II", "Second."]
    skipped = read_epub(
        build_epub(tmp_path / "pg2.epub", docs, toc, version=2), IngestOptions(skip_matter=True)
    )
    assert titles(skipped) == ["Chapter I", "Chapter II"]


def test_no_toc_and_no_headings_uses_chapter_lines_then_documents(tmp_path):
    docs = [
        Doc("a.xhtml", "<p>第一回 開始</p><p>甲。</p>"),
        Doc("b.xhtml", "<p>乙。</p><p>第二回 結束</p><p>丙。</p>"),
    ]
    book = read_epub(build_epub(tmp_path / "z.epub", docs, None, version=2))
    assert titles(book) == ["第一回 開始", "第二回 結束"]
    assert texts(book.chapters[0]) == ["第一回 開始", "甲。", "乙。"]
    docs = [Doc("a.xhtml", "<p>Alpha.</p>"), Doc("b.xhtml", "<p>Beta.</p>")]
    book = read_epub(build_epub(tmp_path / "y.epub", docs, None, version=2))
    assert titles(book) == ["Part 1", "Part 2"]
    assert book.chapters[1].blocks[0].text == "Beta."


def test_non_linear_items(tmp_path):
    docs = [
        Doc("c1.xhtml", "<p>One.</p>"),
        Doc("pop.xhtml", "<p>Popup note.</p>", linear=False),
        Doc("app.xhtml", "<p>Appendix text.</p>", linear=False),
    ]
    toc = [("One", "c1.xhtml", []), ("Appendix", "app.xhtml", [])]
    book = read_epub(build_epub(tmp_path / "nl.epub", docs, toc))
    assert titles(book) == ["One", "Appendix"]
    assert texts(book.chapters[1]) == ["Appendix text."]
    assert "Popup note." not in [b.text for c in book.chapters for b in c.blocks]
    assert any("pop.xhtml" in w and "non-linear" in w for w in book.warnings)


# -------------------------------------------------------------------------------- text


def test_block_kinds_and_loose_text(tmp_path):
    body = (
        "Loose text in body.<div>Loose in div<p>Para.</p>tail after para</div>"
        "<section>Section text</section><h3>Head</h3>"
        "<ul><li>Item <b>one</b></li><li><p>Item two</p></li></ul>"
        "<blockquote><p>Quoted.</p></blockquote>"
        "<p>Before image <img src='i.png' alt='  A  red\nbarn '/> after image.</p>"
        "<p><img src='d.png' alt=''/><img src='d.png' alt='Illustration'/></p>"
        "<table><tr><td>Cell 1</td><td>Cell 2</td></tr></table>"
    )
    book = read_epub(
        build_epub(tmp_path / "k.epub", [Doc("c.xhtml", body)], [("C", "c.xhtml", [])])
    )
    assert kinds(book.chapters[0]) == [
        ("paragraph", "Loose text in body."),
        ("paragraph", "Loose in div"),
        ("paragraph", "Para."),
        ("paragraph", "tail after para"),
        ("paragraph", "Section text"),
        ("heading", "Head"),
        ("list_item", "Item one"),
        ("list_item", "Item two"),
        ("quote", "Quoted."),
        ("paragraph", "Before image"),
        ("image_alt", "A red barn"),
        ("paragraph", "after image."),
        ("paragraph", "Cell 1"),
        ("paragraph", "Cell 2"),
    ]


def test_skipped_markup(tmp_path):
    body = (
        "<p>Keep<span epub:type='pagebreak' id='p7' title='7'>7</span> this."
        "<span class='pagenum'>[Pg 8]</span></p>"
        "<script>var x = 'no';</script><style>p {}</style>"
        "<p hidden=''>Hidden.</p>"
        "<p><ruby>漢<rt>かん</rt></ruby><ruby>字<rp>(</rp><rt>じ</rt><rp>)</rp></ruby>です。</p>"
        "<p>Math <math alttext='x squared'><mi>x</mi></math> here.</p>"
    )
    book = read_epub(
        build_epub(tmp_path / "s.epub", [Doc("c.xhtml", body)], [("C", "c.xhtml", [])])
    )
    assert texts(book.chapters[0]) == ["Keep this.", "漢字です。", "Math x squared here."]


def test_footnote_markers_not_read_and_bodies_collected(tmp_path):
    body = (
        "<p>Call<a epub:type='noteref' href='#n1'>1</a> and<sup><a href='#n2'>2</a></sup>"
        " and [<a href='#n3'>3</a>] and<a href='#n4'>*</a>†.</p>"
        "<p>A link <a href='http://example.com'>with words</a> stays.</p>"
        "<aside epub:type='footnote' id='n1'><p>Note one.</p></aside>"
        "<div epub:type='footnotes'><p id='n2'>Note two.</p></div>"
        "<ol epub:type='endnotes'><li epub:type='endnote' id='n3'><p>Note three. "
        "<a epub:type='backlink' href='#r3'>↩</a></p></li></ol>"
    )
    path = build_epub(tmp_path / "f.epub", [Doc("c.xhtml", body)], [("C", "c.xhtml", [])])
    ch = read_epub(path).chapters[0]
    assert texts(ch) == ["Call and and and†.", "A link with words stays."]
    assert [(b.kind, b.text) for b in ch.footnotes] == [
        ("note", "Note one."),
        ("note", "Note two."),
        ("note", "Note three."),
    ]
    dropped = read_epub(path, IngestOptions(footnotes="drop")).chapters[0]
    assert dropped.footnotes == ()
    assert texts(dropped) == texts(ch)


def test_whitespace_entities_and_control_characters(tmp_path):
    raw = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<!DOCTYPE html PUBLIC '-//W3C//DTD XHTML 1.1//EN' "
        "'http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd'>\n"
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>t</title></head><body>'
        "<p>caf&eacute;&nbsp;au\n\n   lait&#160;&amp; soft&#173;hyphen \u200bzw</p>"
        "</body></html>"
    ).encode()
    book = read_epub(
        build_epub(tmp_path / "w.epub", [Doc("c.xhtml", raw=raw)], [("C", "c.xhtml", [])])
    )
    assert texts(book.chapters[0]) == ["café au lait & softhyphen \u200bzw"]
    assert book.warnings == ()


# -------------------------------------------------------------------------- matter


def test_skip_matter_by_types_landmarks_guide_and_titles(tmp_path):
    docs = [
        Doc("title.xhtml", "<section epub:type='titlepage'><h1>T</h1></section>"),
        Doc("copy.xhtml", "<p>All rights.</p>", body_attrs="epub:type='copyright-page'"),
        Doc("c1.xhtml", "<p>Story.</p>"),
        Doc("idx.xhtml", "<p>Aardvark, 3.</p>"),
        Doc("colo.xhtml", "<p>Set in type.</p>"),
        Doc("unc.xhtml", "<p>Public domain.</p>"),
    ]
    toc = [
        ("Title", "title.xhtml", []),
        ("Rights", "copy.xhtml", []),
        ("Story", "c1.xhtml", []),
        ("Aardvarks", "idx.xhtml", []),
        ("Colophon", "colo.xhtml", []),
        ("Uncopyright", "unc.xhtml", []),
    ]
    path = build_epub(tmp_path / "fm.epub", docs, toc, landmarks=[("index", "idx.xhtml", "Index")])
    book = read_epub(path, IngestOptions(skip_matter=False))
    assert [c.role for c in book.chapters] == ["front", "front", "body", "back", "back", "back"]
    assert titles(read_epub(path, IngestOptions(skip_matter=True))) == ["Story"]
    # EPUB 2 guide
    p2 = build_epub(
        tmp_path / "g.epub", docs[2:4], toc[2:4], version=2, guide=[("index", "idx.xhtml")]
    )
    assert [c.role for c in read_epub(p2, IngestOptions(skip_matter=False)).chapters] == [
        "body",
        "back",
    ]


def test_skip_matter_drops_untargeted_front_matter_documents(tmp_path):
    docs = [
        Doc("c1.xhtml", "<p>Story.</p>"),
        Doc("copy.xhtml", "<section epub:type='imprint'><p>Imprint.</p></section>"),
        Doc("c2.xhtml", "<p>More.</p>"),
    ]
    path = build_epub(tmp_path / "fm2.epub", docs, [("S", "c1.xhtml", []), ("M", "c2.xhtml", [])])
    assert texts(read_epub(path, IngestOptions(skip_matter=False)).chapters[0]) == [
        "Story.",
        "Imprint.",
    ]
    assert texts(read_epub(path, IngestOptions(skip_matter=True)).chapters[0]) == ["Story."]


# -------------------------------------------------------------------------- damage


def test_zero_bytes_and_not_a_zip(tmp_path):
    empty = tmp_path / "empty.epub"
    empty.write_bytes(b"")
    with pytest.raises(CorruptDocument, match="not a zip"):
        read_epub(empty)
    text = tmp_path / "text.epub"
    text.write_text("just words\n")
    with pytest.raises(CorruptDocument) as err:
        read_epub(text)
    assert str(err.value) == f"{text}: not an EPUB (not a zip file)"
    assert "\n" not in str(err.value)
    assert isinstance(err.value, InputError) and err.value.exit_code == 5


def test_zip_without_package(tmp_path):
    path = tmp_path / "nopkg.epub"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", "application/epub+zip")
        zf.writestr("hello.txt", "hi")
    with pytest.raises(CorruptDocument, match="no OPF"):
        read_epub(path)


def test_package_found_without_container(tmp_path):
    path = build_epub(
        tmp_path / "nc.epub", [Doc("c.xhtml", "<p>x</p>")], [("C", "c.xhtml", [])], container=False
    )
    assert titles(read_epub(path)) == ["C"]


def test_damaged_package_document(tmp_path):
    path = build_epub(
        tmp_path / "bad.epub",
        [Doc("c.xhtml", "<p>x</p>")],
        [("C", "c.xhtml", [])],
        opf_raw=b"<package><metadata>",
    )
    with pytest.raises(CorruptDocument, match="damaged package document"):
        read_epub(path)


def test_no_text_at_all(tmp_path):
    docs = [Doc("p1.xhtml", "<img src='p1.jpg' alt=''/>")]
    with pytest.raises(NoTextError):
        read_epub(build_epub(tmp_path / "img.epub", docs, [("Page", "p1.xhtml", [])]))


def test_images_with_some_text_still_work(tmp_path):
    docs = [
        Doc("p1.xhtml", "<img src='p1.jpg' alt=''/>"),
        Doc("about.xhtml", "<p>About this document.</p>"),
    ]
    book = read_epub(
        build_epub(
            tmp_path / "img2.epub", docs, [("Pages", "p1.xhtml", []), ("About", "about.xhtml", [])]
        )
    )
    assert book.chapters[0].blocks == ()
    assert texts(book.chapters[1]) == ["About this document."]


def test_missing_resources_are_reported(tmp_path):
    docs = [Doc("c1.xhtml", "<p>One.</p>")]
    path = build_epub(
        tmp_path / "miss.epub",
        docs,
        [("One", "c1.xhtml", []), ("Gone", "gone.xhtml", [])],
        extras=[Extra("audio/a.mp3", "audio/mpeg", None)],
    )
    book = read_epub(path)
    assert titles(book) == ["One", "Gone"]
    assert any("audio/a.mp3" in w for w in book.warnings)
    assert any("gone.xhtml" in w for w in book.warnings)


def test_missing_spine_document_is_reported(tmp_path):
    docs = [Doc("c1.xhtml", "<p>One.</p>"), Doc("c2.xhtml", "<p>Two.</p>")]
    path = build_epub(
        tmp_path / "ms.epub", docs, [("One", "c1.xhtml", []), ("Two", "c2.xhtml", [])]
    )
    # rewrite the zip without c2.xhtml
    out = tmp_path / "ms2.epub"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("c2.xhtml"):
                dst.writestr(info, src.read(info))
    book = read_epub(out)
    assert titles(book) == ["One", "Two"]
    assert book.chapters[1].blocks == ()
    assert any("missing" in w and "c2.xhtml" in w for w in book.warnings)


def test_malformed_xhtml_recovered_and_reported(tmp_path):
    raw = (
        b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>x</title></head><body>'
        b"<p>First.</p><p>Unclosed paragraph.\n<p>Third &nbsp; <b>bold</p></body></html>"
    )
    book = read_epub(
        build_epub(tmp_path / "mal.epub", [Doc("c.xhtml", raw=raw)], [("C", "c.xhtml", [])])
    )
    assert texts(book.chapters[0]) == ["First.", "Unclosed paragraph.", "Third bold"]
    assert any("c.xhtml" in w and "malformed" in w for w in book.warnings)


def test_path_is_a_folder_or_missing(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_book(tmp_path / "nope.epub")
    d = tmp_path / "dir.epub"
    d.mkdir()
    with pytest.raises(InputError, match="folder"):
        read_book(d)


def test_drm_encrypted_content_is_refused(tmp_path):
    from audiobook.errors import EncryptedDocument

    enc = (
        b'<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        b'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
        b'<enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
        b'<enc:CipherData><enc:CipherReference URI="OEBPS/c.xhtml"/></enc:CipherData>'
        b"</enc:EncryptedData></encryption>"
    )
    path = build_epub(
        tmp_path / "drm.epub",
        [Doc("c.xhtml", raw=b"\x00\x01garbage")],
        [("C", "c.xhtml", [])],
        zip_extra={"META-INF/encryption.xml": enc},
    )
    with pytest.raises(EncryptedDocument, match="DRM"):
        read_epub(path)


def test_read_epub_accepts_str_path(tmp_path):
    path = build_epub(tmp_path / "s.epub", [Doc("c.xhtml", "<p>x</p>")], [("C", "c.xhtml", [])])
    assert read_epub(str(path)).chapters[0].text == "x"
    assert isinstance(Path(read_epub(str(path)).source), Path)


def test_xhtml_helper_roundtrip():
    assert b"<body><p>x</p></body>" in xhtml("<p>x</p>")


def test_unplaced_entries_follow_their_toc_predecessor(tmp_path):
    docs = [Doc("a.xhtml", "<p>A.</p>"), Doc("b.xhtml", "<p>B.</p>")]
    toc = [
        ("Lost 0", "gone0.xhtml", []),
        ("A", "a.xhtml", []),
        ("Lost 1", "gone1.xhtml", []),
        ("Lost 2", "http://example.com/x", []),
        ("B", "b.xhtml", []),
        ("Lost 3", "gone3.xhtml", []),
    ]
    book = read_epub(build_epub(tmp_path / "lost.epub", docs, toc))
    assert titles(book) == ["Lost 0", "A", "Lost 1", "Lost 2", "B", "Lost 3"]
    assert texts(book.chapters[1]) == ["A."]


def test_percent_encoded_and_case_mismatched_hrefs(tmp_path):
    docs = [Doc("my chapter.xhtml", "<p id='x y'>Spaced.</p>"), Doc("Other.xhtml", "<p>Other.</p>")]
    toc = [("Spaced", "my%20chapter.xhtml#x%20y", []), ("Other", "other.xhtml", [])]
    book = read_epub(build_epub(tmp_path / "pct.epub", docs, toc))
    assert titles(book) == ["Spaced", "Other"]
    assert texts(book.chapters[0]) == ["Spaced."]
    assert texts(book.chapters[1]) == ["Other."]


def test_captions_option_leaves_out_alt_text_and_figure_captions(tmp_path):
    body = (
        "<p>Text.</p><figure><img src='a.png' alt='A map of the bay'/>"
        "<figcaption>Figure 1. The bay.</figcaption></figure>"
    )
    path = build_epub(tmp_path / "cap.epub", [Doc("c.xhtml", body)], [("C", "c.xhtml", [])])
    assert texts(read_epub(path).chapters[0]) == ["Text.", "A map of the bay", "Figure 1. The bay."]
    assert texts(read_epub(path, IngestOptions(captions=False)).chapters[0]) == ["Text."]


def test_property_every_entry_is_a_chapter_and_no_text_is_lost_or_repeated(tmp_path_factory):
    """Random books (files of paragraphs, some with ids) and random TOCs (anchors,
    whole files, missing files, in any order): one chapter per entry, and the chapters'
    text, read in order, is exactly the books' text in spine order."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    folder = tmp_path_factory.mktemp("prop")
    words = st.text(alphabet="abcdefgh ", min_size=1, max_size=12).map(str.strip).filter(bool)
    para = st.tuples(words, st.booleans())  # (text, has id)
    files = st.lists(st.lists(para, min_size=0, max_size=5), min_size=1, max_size=4)

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(files, st.data())
    def run(book_files, data):
        docs, targets, expected = [], [], []
        for f, paras in enumerate(book_files):
            body = []
            for p, (text, has_id) in enumerate(paras):
                pid = f"f{f}p{p}"
                body.append(f"<p id='{pid}'>{text}</p>" if has_id else f"<p>{text}</p>")
                if has_id:
                    targets.append(f"c{f}.xhtml#{pid}")
                expected.append(" ".join(text.split()))
            docs.append(Doc(f"c{f}.xhtml", "".join(body)))
            targets.append(f"c{f}.xhtml")
        targets += ["missing.xhtml", "c0.xhtml#nope"]
        chosen = data.draw(st.lists(st.sampled_from(targets), min_size=1, max_size=8))
        toc = [(f"T{n}", href, []) for n, href in enumerate(chosen)]
        if not expected:
            return
        book = read_epub(build_epub(folder / "p.epub", docs, toc))
        if any(href.startswith("c") for href in chosen):
            assert len(book.chapters) == len(toc)
            assert sorted(c.title for c in book.chapters) == sorted(t for t, _, _ in toc)
        else:  # a TOC that points at nothing in the book is ignored
            assert any("points at nothing" in w for w in book.warnings)
        got = [b.text for c in book.chapters for b in c.blocks]
        assert got == expected

    run()


def test_text_is_kept_when_no_toc_entry_can_be_placed(tmp_path):
    docs = [Doc("c0.xhtml", "<p>Untargeted text.</p>"), Doc("c1.xhtml", "<p>Gone.</p>")]
    path = build_epub(tmp_path / "np.epub", docs, [("Target", "c1.xhtml", [])])
    out = tmp_path / "np2.epub"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("c1.xhtml"):
                dst.writestr(info, src.read(info))
    book = read_epub(out)
    assert titles(book) == ["Target"]
    assert texts(book.chapters[0]) == ["Untargeted text."]
    assert any("c1.xhtml" in w for w in book.warnings)
