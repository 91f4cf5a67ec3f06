"""Project Gutenberg EPUBs, old and new layout, built here: neither the header, the
licence nor the contents page is spoken by default; ``--keep-matter`` keeps all of it;
``inspect`` says what was left out and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from audiobook.cli import cli
from audiobook.ingest import IngestOptions
from audiobook.ingest.epub import read_epub
from tests.epubkit import Doc, build_epub

LICENCE = (
    "<p>Section 1. General Terms of Use and Redistributing Project Gutenberg-tm electronic "
    "works. LICENCEWORDS By reading or using any part of this work you indicate that you "
    "have read and accept all the terms of this license.</p>"
) * 40
STORY_1 = "<h2 id='ch1'>CHAPTER I</h2><p>It was a dark and stormy night, STORYWORDS said.</p>"
STORY_2 = "<h2 id='ch2'>CHAPTER II</h2><p>The morning came at last, and with it rain.</p>"
CONTENTS = (
    "<h2>CONTENTS</h2><table><tr><td><a href='c1.xhtml#ch1'>CHAPTER I</a></td></tr>"
    "<tr><td><a href='c1.xhtml#ch2'>CHAPTER II</a></td></tr>"
    "<tr><td><a href='c1.xhtml#ch3'>CHAPTER III. CONTENTSWORDS</a></td></tr></table>"
)

OLD = [
    Doc(
        "h.xhtml",
        "<p>The Project Gutenberg EBook of Test, by Anon. HEADERWORDS This eBook is for the "
        "use of anyone anywhere at no cost.</p>"
        "<p>*** START OF THIS PROJECT GUTENBERG EBOOK TEST ***</p>" + CONTENTS,
    ),
    Doc("c1.xhtml", STORY_1 + STORY_2),
    Doc("l.xhtml", "<p>*** END OF THIS PROJECT GUTENBERG EBOOK TEST ***</p>" + LICENCE),
]
NEW = [
    Doc(
        "h.xhtml",
        "<section class='pg-boilerplate pgheader' id='pg-header'>"
        "<h2 id='pg-header-heading'>The Project Gutenberg eBook of Test HEADERWORDS</h2>"
        "<p>This ebook is for the use of anyone anywhere in the United States.</p>"
        "<div id='pg-start-separator'><span>*** START OF THE PROJECT GUTENBERG EBOOK TEST "
        "***</span></div></section>"
        "<div class='chapter'>" + CONTENTS + "</div>",
    ),
    Doc(
        "c1.xhtml",
        STORY_1 + STORY_2 + "<section class='pg-boilerplate pgheader' id='pg-footer'>"
        "<div id='pg-end-separator'><span>*** END OF THE PROJECT GUTENBERG EBOOK TEST ***"
        "</span></div>" + LICENCE + "</section>",
    ),
]
TOC = [("CHAPTER I", "c1.xhtml#ch1", []), ("CHAPTER II", "c1.xhtml#ch2", [])]
MATTER = ("HEADERWORDS", "LICENCEWORDS", "CONTENTSWORDS", "START OF", "END OF")


@pytest.fixture(params=["old", "new"])
def pg_epub(request, tmp_path: Path) -> Path:
    docs = OLD if request.param == "old" else NEW
    return build_epub(tmp_path / f"pg-{request.param}.epub", docs, TOC)


def spoken(book) -> str:
    return " ".join([c.title for c in book.chapters] + [c.text for c in book.chapters])


def test_matter_is_left_out_by_default(pg_epub: Path) -> None:
    book = read_epub(pg_epub)
    text = spoken(book)
    for word in MATTER:
        assert word not in text
    assert "STORYWORDS" in text and "The morning came at last" in text
    assert [c.title for c in book.chapters] == ["CHAPTER I", "CHAPTER II"]
    said = " ".join(book.left_out)
    assert "Project Gutenberg" in said and "licence" in said
    assert "contents" in said.lower()


def test_keep_matter_keeps_all_of_it(pg_epub: Path) -> None:
    text = spoken(read_epub(pg_epub, IngestOptions(skip_matter=False)))
    for word in ("HEADERWORDS", "LICENCEWORDS", "CONTENTSWORDS", "STORYWORDS"):
        assert word in text
    assert read_epub(pg_epub, IngestOptions(skip_matter=False)).left_out == ()


def test_cli_flags_and_inspect_lists_what_was_left_out(pg_epub: Path) -> None:
    runner = CliRunner()
    default = runner.invoke(cli, ["inspect", str(pg_epub), "--text"])
    assert default.exit_code == 0, default.output
    assert "LICENCEWORDS" not in default.output and "STORYWORDS" in default.output
    alias = runner.invoke(cli, ["inspect", str(pg_epub), "--text", "--skip-matter"])
    assert alias.exit_code == 0 and alias.output == default.output
    kept = runner.invoke(cli, ["inspect", str(pg_epub), "--text", "--keep-matter"])
    assert kept.exit_code == 0
    for word in ("HEADERWORDS", "LICENCEWORDS", "CONTENTSWORDS"):
        assert word in kept.output
    table = runner.invoke(cli, ["inspect", str(pg_epub)])
    assert table.exit_code == 0
    assert "Left out" in table.output and "Project Gutenberg licence" in table.output
