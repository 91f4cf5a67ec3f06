"""PDF reading rules on small generated PDFs: joining, furniture, columns, notes, chapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiobook.errors import ConfigError, CorruptDocument, EncryptedDocument, NoTextError
from audiobook.ingest._pdflayout import join_lines, normalize_text
from audiobook.ingest.base import IngestOptions
from audiobook.ingest.pdf import PdfIngestor
from audiobook.model import Book

from .pdfgen import Mark, lines_at, simple_pdf, text


def read(tmp_path: Path, data: bytes, name: str = "doc.pdf", **opts: object) -> Book:
    path = tmp_path / name
    path.write_bytes(data)
    return PdfIngestor().read(path, IngestOptions(**opts))  # type: ignore[arg-type]


def all_text(book: Book) -> str:
    return "\n".join(b.text for ch in book.chapters for b in ch.blocks)


# --- pure rules ---------------------------------------------------------------------------


def test_normalize_ligatures_spaces_and_controls() -> None:
    assert normalize_text("di\ufb03cult \ufb01ne \ufb00 \ufb02ow") == "difficult fine ff flow"
    assert normalize_text("a\u00a0b\u2009c\u00adde\x00") == "a b cde"
    assert normalize_text("c\u00ad", keep_soft_hyphens=True) == "c\u00ad"
    assert normalize_text("\uff21\uff22") == "AB"  # full-width forms
    assert normalize_text("ﻻ") == "لا"  # Arabic presentation form
    assert normalize_text("x²") == "x²"  # superscripts stay (NFKC would change meaning)
    assert normalize_text("\uf0b7 item \ufffd") == " item "  # private-use bullets, U+FFFD


@pytest.mark.parametrize(
    "lines, joined",
    [
        (["adip-", "iscing elit"], "adipiscing elit"),
        (["Hausdorff-", "Räume sind"], "Hausdorff-Räume sind"),  # capital: a real hyphen
        (["one  two ", "  three"], "one two three"),
        (["pages 3 -", "4"], "pages 3 - 4"),
        (["http://a/", "b"], "http://a/b"),
        (["soft\u00ad", "hyphen and in\u00adline"], "softhyphen and inline"),
        (["1 Intro . . . . . . . . 3", "2 More ....... 9"], "1 Intro 3 2 More 9"),
        (["Wait... what?"], "Wait... what?"),
    ],
)
def test_join_lines(lines: list[str], joined: str) -> None:
    assert join_lines(lines) == joined


# --- whole documents ----------------------------------------------------------------------


def test_hyphens_ligatures_and_paragraphs(tmp_path: Path) -> None:
    page = lines_at(
        72,
        700,
        ["This is a hyphen-", "ated word on a line.", "The second sentence ends it."],
    )
    page += text(72, 658, "A dif\x01cult word here.", font="F3")
    page += lines_at(90, 620, ["An indented line starts a", "new paragraph."])
    book = read(tmp_path, simple_pdf([page], title="Rules"))
    paras = [b.text for b in book.chapters[0].blocks]
    assert paras == [
        "This is a hyphenated word on a line. The second sentence ends it. A difficult word here.",
        "An indented line starts a new paragraph.",
    ]


def test_sentence_runs_on_over_a_page_break(tmp_path: Path) -> None:
    p1 = lines_at(72, 700, ["It began on one page and it", "carried on until the foot of"])
    p2 = lines_at(72, 700, ["the page, where it ended.", "Next thing."])
    book = read(tmp_path, simple_pdf([p1, p2]))
    assert book.chapters[0].blocks[0].text == (
        "It began on one page and it carried on until the foot of the page, where it ended. "
        "Next thing."
    )


def test_running_heads_and_page_numbers_removed(tmp_path: Path) -> None:
    pages = []
    for i in range(5):
        head = f"{i + 11} THE BOOK OF TESTS" if i % 2 else f"THE BOOK OF TESTS {i + 11}"
        body = lines_at(72, 700, [f"Body text of page {i + 1} goes here.", "More body text."])
        pages.append(text(72, 760, head, size=8) + body + text(300, 40, str(i + 11), size=9))
    book = read(tmp_path, simple_pdf(pages))
    spoken = all_text(book)
    assert "BOOK OF TESTS" not in spoken
    for i in range(5):
        assert f"Body text of page {i + 1} goes here." in spoken
    assert not any(b.text.strip().isdigit() for b in book.chapters[0].blocks)


def test_fuzzy_running_head_with_ocr_errors(tmp_path: Path) -> None:
    heads = [
        "THE SIEGE OF VICKSBURG. 49",
        "50 THE SIEGE OF VICKSBUEG.",
        "THE SIEGE 0F VICKSBURG. 51",
        "52 THE SIEGE OF VICKSBURG.",
    ]
    pages = [
        text(72, 760, h) + lines_at(72, 720, [f"Text {k}.", "Line."]) for k, h in enumerate(heads)
    ]
    spoken = all_text(read(tmp_path, simple_pdf(pages)))
    assert "SIEGE" not in spoken
    assert "Text 0." in spoken and "Text 3." in spoken


def test_single_line_pages_keep_their_text(tmp_path: Path) -> None:
    pages = [text(72, 720, f"Original page {i + 1}") for i in range(6)]
    spoken = all_text(read(tmp_path, simple_pdf(pages)))
    for i in range(6):
        assert f"Original page {i + 1}" in spoken


def test_two_columns_read_column_by_column(tmp_path: Path) -> None:
    left = [f"Left line {k} of the first column" for k in range(10)]
    right = [f"Right line {k} of the second column" for k in range(10)]
    left[-1] += "."
    right[-1] += "."
    # the right column is written first: the content stream is not in reading order
    page = text(150, 760, "A Paper Title", font="F2", size=18)
    page += lines_at(320, 700, right, size=10, leading=12) + lines_at(
        72, 700, left, size=10, leading=12
    )
    book = read(tmp_path, simple_pdf([page]))
    assert book.chapters[0].title == "A Paper Title"
    spoken = all_text(book)
    positions = [spoken.index(s) for s in left + right]
    assert positions == sorted(positions)


def test_footnote_separated_and_marker_dropped(tmp_path: Path) -> None:
    page = text(72, 700, "A claim that needs support") + text(208, 705, "1", size=7)
    page += text(213, 700, " and more words.")
    page += lines_at(72, 686, ["Another body line follows here."])
    page += text(72, 80, "1 The support for the claim.", size=8)
    book = read(tmp_path, simple_pdf([page]))
    ch = book.chapters[0]
    assert [b.text for b in ch.footnotes] == ["The support for the claim."]
    assert ch.footnotes[0].kind == "note"
    assert "support1" not in ch.text and "support 1" not in ch.text
    assert "A claim that needs support and more words." in ch.text


def test_caption_does_not_break_a_sentence(tmp_path: Path) -> None:
    page = lines_at(72, 700, ["The sentence starts above the", "figure and"])
    page += text(100, 600, "Figure 3: A caption of the figure.", size=9)
    page += lines_at(72, 560, ["ends below it.", "Next sentence."])
    book = read(tmp_path, simple_pdf([page]))
    blocks = [b.text for b in book.chapters[0].blocks]
    assert "The sentence starts above the figure and ends below it. Next sentence." in blocks
    assert "Figure 3: A caption of the figure." in blocks


def _two_chapter_pdf() -> bytes:
    p1 = text(72, 740, "Chapter 1", font="F2", size=20) + lines_at(72, 700, ["Text of one."])
    p1 += text(72, 400, "Chapter 2", font="F2", size=20) + lines_at(72, 360, ["Text of two."])
    p2 = text(72, 740, "Chapter 3", font="F2", size=20) + lines_at(72, 700, ["Text of three."])
    return simple_pdf([p1, p2], title="Chapters")


def test_outline_splits_mid_page_at_xyz_top(tmp_path: Path) -> None:
    outline = [
        Mark("One", 0, 760),
        Mark("Two", 0, 420),
        Mark("Two A", 0, 380, level=2),
        Mark("Three", 1, None),
    ]
    p1 = text(72, 740, "One", font="F2", size=20) + lines_at(72, 700, ["Text of one."])
    p1 += text(72, 400, "Two", font="F2", size=20) + lines_at(72, 360, ["Text of two."])
    p2 = lines_at(72, 700, ["Text of three."])
    book = read(tmp_path, simple_pdf([p1, p2], outline=outline))
    assert [(c.title, c.level) for c in book.chapters] == [
        ("One", 1),
        ("Two", 1),
        ("Two A", 2),
        ("Three", 1),
    ]
    assert [c.text for c in book.chapters] == ["Text of one.", "", "Text of two.", "Text of three."]


def test_front_text_before_first_bookmark_joins_first_chapter(tmp_path: Path) -> None:
    p1 = lines_at(72, 700, ["Title page text."])
    p2 = lines_at(72, 700, ["Chapter text."])
    book = read(tmp_path, simple_pdf([p1, p2], outline=[Mark("Only", 1, None)]))
    assert [c.title for c in book.chapters] == ["Only"]
    assert book.chapters[0].text == "Title page text.\n\nChapter text."


def test_headings_when_there_is_no_outline(tmp_path: Path) -> None:
    book = read(tmp_path, _two_chapter_pdf())
    assert [c.title for c in book.chapters] == ["Chapter 1", "Chapter 2", "Chapter 3"]
    assert [c.text for c in book.chapters] == ["Text of one.", "Text of two.", "Text of three."]


def test_split_by_pages_and_none(tmp_path: Path) -> None:
    book = read(tmp_path, _two_chapter_pdf(), split_by="pages:1")
    assert [c.title for c in book.chapters] == ["Page 1", "Page 2"]
    book = read(tmp_path, _two_chapter_pdf(), split_by="none")
    assert [c.title for c in book.chapters] == ["Chapters"]
    assert "Text of three." in book.chapters[0].text
    with pytest.raises(ConfigError):
        read(tmp_path, _two_chapter_pdf(), split_by="pages:0")


def test_split_by_headings_ignores_outline(tmp_path: Path) -> None:
    p1 = text(72, 740, "Chapter 1", font="F2", size=20) + lines_at(72, 700, ["Text of one."])
    data = simple_pdf([p1], outline=[Mark("Bookmark", 0, None)])
    assert [c.title for c in read(tmp_path, data).chapters] == ["Bookmark"]
    assert [c.title for c in read(tmp_path, data, split_by="headings").chapters] == ["Chapter 1"]


def test_metadata_title_author_language(tmp_path: Path) -> None:
    data = simple_pdf(
        [lines_at(72, 700, ["Hello."])], title="  A Title\x00 ", author="Ann Author", lang="de-DE"
    )
    book = read(tmp_path, data)
    assert (book.title, book.authors, book.language) == ("A Title", ("Ann Author",), "de-DE")


def test_title_falls_back_to_large_print_then_file_name(tmp_path: Path) -> None:
    body = lines_at(72, 700, ["The body text of the document.", "More of it."])
    data = simple_pdf([text(72, 740, "Big Title", size=24) + body])
    assert read(tmp_path, data).title == "Big Title"
    data = simple_pdf([lines_at(72, 700, ["Body."])], title="")
    assert read(tmp_path, data, name="my-report.pdf").title == "my-report"


def test_encrypted_aes_needs_the_password(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    src = tmp_path / "plain.pdf"
    src.write_bytes(simple_pdf([lines_at(72, 700, ["Secret text."])]))
    writer = PdfWriter(clone_from=PdfReader(src))
    writer.encrypt(user_password="pw", owner_password="owner", algorithm="AES-256")
    enc = tmp_path / "enc.pdf"
    with open(enc, "wb") as fh:
        writer.write(fh)
    with pytest.raises(EncryptedDocument) as err:
        PdfIngestor().read(enc, IngestOptions())
    assert str(err.value) == f"{enc}: encrypted; wrong or missing password (use --password)"
    with pytest.raises(EncryptedDocument):
        PdfIngestor().read(enc, IngestOptions(password="wrong"))
    book = PdfIngestor().read(enc, IngestOptions(password="pw"))
    assert book.chapters[0].text == "Secret text."


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"", "empty file (0 bytes), not a PDF"),
        (b"<html>not a pdf</html>", "not a PDF (no %PDF- header)"),
        (b"%PDF-1.4\n1 0 obj << >> endobj\n", "broken PDF: "),
    ],
)
def test_corrupt_files_one_line_error(tmp_path: Path, data: bytes, problem: str) -> None:
    with pytest.raises(CorruptDocument) as err:
        read(tmp_path, data)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "doc.pdf") + ": " + problem)


def test_page_without_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoTextError) as err:
        read(tmp_path, simple_pdf(["0 0 m 100 100 l S\n"]))
    assert "no text layer" in str(err.value)


def test_damaged_page_is_skipped_with_a_warning(tmp_path: Path) -> None:
    broken = lines_at(72, 700, ["Other page."])
    data = simple_pdf([lines_at(72, 700, ["Good page."]), broken])
    # the second page's content stream claims a compression its bytes do not have
    head = b"<< /Length %d >>\nstream\n" % len(broken)
    assert data.count(head) == 1
    data = data.replace(head, b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(broken))
    book = read(tmp_path, data)
    assert "Good page." in all_text(book)
    assert any("2" in w for w in book.warnings), book.warnings


def test_suitable_by_extension_and_magic(tmp_path: Path) -> None:
    odd = tmp_path / "report.bin"
    odd.write_bytes(simple_pdf([lines_at(72, 700, ["x."])]))
    assert PdfIngestor.suitable(odd)
    assert PdfIngestor.suitable(tmp_path / "missing.PDF")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert not PdfIngestor.suitable(other)


def test_matter_roles_skip_matter_and_dropped_notes(tmp_path: Path) -> None:
    p1 = lines_at(72, 700, ["Contents line."])
    p2 = text(72, 700, "Body with a note") + text(162, 705, "1", size=7) + text(167, 700, ".")
    p2 += lines_at(72, 686, ["More body text here."]) + text(72, 80, "1 The note.", size=8)
    p3 = lines_at(72, 700, ["apple, 3"])
    outline = [Mark("Contents", 0), Mark("1 Story", 1), Mark("Index", 2)]
    data = simple_pdf([p1, p2, p3], outline=outline)
    book = read(tmp_path, data, skip_matter=False)
    assert [c.role for c in book.chapters] == ["front", "body", "back"]
    assert [b.text for b in book.chapters[1].footnotes] == ["The note."]
    book = read(tmp_path, data, skip_matter=True, footnotes="drop")
    assert [c.title for c in book.chapters] == ["1 Story"]
    assert book.chapters[0].footnotes == ()


def test_skip_matter_drops_a_printed_table_of_contents(tmp_path: Path) -> None:
    toc = text(72, 740, "Contents", font="F2", size=16) + lines_at(
        72, 700, [f"{k} Section {k} . . . . . . . . {k + 1}" for k in range(1, 7)]
    )
    body = lines_at(72, 700, ["The story begins."])
    data = simple_pdf([toc, body], outline=[Mark("1 Story", 1)])
    assert "Section 3" in read(tmp_path, data, skip_matter=False).chapters[0].text
    book = read(tmp_path, data, skip_matter=True)
    assert book.chapters[0].text == "The story begins."
    assert read(tmp_path, data).chapters[0].text == "The story begins."  # the default


def test_two_columns_written_row_by_row(tmp_path: Path) -> None:
    left = [f"Left line {k} of the first column" for k in range(10)]
    right = [f"Right line {k} of the second column" for k in range(10)]
    page = "".join(
        text(72, 700 - 12 * k, left[k], size=10) + text(320, 700 - 12 * k, right[k], size=10)
        for k in range(10)
    )
    spoken = all_text(read(tmp_path, simple_pdf([page])))
    positions = [spoken.index(s) for s in left + right]
    assert positions == sorted(positions)


def test_a_table_is_read_row_by_row(tmp_path: Path) -> None:
    rows = [
        ("Austria", "Vienna"),
        ("Belgium", "Brussels"),
        ("Denmark", "Copenhagen"),
        ("Finland", "Helsinki"),
        ("France", "Paris"),
    ]
    page = lines_at(72, 740, ["A table of capitals follows."])
    for k, (country, capital) in enumerate(rows):
        page += text(72, 700 - 14 * k, country) + text(340, 700 - 14 * k, capital)
    spoken = all_text(read(tmp_path, simple_pdf([page])))
    assert spoken.index("Austria") < spoken.index("Vienna") < spoken.index("Belgium")


def test_scanned_page_among_text_pages_is_reported(tmp_path: Path) -> None:
    from .pdfgen import build_pdf, stream

    objs: dict[int, bytes | str] = {
        1: "<< /Type /Catalog /Pages 2 0 R >>",
        2: "<< /Type /Pages /Kids [10 0 R 12 0 R] /Count 2 >>",
        3: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        4: b"<< /Type /XObject /Subtype /Image /Width 1 /Height 1 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Length 1 >>\nstream\n\x80\nendstream",
        10: "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        "/Resources << /Font << /F1 3 0 R >> >> /Contents 11 0 R >>",
        11: stream(text(72, 700, "A page with text.")),
        12: "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        "/Resources << /XObject << /Im1 4 0 R >> >> /Contents 13 0 R >>",
        13: stream("q 612 0 0 792 0 0 cm /Im1 Do Q\n"),
    }
    book = read(tmp_path, build_pdf(objs, 1))
    assert book.chapters[0].text == "A page with text."
    assert book.warnings == ("pages with no text layer (scanned images) skipped: 2",)


def test_page_set_sideways_reads_in_line_order(tmp_path: Path) -> None:
    # text turned 90 degrees (reading upwards), as on a landscape page shown with /Rotate:
    # its lines must still be told apart (here, to join a word hyphenated over two lines)
    lines = ["The first line of a page set side-", "ways, and the second line of it."]
    page = "".join(
        f"BT /F1 11 Tf 0 1 -1 0 {100 + 14 * k} 72 Tm ({s}) Tj ET\n" for k, s in enumerate(lines)
    )
    data = simple_pdf([page]).replace(
        b"/MediaBox [0 0 612 792]", b"/MediaBox [0 0 612 792] /Rotate 90"
    )
    book = read(tmp_path, data)
    assert (
        book.chapters[0].text == "The first line of a page set sideways, and the second line of it."
    )


def test_furniture_follows_page_labels() -> None:
    from audiobook.ingest._pdflayout import Line, furniture

    def page(p: int, head: str) -> list[Line]:
        body = [
            Line(p, 72, 500, 700 - 14 * k, 10, False, f"Body line {k} of page {p}.")
            for k in range(6)
        ]
        return [Line(p, 72, 300, 760, 9, True, head), *body]

    labels = ["i", "ii", "iii", "1", "2", "3"]
    heads = ["PREFACE", "ii CONTENTS", "iii CONTENTS", "1 1.1 START", "2 1.2 MIDDLE", "1.3. END 3"]
    pages = [page(p, h) for p, h in enumerate(heads)]
    found = furniture(pages, labels)
    # numbered heads match their page's label even when each title occurs once;
    # a head without a number that never repeats stays
    assert found == {(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)}


def test_bullets_and_enumerations_are_list_items(tmp_path: Path) -> None:
    page = lines_at(
        72,
        700,
        [
            "Things to bring:",
            "\x95 a tent for the",
            "night,",
            "\x95 water.",
            "Steps are these:",
            "1. pack the bag;",
            "2. walk.",
        ],
    )
    blocks = read(tmp_path, simple_pdf([page])).chapters[0].blocks
    assert [(b.kind, b.text) for b in blocks] == [
        ("paragraph", "Things to bring:"),
        ("list_item", "a tent for the night,"),
        ("list_item", "water."),
        ("paragraph", "Steps are these:"),
        ("list_item", "1. pack the bag;"),
        ("list_item", "2. walk."),
    ]


def test_heading_that_repeats_a_running_head_is_kept(tmp_path: Path) -> None:
    pages = [text(72, 740, "A TALE OF TESTS", font="F2", size=20)]
    pages[0] += lines_at(72, 680, ["It was a test.", "A second line of text.", "And a third one."])
    for k in range(1, 5):
        pages.append(
            text(72, 760, "A TALE OF TESTS", size=8)
            + lines_at(72, 700, [f"Page {k} text.", "More of it.", "The end of it."])
        )
    book = read(tmp_path, simple_pdf(pages, title="Tales"))
    assert [c.title for c in book.chapters] == ["A TALE OF TESTS"]
    assert all_text(book).count("TALE") == 0  # spoken as the chapter title only
    assert "Page 4 text." in all_text(book)


def test_repeated_edge_lines_must_sit_at_the_same_height() -> None:
    from audiobook.ingest._pdflayout import Line, furniture

    def page(p: int, top: str, y: float) -> list[Line]:
        body = [
            Line(p, 72, 500, y - 40 - 14 * k, 10, False, f"Body {k} of page {p}.") for k in range(4)
        ]
        return [Line(p, 72, 300, y, 10, True, top), *body]

    same = [page(p, "Results and Discussion", 760) for p in range(4)]
    assert {(p, 0) for p in range(4)} <= furniture(same)
    moved = [page(p, "Results and Discussion", 760 - 150 * p) for p in range(4)]
    assert not any(i == 0 for _p, i in furniture(moved))


def test_footnote_at_the_foot_of_the_left_column(tmp_path: Path) -> None:
    left = [f"Left line {k} of the first column" for k in range(10)]
    right = [f"Right line {k} of the second column" for k in range(16)]
    left[-1] += " and a note"
    page = lines_at(72, 700, left, size=10, leading=12) + text(260, 596, "7", size=6)
    page += text(72, 560, "7 The note under the left column.", size=7)
    page += lines_at(320, 700, right, size=10, leading=12)
    book = read(tmp_path, simple_pdf([page]))
    ch = book.chapters[0]
    assert [b.text for b in ch.footnotes] == ["The note under the left column."]
    spoken = ch.text
    assert spoken.index("Left line 9") < spoken.index("Right line 0")
    assert "note under" not in spoken
