"""Hostile PDFs: loops and absurd sizes in the outline and the page tree.

Each file is written object by object so that it can point where no sane producer would.
Every read runs in a thread with a deadline: a hang fails the test instead of the suite.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from audiobook.errors import AudiobookError
from audiobook.ingest import pdf as pdfmod
from audiobook.ingest.base import IngestOptions
from audiobook.ingest.pdf import PdfIngestor
from audiobook.model import Book

from .pdfgen import build_pdf, pdf_string, stream, text

DEADLINE = 60.0
FONT = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"


def read_guarded(path: Path) -> Book:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["book"] = PdfIngestor().read(path, IngestOptions())
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            result["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(DEADLINE)
    assert not worker.is_alive(), "reading the PDF did not finish: a loop was followed"
    if "error" in result:
        raise result["error"]
    return result["book"]


def page_obj(content: int, parent: int = 2) -> str:
    return (
        f"<< /Type /Page /Parent {parent} 0 R /MediaBox [0 0 612 792] "
        f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>"
    )


def base_objects(n_pages: int = 1) -> tuple[dict[int, bytes | str], list[int]]:
    """Catalog 1, Pages 2, font 3, pages 10, 12, ... with contents 11, 13, ..."""
    objs: dict[int, bytes | str] = {3: FONT}
    pages = []
    for k in range(n_pages):
        num = 10 + 2 * k
        objs[num] = page_obj(num + 1)
        objs[num + 1] = stream(text(72, 700, f"Text of page {k + 1}."))
        pages.append(num)
    kids = " ".join(f"{p} 0 R" for p in pages)
    objs[2] = f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>"
    objs[1] = "<< /Type /Catalog /Pages 2 0 R >>"
    return objs, pages


def outline_item(title: str, page: int, parent: int, **links: int) -> str:
    extra = " ".join(f"/{k} {v} 0 R" for k, v in links.items())
    return f"<< /Title {pdf_string(title)} /Parent {parent} 0 R /Dest [{page} 0 R /Fit] {extra} >>"


def write(tmp_path: Path, objs: dict[int, bytes | str]) -> Path:
    path = tmp_path / "hostile.pdf"
    path.write_bytes(build_pdf(objs, 1))
    return path


# --- outline ----------------------------------------------------------------------------------


def test_outline_next_loop_ends(tmp_path: Path) -> None:
    objs, pages = base_objects(3)
    objs[1] = "<< /Type /Catalog /Pages 2 0 R /Outlines 50 0 R >>"
    objs[50] = "<< /Type /Outlines /First 51 0 R /Last 53 0 R /Count 3 >>"
    objs[51] = outline_item("One", pages[0], 50, Next=52)
    objs[52] = outline_item("Two", pages[1], 50, Prev=51, Next=53)
    objs[53] = outline_item("Three", pages[2], 50, Prev=52, Next=51)  # back to the first
    book = read_guarded(write(tmp_path, objs))
    assert [c.title for c in book.chapters] == ["One", "Two", "Three"]
    assert [c.text for c in book.chapters] == [f"Text of page {k}." for k in (1, 2, 3)]
    assert any("loop" in w for w in book.warnings)


def test_outline_child_pointing_to_an_ancestor_ends(tmp_path: Path) -> None:
    objs, pages = base_objects(2)
    objs[1] = "<< /Type /Catalog /Pages 2 0 R /Outlines 50 0 R >>"
    objs[50] = "<< /Type /Outlines /First 51 0 R /Last 51 0 R /Count 1 >>"
    objs[51] = outline_item("Part", pages[0], 50, First=52, Last=52)
    objs[52] = outline_item("Chapter", pages[1], 51, First=51, Last=51)  # child is its grandparent
    book = read_guarded(write(tmp_path, objs))
    assert [(c.title, c.level) for c in book.chapters] == [("Part", 1), ("Chapter", 2)]
    assert any("loop" in w for w in book.warnings)


def test_outline_nested_thousands_deep(tmp_path: Path) -> None:
    depth = 3000
    objs, pages = base_objects(1)
    objs[1] = "<< /Type /Catalog /Pages 2 0 R /Outlines 50 0 R >>"
    objs[50] = "<< /Type /Outlines /First 100 0 R /Last 100 0 R >>"
    for k in range(depth):
        num = 100 + k
        parent = 50 if k == 0 else num - 1
        links = {"First": num + 1, "Last": num + 1} if k + 1 < depth else {}
        objs[num] = outline_item(f"Level {k + 1}", pages[0], parent, **links)
    book = read_guarded(write(tmp_path, objs))
    assert len(book.chapters) == pdfmod.MAX_OUTLINE_DEPTH
    assert max(c.level for c in book.chapters) == pdfmod.MAX_OUTLINE_DEPTH
    assert any("deeper" in w for w in book.warnings)


def test_outline_with_too_many_entries_is_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pdfmod, "MAX_OUTLINE_ENTRIES", 50)
    objs, pages = base_objects(1)
    objs[1] = "<< /Type /Catalog /Pages 2 0 R /Outlines 50 0 R >>"
    count = 200
    objs[50] = f"<< /Type /Outlines /First 100 0 R /Last {99 + count} 0 R >>"
    for k in range(count):
        links = {"Next": 101 + k} if k + 1 < count else {}
        objs[100 + k] = outline_item(f"Entry {k + 1}", pages[0], 50, **links)
    book = read_guarded(write(tmp_path, objs))
    assert len(book.chapters) == 50
    assert any("more than 50 entries" in w for w in book.warnings)


def test_named_destination_tree_loop_ends(tmp_path: Path) -> None:
    objs, pages = base_objects(2)
    objs[1] = "<< /Type /Catalog /Pages 2 0 R /Outlines 50 0 R /Names << /Dests 60 0 R >> >>"
    objs[60] = "<< /Kids [61 0 R 60 0 R] >>"  # the name tree lists itself
    objs[61] = f"<< /Names [(two) [{pages[1]} 0 R /Fit]] /Kids [60 0 R] >>"
    objs[50] = "<< /Type /Outlines /First 51 0 R /Last 52 0 R >>"
    objs[51] = outline_item("One", pages[0], 50, Next=52)
    objs[52] = "<< /Title (Two) /Parent 50 0 R /Prev 51 0 R /Dest (two) >>"
    book = read_guarded(write(tmp_path, objs))
    assert [c.text for c in book.chapters] == ["Text of page 1.", "Text of page 2."]


# --- page tree --------------------------------------------------------------------------------


def test_page_tree_kids_pointing_to_an_ancestor(tmp_path: Path) -> None:
    objs, pages = base_objects(2)
    objs[2] = f"<< /Type /Pages /Kids [{pages[0]} 0 R 5 0 R] /Count 3 >>"
    objs[5] = f"<< /Type /Pages /Parent 2 0 R /Kids [{pages[1]} 0 R 2 0 R] /Count 2 >>"
    objs[pages[1]] = page_obj(pages[1] + 1, parent=5)
    book = read_guarded(write(tmp_path, objs))
    text = "\n".join(c.text for c in book.chapters)
    assert text.count("Text of page 1.") == 1 and text.count("Text of page 2.") == 1
    assert any("loop" in w for w in book.warnings)


def test_the_same_page_listed_twenty_thousand_times(tmp_path: Path) -> None:
    objs, pages = base_objects(1)
    kids = " ".join([f"{pages[0]} 0 R"] * 20_000)
    objs[2] = f"<< /Type /Pages /Kids [{kids}] /Count 20000 >>"
    book = read_guarded(write(tmp_path, objs))
    assert "\n".join(c.text for c in book.chapters).count("Text of page 1.") == 1


def test_enormous_count_is_not_trusted(tmp_path: Path) -> None:
    objs, pages = base_objects(2)
    objs[2] = f"<< /Type /Pages /Kids [{pages[0]} 0 R {pages[1]} 0 R] /Count 2147483647 >>"
    book = read_guarded(write(tmp_path, objs))
    assert book.chapters[0].text == "Text of page 1.\n\nText of page 2."


def test_page_tree_nested_too_deep(tmp_path: Path) -> None:
    objs, pages = base_objects(1)
    depth = 300
    objs[2] = "<< /Type /Pages /Kids [100 0 R] /Count 1 >>"
    for k in range(depth):
        num = 100 + k
        kid = num + 1 if k + 1 < depth else pages[0]
        objs[num] = (
            f"<< /Type /Pages /Parent {num - 1 if k else 2} 0 R /Kids [{kid} 0 R] /Count 1 >>"
        )
    with pytest.raises(AudiobookError) as err:
        read_guarded(write(tmp_path, objs))
    assert "no pages" in str(err.value)


def test_hostile_title_and_metadata_are_plain_text(tmp_path: Path) -> None:
    objs, _ = base_objects(1)
    objs[7] = "<< /Title (\\000<speak>\\r\\n  Evil\\000) /Author (\\000) >>"
    path = tmp_path / "meta.pdf"
    path.write_bytes(build_pdf(objs, 1, info=7))
    book = read_guarded(path)
    assert book.title == "<speak> Evil"
    assert book.authors == ()


def test_one_baseline_of_twenty_thousand_runs(tmp_path: Path) -> None:
    # each glyph placed on its own: the line builder must stay linear in the number of runs
    objs, pages = base_objects(1)
    runs = "".join(f"BT /F1 10 Tf {72 + k * 0.025:.3f} 700 Td (w) Tj ET\n" for k in range(20_000))
    objs[pages[0] + 1] = stream(runs)
    book = read_guarded(write(tmp_path, objs))
    assert book.chapters[0].text.count("w") == 20_000
