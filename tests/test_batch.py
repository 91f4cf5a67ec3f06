"""Batch: a folder of books, one corrupt; the others are delivered, the exit code says a
book failed, and a second run does nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from audiobook.cli import cli
from tests.epubkit import Doc, build_epub


def small_epub(path: Path, title: str, words: str) -> Path:
    docs = [
        Doc("a.xhtml", f"<h1>Start</h1><p>{words} begins here.</p>"),
        Doc("b.xhtml", f"<h1>End</h1><p>{words} ends here.</p>"),
    ]
    return build_epub(path, docs, [("Start", "a.xhtml", []), ("End", "b.xhtml", [])], title=title)


@pytest.mark.ffmpeg
def test_batch_delivers_good_books_and_fails_the_bad_one(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    small_epub(books / "first.epub", "First", "The first story")
    small_epub(books / "second.epub", "Second", "The second story")
    (books / "broken.epub").write_bytes(b"PK\x03\x04 this is not really a zip")
    (books / "notes.json").write_text("{}")  # not a book: ignored
    out = tmp_path / "out"
    state = tmp_path / "state"
    args = ["batch", str(books), "-o", str(out), "--jobs", "2", "--state-dir", str(state)]
    args += ["--engine", "espeak"]  # the batch, not the voice, is under test

    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 5, r.output  # the corrupt book's exit code
    assert (out / "first.m4b").stat().st_size > 0
    assert (out / "second.m4b").stat().st_size > 0
    assert not (out / "broken.m4b").exists()
    lines = r.stdout.splitlines()
    assert any(ln.startswith("FAILED  broken.epub") for ln in lines)
    assert sum(ln.startswith("done") for ln in lines) == 2
    assert "3 books" in r.stdout  # the summary table
    assert "1 of 3 books failed" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["first.m4b", "second.m4b"]

    # A second run does nothing for the delivered books.
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 5
    assert sum(ln.startswith("skipped") and "up to date" in ln for ln in r.stdout.splitlines()) == 2
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes

    # With the bad book gone, the batch succeeds.
    (books / "broken.epub").unlink()
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output


def test_batch_outputs_names(tmp_path):
    from audiobook.batch import batch_outputs

    for name in ("a.epub", "a.pdf", "b.md", "c.txt", "d.html", "skip.json"):
        (tmp_path / name).write_text("x")
    pairs = batch_outputs(tmp_path, tmp_path / "out", "m4b")
    assert [(s.name, o.name) for s, o in pairs] == [
        ("a.epub", "a.epub.m4b"),
        ("a.pdf", "a.pdf.m4b"),
        ("b.md", "b.m4b"),
        ("c.txt", "c.m4b"),
        ("d.html", "d.m4b"),
    ]
