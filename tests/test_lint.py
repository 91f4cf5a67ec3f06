"""``audiobook inspect --lint``: spoken text that looks wrong, found on a document built
to hold each kind, quiet on the clean novels of the corpus; and the one line after every
``convert``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from audiobook.cli import cli
from audiobook.ingest import read_book
from audiobook.inspect import lint_book, lint_summary
from tests.conftest import corpus_path

PROSE = (
    "The lighthouse keeper climbed the stairs every evening and lit the great lamp, "
    "watching the ships pass slowly along the dark and windy coast. "
)

SUSPECT = f"""---
title: Suspect Text
language: en
---

# One

{PROSE}
Read more at https://example.com/articles/lighthouse?id=4 today.

{PROSE} The old ledger said /g152/g135/g148/g152/g135 where the name should be.

THE LIGHTHOUSE BOOK 12

{PROSE}

THE LIGHTHOUSE BOOK 14

{PROSE}

THE LIGHTHOUSE BOOK 16

{PROSE}

THE LIGHTHOUSE BOOK 18

# Two

{PROSE} His number was 004915112345678 and nobody called it.

{PROSE} Над морем вставало солнце, и старый смотритель гасил свой фонарь.
"""


@pytest.fixture
def suspect(tmp_path: Path) -> Path:
    path = tmp_path / "suspect.md"
    path.write_text(SUSPECT, "utf-8")
    return path


def test_each_kind_is_flagged(suspect: Path) -> None:
    found = {(f.chapter, f.kind): f for f in lint_book(read_book(suspect))}
    assert set(found) == {(0, "url"), (0, "glyph"), (0, "repeated"), (1, "digits"), (1, "script")}
    assert found[(0, "url")].example.startswith("https://example.com/articles")
    assert found[(0, "glyph")].example.startswith("/g152/g135")
    assert found[(0, "repeated")].count == 4
    assert found[(0, "repeated")].example == "THE LIGHTHOUSE BOOK #"
    assert found[(1, "digits")].example == "004915112345678"
    assert found[(1, "script")].example in SUSPECT


def test_inspect_lint_lists_them(suspect: Path) -> None:
    r = CliRunner().invoke(cli, ["inspect", str(suspect), "--lint"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 6
    assert lines[0].startswith("chapter 1 (One): web address")
    assert lines[-1].startswith("lint: ") and "glyph codes" in lines[-1]


NOVELS = [
    "gutenberg-1661-adventures-of-sherlock-holmes.epub",
    "gutenberg-4791-voyage-au-centre-de-la-terre-fr.epub",
    "gutenberg-23962-xiyouji-zh.epub",
    "idpf-moby-dick.epub",
    "idpf-kusamakura-japanese-vertical-writing.epub",
    "idpf-childrens-literature.epub",
]


@pytest.mark.corpus
@pytest.mark.parametrize("name", NOVELS)
def test_quiet_on_the_clean_novels(name: str) -> None:
    findings = lint_book(read_book(corpus_path("epub", name)))
    assert [str(f) for f in findings] == []
    assert lint_summary(findings) == "lint: nothing looks wrong in the spoken text"


@pytest.mark.ffmpeg
def test_convert_ends_with_the_lint_line(suspect: Path, tmp_path: Path) -> None:
    out = tmp_path / "suspect.m4b"
    r = CliRunner().invoke(
        cli, ["convert", str(suspect), "-o", str(out), "--state-dir", str(tmp_path / "st")]
    )
    assert r.exit_code == 0, r.output
    last = r.stdout.splitlines()[-1]
    assert last.startswith("lint: ") and "web address" in last and "inspect --lint" in last
