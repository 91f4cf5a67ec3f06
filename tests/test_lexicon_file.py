"""--lexicon-file: the user's pronunciations, for both engines, in the SSML itself.

A word of the lexicon becomes <sub alias> (read by espeak-ng and Polly) or <phoneme>
(Polly) wherever it stands, so a change of the file changes, and synthesizes again,
only the pieces whose text holds a word it changed.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from audiobook.cli import cli
from audiobook.config import RenderOptions
from audiobook.engines.polly.checks import unsupported_ssml
from audiobook.errors import ConfigError
from audiobook.lexicon import Entry, read_lexicon
from audiobook.model import Block, Book, Chapter
from audiobook.options import ConvertOptions
from audiobook.pipeline import convert_book
from audiobook.ssml import render_chapter
from audiobook.state import StateStore

PLS = """<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon"
      alphabet="ipa" xml:lang="en-US">
  <lexeme><grapheme>W3C</grapheme><alias>World Wide Web Consortium</alias></lexeme>
  <lexeme><grapheme>Tbilisi</grapheme><grapheme>TBS</grapheme>
    <phoneme>tʰbilisi</phoneme></lexeme>
</lexicon>
"""


def test_pls_and_two_column_files_are_read(tmp_path):
    pls = tmp_path / "my.pls"
    pls.write_text(PLS, encoding="utf-8")
    assert read_lexicon(pls) == (
        Entry("W3C", alias="World Wide Web Consortium"),
        Entry("Tbilisi", ph="tʰbilisi"),
        Entry("TBS", ph="tʰbilisi"),
    )
    cols = tmp_path / "my.txt"
    cols.write_text(
        "# names\nHermione\ther my oh nee\nTbilisi  /tʰbilisi/\n\nNew York  [nuː jɔrk]\n",
        encoding="utf-8",
    )
    assert read_lexicon(cols) == (
        Entry("Hermione", alias="her my oh nee"),
        Entry("Tbilisi", ph="tʰbilisi"),
        Entry("New York", ph="nuː jɔrk"),
    )


def test_a_bad_lexicon_is_one_line_naming_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Hermione\ther my oh nee\njustoneword\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.txt:2: expected a word"):
        read_lexicon(bad)
    book = tmp_path / "b.txt"
    book.write_text("Hello.\n")
    r = CliRunner().invoke(
        cli,
        ["convert", str(book), "--lexicon-file", str(bad), "--state-dir", str(tmp_path / "s")],
    )
    assert r.exit_code == 2
    assert "bad.txt:2: expected a word" in r.output
    assert "Traceback" not in r.output


def test_words_become_sub_and_phoneme_that_polly_takes():
    lexicon = (Entry("Hermione", alias="her my oh nee"), Entry("Tbilisi", ph="tʰbilisi"))
    book = Book(
        title="T",
        chapters=(
            Chapter("Tbilisi", blocks=(Block("paragraph", "Hermione saw Tbilisi; Tbilisis not."),)),
        ),
    )
    ssml = render_chapter(book, 0, RenderOptions(lexicon=lexicon))
    assert '<p><phoneme alphabet="ipa" ph="tʰbilisi">Tbilisi</phoneme></p>' in ssml
    assert (
        '<sub alias="her my oh nee">Hermione</sub> saw '
        '<phoneme alphabet="ipa" ph="tʰbilisi">Tbilisi</phoneme>; Tbilisis not.'
    ) in ssml
    for engine in ("standard", "neural", "long-form"):
        assert unsupported_ssml(ssml, engine) is None


def _book() -> Book:
    return Book(
        title="Three",
        language="en",
        chapters=(
            Chapter("One", blocks=(Block("paragraph", "The fox ran."),)),
            Chapter("Two", blocks=(Block("paragraph", "Hermione read a book."),)),
            Chapter("Three", blocks=(Block("paragraph", "The end came."),)),
        ),
    )


def test_espeak_reads_the_alias_and_a_changed_file_redoes_only_its_pieces(tmp_path):
    book = _book()
    store = StateStore(tmp_path / "state")

    def run(lexicon: tuple[Entry, ...], out: str):
        opts = ConvertOptions(
            engine="espeak", render=RenderOptions(lexicon=lexicon), profile="none"
        )
        return convert_book(book, tmp_path / out, opts, store=store)

    try:
        plain = run((), "plain.m4b")
        short = run((Entry("Hermione", alias="her"),), "short.m4b")
        long = run((Entry("Hermione", alias="her my oh nee, the clever one, " * 3),), "long.m4b")
        again = run((Entry("Hermione", alias="her"), Entry("Zebra", alias="horse")), "z.m4b")
    finally:
        store.close()
    assert plain.chunks_submitted == 3
    # each change of the lexicon touches the one chapter that says "Hermione"
    assert (short.chunks_submitted, short.chunks_cached) == (1, 2)
    assert (long.chunks_submitted, long.chunks_cached) == (1, 2)
    # an entry for a word the book never says changes nothing
    assert (again.chunks_submitted, again.chunks_cached) == (0, 3)
    # espeak-ng reads the alias: the chapter grows with it
    short_two = short.chapter_times[1][2] - short.chapter_times[1][1]
    long_two = long.chapter_times[1][2] - long.chapter_times[1][1]
    assert long_two > short_two + 3


def test_the_local_engine_says_it_reads_ipa_entries_as_written(tmp_path):
    lexicon = tmp_path / "lx.txt"
    lexicon.write_text("Tbilisi\t/tʰbilisi/\nW3C\tweb consortium\n", encoding="utf-8")
    book = tmp_path / "b.txt"
    book.write_text("Tbilisi and the W3C.\n", encoding="utf-8")
    r = CliRunner().invoke(
        cli,
        [
            "convert",
            str(book),
            "--engine",
            "espeak",
            "--lexicon-file",
            str(lexicon),
            "--state-dir",
            str(tmp_path / "s"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "1 IPA entry read as written by espeak-ng" in r.output
