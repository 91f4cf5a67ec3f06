"""PDF page furniture and garbage, on PDFs built here, one rule each: running heads
whose page number and title change from page to page (odd/even alternation, arabic and
roman numbers), print-production slugs and proof stamps, glyph codes of fonts without a
Unicode map (warned about by page), and note reference numbers in the running text."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import pytest

from audiobook.errors import NoTextError
from audiobook.ingest.base import IngestOptions
from audiobook.ingest.pdf import PdfIngestor
from audiobook.model import Book
from tests.conftest import corpus_path
from tests.pdfgen import build_pdf, lines_at, simple_pdf, stream, text
from tests.test_pdf_corpus import READABLE

BODY = [
    "The river ran slowly under the old stone bridge, and the town slept beside it.",
    "Nobody in the valley remembered a winter as long as that one had been so far.",
    "Every morning the baker opened his shutters and looked out at the grey sky.",
    "By noon the children were out on the ice, shouting and sliding down the bank.",
    "In the evening the lamps were lit one by one along the street by the square.",
    "Then the wind came down from the hills and the snow began again in earnest.",
]
ROMAN = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii"]


def read(tmp_path: Path, data: bytes, **opts: object) -> Book:
    path = tmp_path / "book.pdf"
    path.write_bytes(data)
    return PdfIngestor().read(path, IngestOptions(**opts))  # type: ignore[arg-type]


def spoken(book: Book) -> str:
    return "\n".join([c.title for c in book.chapters] + [c.text for c in book.chapters])


def body_page(n: int) -> str:
    """A page of running text, each page's lines a little different."""
    lines = [f"{BODY[(n + k) % len(BODY)]} Page text {n}-{k}." for k in range(12)]
    return lines_at(72, 690, lines)


def test_alternating_running_heads_with_numbers_and_chapter_names(tmp_path: Path) -> None:
    """Even pages: '<n> THE BOOK TITLE' at the left; odd pages: '<CHAPTER NAME> <n>' at
    the right, the name changing every eight pages; front matter numbered in roman."""
    chapters = ["THE FROZEN RIVER", "A LONG WINTER", "LAMPS IN THE SQUARE"]
    pages = []
    for p in range(24):
        number = ROMAN[p] if p < 4 else str(p + 1)
        if p % 2 == 0:
            head = text(72, 750, f"{number} THE BOOK TITLE", size=9)
        else:
            head = text(380, 750, f"{chapters[p // 8]} {number}", size=9)
        pages.append(head + body_page(p))
    book = read(tmp_path, simple_pdf(pages))
    said = spoken(book)
    assert "BOOK TITLE" not in said
    for name in chapters:
        assert name not in said
    assert "Page text 23-11." in said and "Page text 0-0." in said


def test_slugs_and_proof_stamps_are_not_spoken(tmp_path: Path) -> None:
    """Each on one page only, so no repetition finds them: the slug rule does."""
    pages = [body_page(p) for p in range(12)]
    pages[3] += text(36, 20, "Smith_Winter_Final.indd 4   3/12/19   10:15:03 AM", size=6)
    pages[7] += text(250, 770, "SECOND PASS PAGES", size=8)
    pages[9] += text(36, 20, "Winter_ch09.qxp  Page ix  21/1/2020 4:05 PM", size=6)
    said = spoken(read(tmp_path, simple_pdf(pages)))
    assert "indd" not in said and "PASS PAGES" not in said and "qxp" not in said
    assert "Page text 11-11." in said


GLYPH_FONT = (
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding << /Type /Encoding "
    "/Differences [65 /g152 /g135 /g148 /g101 /g77] >> >>"
)


def glyph_pdf(pages: list[str]) -> bytes:
    """Pages whose font F4 names its glyphs /g152... with no Unicode map: a text
    extractor can only give the names."""
    objs: dict[int, bytes | str] = {1: "<< /Type /Catalog /Pages 2 0 R >>"}
    objs[3] = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    objs[4] = GLYPH_FONT
    kids = []
    for n, content in enumerate(pages):
        page, body = 10 + 2 * n, 11 + 2 * n
        objs[body] = stream(content)
        objs[page] = (
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font "
            f"<< /F1 3 0 R /F4 4 0 R >> >> /Contents {body} 0 R >>"
        )
        kids.append(f"{page} 0 R")
    objs[2] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    return build_pdf(objs, 1)


def test_glyph_codes_are_dropped_with_a_warning_naming_the_pages(tmp_path: Path) -> None:
    mixed = body_page(1) + text(72, 100, "ABCDEABCDE", font="F4")  # page 2: some garbage
    only = "".join(text(72, 700 - 14 * k, "ABCDEABCDEABCDE", font="F4") for k in range(10))
    cid = body_page(3) + text(72, 100, "Here (cid:12)(cid:15)(cid:7) ends.")
    book = read(tmp_path, glyph_pdf([body_page(0), mixed, only, cid]))
    said = spoken(book)
    assert "/g1" not in said and "(cid:" not in said
    assert "Page text 1-0." in said and "Here ends." in said
    warning = next(w for w in book.warnings if w.startswith("glyph codes"))
    assert "pages 2-4" in warning and "no text layer: 3" in warning


def test_a_book_of_glyph_codes_only_has_no_text_layer(tmp_path: Path) -> None:
    only = "".join(text(72, 700 - 14 * k, "ABCDEABCDEABCDE", font="F4") for k in range(10))
    with pytest.raises(NoTextError, match="glyph codes only"):
        read(tmp_path, glyph_pdf([only, only]))


def test_note_reference_numbers_are_not_spoken(tmp_path: Path) -> None:
    raised = (
        text(72, 700, "It played like a music box.", size=11)
        + text(213, 705, "3", size=7)
        + text(222, 700, "As our guide said, it was old.", size=11)
    )
    glued = lines_at(72, 660, ['It rang like a bell."12 Then it stopped, in 1914.3 And no more.'])
    kept = lines_at(72, 620, ["See Fig.2 The area was 10 m2 at most."])
    said = spoken(read(tmp_path, simple_pdf([raised + glued + kept])))
    assert "music box. As our guide" in said
    assert 'like a bell." Then it stopped, in 1914.3 And' in said
    assert "See Fig.2 The area" in said


# --- the corpus: what is left at the edges of the pages --------------------------------

CORPUS_TEXT_PDFS = READABLE  # every text PDF of the corpus, with its password


def _normalized(s: str) -> str:
    s = re.sub(r"\d+", "#", s.lower())
    s = re.sub(r"(?<![^\W\d_])[ivxlcdm]{1,8}(?![^\W\d_])", "#", s)
    return " ".join(s.split())


def edge_lines(name: str, password: str | None) -> Counter[str]:
    """Short lines (digits and roman numerals normalised) left at the top or bottom of a
    page standing apart from its text block (a gap of 1.4 line spacings or more): outside
    the body of the page, as the book will speak them."""
    import audiobook.ingest._pdflayout as lay
    from audiobook.ingest import pdf

    with pdf._quiet_pypdf() as log:
        reader = pdf.open_pdf(corpus_path("pdf", name), password)
        pages = pdf.walk_pages(reader, [])
        raw, widths, upright, *_ = pdf.PdfIngestor._extract(pages, log, [])
        labels = pdf._page_labels(reader, len(pages))
    counts: Counter[str] = Counter()
    for page in pdf.layout_pages(raw, widths, labels, upright):
        lines = sorted(page.lines, key=lambda ln: -ln.y)
        if len(lines) < 3:
            continue
        gaps = sorted(a.y - b.y for a, b in itertools.pairwise(lines) if a.y > b.y)
        gap = gaps[len(gaps) // 2] if gaps else 14.0
        edges = []
        if lines[0].y - lines[1].y >= 1.4 * gap:
            edges.append(lines[0])
        if lines[-2].y - lines[-1].y >= 1.4 * gap:
            edges.append(lines[-1])
        for ln in edges:
            key = _normalized(lay.line_text(ln, running=True))
            if len(key) < 80:
                counts[key] += 1
    return counts


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(CORPUS_TEXT_PDFS))
def test_corpus_no_edge_line_spoken_more_than_three_times(name: str) -> None:
    counts = edge_lines(name, CORPUS_TEXT_PDFS[name])
    assert [(k, c) for k, c in counts.items() if c > 3] == []


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(CORPUS_TEXT_PDFS))
def test_corpus_no_glyph_codes_spoken(name: str) -> None:
    path = corpus_path("pdf", name)
    book = PdfIngestor().read(path, IngestOptions(password=CORPUS_TEXT_PDFS[name]))
    said = spoken(book)
    assert "(cid:" not in said and not re.search(r"(/g\d+){2,}", said)
