"""``audiobook inspect`` prints what the library's ``inspect_book`` / ``spoken_text`` say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from audiobook.cli import cli
from audiobook.config import RenderOptions
from audiobook.ingest import IngestOptions, read_book
from audiobook.inspect import BookInfo, ChapterInfo, inspect_book, spoken_text
from audiobook.ssml import billable_chars, render_chapter
from tests.epubkit import Doc, build_epub

CHAPTERS = [
    ("Spring", "<p>Rain fell on the &amp; sign. The frogs woke.</p>"),
    ("Summer", "<p>Long days.</p><p>Short nights, &quot;warm&quot; air.</p>"),
]


@pytest.fixture
def book_path(tmp_path: Path) -> Path:
    docs = [Doc(f"c{i}.xhtml", f"<h1>{t}</h1>{body}") for i, (t, body) in enumerate(CHAPTERS)]
    toc = [(t, f"c{i}.xhtml", []) for i, (t, _) in enumerate(CHAPTERS)]
    return build_epub(tmp_path / "year.epub", docs, toc, title="A Year", authors=("Bo",))


def test_inspect_json_equals_the_library(book_path: Path) -> None:
    r = CliRunner().invoke(cli, ["inspect", str(book_path), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    book = read_book(book_path, IngestOptions())
    info = inspect_book(book, RenderOptions())
    assert json.loads(r.stdout) == info.as_dict()
    assert [c.title for c in info.chapters] == [t for t, _ in CHAPTERS]
    for idx, c in enumerate(info.chapters):
        ssml = render_chapter(book, idx, RenderOptions())
        assert (c.chars, c.billable_chars) == (len(ssml), billable_chars(ssml))
    assert info.total_billable_chars == sum(c.billable_chars for c in info.chapters)


def test_inspect_text_equals_the_library(book_path: Path) -> None:
    r = CliRunner().invoke(cli, ["inspect", str(book_path), "--text"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert r.stdout == spoken_text(read_book(book_path, IngestOptions()), RenderOptions())


def test_as_dict_keeps_the_json_contract() -> None:
    info = BookInfo(
        title="T",
        authors=("A", "B"),
        language=None,
        chapters=(ChapterInfo("One", 1, 10, 4), ChapterInfo("Two", 2, 20, 5)),
    )
    assert json.dumps(info.as_dict()) == json.dumps(
        {
            "title": "T",
            "authors": ["A", "B"],
            "language": None,
            "chapters": [
                {"title": "One", "level": 1, "chars": 10, "billable_chars": 4},
                {"title": "Two", "level": 2, "chars": 20, "billable_chars": 5},
            ],
            "total_billable_chars": 9,
        }
    )
