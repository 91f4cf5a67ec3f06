"""The PDFs of ../shared/corpus/pdf against the facts and text oracles of its MANIFEST."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from audiobook.errors import CorruptDocument, EncryptedDocument, NoTextError
from audiobook.ingest import read_book
from audiobook.ingest.base import IngestOptions
from audiobook.ingest.pdf import PdfIngestor
from audiobook.model import Book

from .conftest import corpus_path

pytestmark = pytest.mark.corpus

READABLE = {
    # file: password
    "pypdf-r2-rc4-40-empty-user-password.pdf": None,
    "pypdf-r4-aes128-user-password-asdfzxcv.pdf": "asdfzxcv",
    "pypdf-siege-of-vicksburg-ocr-scan.pdf": None,
    "qpdf-11-pages-with-labels.pdf": None,
    "qpdf-damaged-stream.pdf": None,
    "sf-geotopo-komprimiert.pdf": None,
    "sf-habibi-arabic.pdf": None,
    "sf-latex-multicolumn.pdf": None,
    "sf-libreoffice-writer-password.pdf": "openpassword",
    "sf-mistitled-outlines-example.pdf": None,
    "sf-pdflatex-outline.pdf": None,
}

_books: dict[str, Book] = {}


def book(name: str) -> Book:
    """Each corpus PDF is read once per session (geotopo has 117 pages)."""
    if name not in _books:
        path = corpus_path("pdf", name)
        # matter kept: the facts are about every outline entry and printed page
        options = IngestOptions(password=READABLE[name], skip_matter=False)
        _books[name] = PdfIngestor().read(path, options)
    return _books[name]


def spoken(b: Book) -> str:
    parts = []
    for ch in b.chapters:
        parts.append(ch.title)
        parts.extend(bl.text for bl in ch.blocks)
    return " ".join(" ".join(parts).split())


def in_order(text: str, sentences: list[str]) -> bool:
    pos = -1
    for s in sentences:
        found = text.find(s, pos + 1)
        if found < 0:
            return False
        pos = found
    return True


# --- outlines -------------------------------------------------------------------------------


def test_pdflatex_outline_nine_flat_entries() -> None:
    b = book("sf-pdflatex-outline.pdf")
    assert [c.title for c in b.chapters] == ["Foo", "Bar", "Baz"] * 3
    assert {c.level for c in b.chapters} == {1}
    # each bookmark points mid-page: its own section text, not the whole page
    assert all(c.blocks for c in b.chapters)
    # the page before the first mark: the printed contents, every entry kept
    assert b.chapters[0].blocks[0].text == "Contents"
    assert b.chapters[0].blocks[1].text.startswith("1 Foo 2 2 Bar 2 3 Baz 2")
    assert all(c.blocks[0].text.startswith("Hello, here is some text") for c in b.chapters[1:])


def test_mistitled_outline_keeps_the_bookmark_titles() -> None:
    b = book("sf-mistitled-outlines-example.pdf")
    titles = [c.title for c in b.chapters]
    assert len(titles) == 27
    assert titles[:3] == ["First", "Second", "Third"]
    assert titles[-1] == "Twenty-seventh"
    assert max(c.level for c in b.chapters) == 3
    assert sum(1 for c in b.chapters if c.level == 1) == 5
    # the outline goes over the document three times: the text is read once
    text = spoken(b)
    assert text.count("Lorem ipsum dolor sit amet") == spoken(
        book("sf-pdflatex-outline.pdf")
    ).count("Lorem ipsum dolor sit amet")


def test_geotopo_outline_35_entries_depth_3() -> None:
    b = book("sf-geotopo-komprimiert.pdf")
    assert len(b.chapters) == 35
    assert [c.title for c in b.chapters[:3]] == [
        "1 Topologische Grundbegriffe",
        "1.1 Topologische Räume",
        "1.2 Metrische Räume",
    ]
    assert sum(1 for c in b.chapters if c.level == 1) == 11
    assert max(c.level for c in b.chapters) == 3
    assert b.chapters[-1].title == "Stichwortverzeichnis"
    assert (b.title, b.authors) == ("Geometrie und Topologie", ("Martin Thoma",))


# --- text oracles ---------------------------------------------------------------------------


def test_multicolumn_sentences_whole_and_in_order() -> None:
    text = spoken(book("sf-latex-multicolumn.pdf"))
    assert in_order(
        text,
        [
            "This is a sample document with two columns filled with Lorem Ipsum text.",
            "Lorem ipsum dolor sit amet, consectetuer adipiscing elit.",
            (
                "Pellentesque habitant morbi tristique senectus et netus et malesuada fames ac "
                "turpis egestas."
            ),
        ],
    )


def test_geotopo_page_12_sentence_whole() -> None:
    b = book("sf-geotopo-komprimiert.pdf")
    assert "Ein topologischer Raum X heißt hausdorffsch, wenn es für je zwei Punkte" in spoken(b)
    assert "\ufb00" not in spoken(b) and "\ufb01" not in spoken(b)


def test_vicksburg_reads_after_the_running_head() -> None:
    b = book("pypdf-siege-of-vicksburg-ocr-scan.pdf")
    assert spoken(b).startswith(b.chapters[0].title + " however, did not last long; it became too")


NOT_SPOKEN = {
    "sf-geotopo-komprimiert.pdf": [
        re.compile(r"\b\d{1,3} \d\.\d\. [A-ZÄÖÜ][A-ZÄÖÜ ]{3,}"),  # "8 1.2. METRISCHE RÄUME"
        re.compile(r"METRISCHE RÄUME|STETIGKEIT|TOPOLOGISCHE RÄUME"),
    ],
    "pypdf-siege-of-vicksburg-ocr-scan.pdf": [
        re.compile(r"SIEGE\s+OF\s+VICKSBU", re.IGNORECASE),
    ],
}


@pytest.mark.parametrize("name", sorted(READABLE))
def test_no_running_heads_or_page_numbers(name: str) -> None:
    text = spoken(book(name))
    for pattern in NOT_SPOKEN.get(name, []):
        assert not pattern.search(text), pattern.search(text)
    if name == "sf-geotopo-komprimiert.pdf":
        return  # formulas leave bare digits as text; its running heads are checked above
    for ch in book(name).chapters:
        for bl in ch.blocks:
            assert not re.fullmatch(r"\d{1,4}|[ivx]{2,6}", bl.text.strip()), (ch.title, bl.text)


def test_page_numbers_at_the_foot_are_gone() -> None:
    # pdflatex puts a bare number at the foot of pages 2-4
    for ch in book("sf-pdflatex-outline.pdf").chapters:
        for bl in ch.blocks:
            if bl.kind == "paragraph":
                assert not re.search(r"\s[234]$", bl.text), bl.text


# --- encryption -----------------------------------------------------------------------------


def test_empty_user_password_opens_without_asking() -> None:
    assert "pdf encryption test password: asdfzxcv" in spoken(
        book("pypdf-r2-rc4-40-empty-user-password.pdf")
    )


@pytest.mark.parametrize(
    "name, password, starts",
    [
        ("sf-libreoffice-writer-password.pdf", "openpassword", "Lorem ipsum dolor sit amet"),
        ("pypdf-r4-aes128-user-password-asdfzxcv.pdf", "asdfzxcv", "pdf encryption test"),
    ],
)
def test_encrypted_needs_its_password(name: str, password: str, starts: str) -> None:
    path = corpus_path("pdf", name)
    for wrong in (None, "not-it"):
        with pytest.raises(EncryptedDocument) as err:
            PdfIngestor().read(path, IngestOptions(password=wrong))
        assert str(err.value) == f"{path}: encrypted; wrong or missing password (use --password)"
        assert err.value.exit_code == 6
    assert starts in spoken(book(name))


# --- no text, corrupt -----------------------------------------------------------------------


def test_image_only_is_refused_clearly() -> None:
    path = corpus_path("pdf", "sf-imagemagick-ccittfax-image-only.pdf")
    with pytest.raises(NoTextError) as err:
        PdfIngestor().read(path, IngestOptions())
    assert str(err.value) == (
        f"{path}: no text layer (scanned or image-only PDF); OCR is not available"
    )


@pytest.mark.parametrize(
    "name, problem",
    [
        ("qpdf-bad1-not-a-pdf.pdf", "not a PDF (no %PDF- header)"),
        ("qpdf-bad2-no-startxref.pdf", "broken PDF: startxref not found"),
    ],
)
def test_corrupt_files_one_line(name: str, problem: str) -> None:
    path = corpus_path("pdf", name)
    with pytest.raises(CorruptDocument) as err:
        PdfIngestor().read(path, IngestOptions())
    assert str(err.value) == f"{path}: {problem}"


def test_damaged_stream_still_reads() -> None:
    assert "Potato" in spoken(book("qpdf-damaged-stream.pdf"))


def test_arabic_direction_and_text() -> None:
    b = book("sf-habibi-arabic.pdf")
    assert b.direction == "rtl"
    assert "habibi" in spoken(b)
    assert "حَبيبي" in spoken(b)


def test_pages_with_labels_keep_body_lines() -> None:
    text = spoken(book("qpdf-11-pages-with-labels.pdf"))
    for i in range(1, 12):
        assert f"Original page {i}" in text


def test_every_manifest_pdf_is_covered() -> None:
    folder = corpus_path("pdf", "sf-pdflatex-outline.pdf").parent
    known = set(READABLE) | {
        "sf-imagemagick-ccittfax-image-only.pdf",
        "qpdf-bad1-not-a-pdf.pdf",
        "qpdf-bad2-no-startxref.pdf",
    }
    assert {p.name for p in Path(folder).glob("*.pdf")} <= known


def test_read_book_picks_the_pdf_ingestor() -> None:
    b = read_book(corpus_path("pdf", "sf-pdflatex-outline.pdf"))
    assert len(b.chapters) == 9


def test_geotopo_headings_without_the_outline_find_the_numbered_sections() -> None:
    path = corpus_path("pdf", "sf-geotopo-komprimiert.pdf")
    by_headings = PdfIngestor().read(path, IngestOptions(split_by="headings"))
    outline = [c for c in book("sf-geotopo-komprimiert.pdf").chapters if c.title[0].isdigit()]
    found = [(c.title, c.level) for c in by_headings.chapters if c.title[0].isdigit()]
    assert found == [(c.title, c.level) for c in outline]
