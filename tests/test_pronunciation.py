"""The book's own pronunciation: EPUB 3 PLS lexicons and ssml:ph / ssml:alphabet.

The corpus's Georgia EPUB (one PLS lexicon of 71 lexemes, 102 ssml:ph words) goes
through the Polly path against the emulator: the lexicon is uploaded once under a
name derived from its content and the voice, in the voice's language, every task
names it, and the SSML sent carries a <phoneme> for each ssml:ph word. espeak-ng
takes neither, and says so.
"""

from __future__ import annotations

import hashlib
import re

import boto3
import pytest
from click.testing import CliRunner

from audiobook.cli import cli
from audiobook.engines import make_engine
from audiobook.engines.options import LocalOptions, PollyOptions
from audiobook.engines.polly import PollyEngine, polly_client_config
from audiobook.engines.polly.engine import book_lexicon_name, fit_language
from audiobook.ingest import read_book
from audiobook.ingest._xhtml import extract, parse_xhtml
from audiobook.model import Block, Book, Chapter, Phoneme
from audiobook.options import ConvertOptions
from audiobook.ssml import render_chapter
from audiobook.state import StateStore
from audiobook.synthesis import plan_chunks, synthesize

GEORGIA = ("epub", "idpf-georgia-pls-ssml.epub")


def test_ssml_ph_and_alphabet_become_phonemes_of_the_block():
    doc = (
        '<html xmlns="http://www.w3.org/1999/xhtml" '
        'xmlns:ssml="http://www.w3.org/2001/10/synthesis" ssml:alphabet="x-sampa">'
        '<body><p>I live in  <span ssml:ph="dZOrdZ@"> Georgia </span>, '
        '<b ssml:alphabet="ipa"><i ssml:ph="tɨbilisi">Tbilisi</i></b> now.</p>'
        "<p>\ue000odd\ue001 text</p></body></html>"
    ).encode()
    root, _ = parse_xhtml(doc)
    blocks = [e.block for e in extract(root)]  # type: ignore[union-attr]
    assert blocks[0].text == "I live in Georgia , Tbilisi now."
    assert blocks[0].phonemes == (
        Phoneme(10, 17, "dZOrdZ@", "x-sampa"),
        Phoneme(20, 27, "tɨbilisi", "ipa"),
    )
    assert blocks[1] == Block("paragraph", "odd text")  # private-use marks are dropped


def test_phonemes_render_as_phoneme_tags_escaped():
    block = Block("paragraph", 'Say "A&B" twice.', phonemes=(Phoneme(5, 8, 'eɪ "and" bi', "ipa"),))
    book = Book(title="T", chapters=(Chapter("One", blocks=(block,)),))
    ssml = render_chapter(book, 0)
    assert (
        'Say &quot;<phoneme alphabet="ipa" ph="eɪ &quot;and&quot; bi">A&amp;B</phoneme>'
        "&quot; twice." in ssml
    )
    odd = Block("paragraph", "Say it.", phonemes=(Phoneme(4, 6, "ɪt", "klingon"),))
    assert "<phoneme" not in render_chapter(book.with_chapters((Chapter("x", blocks=(odd,)),)), 0)


def test_lexicon_language_is_fitted_to_the_voice():
    pls = '<lexicon version="1.0" alphabet="ipa" xml:lang="en" xmlns="x"><lexeme/></lexicon>'
    assert 'xml:lang="en-US"' in (fit_language(pls, "en-US") or "")
    assert fit_language(pls, "fr-FR") is None
    assert fit_language(pls.replace('"en"', '"en-GB"'), "en-US") is None
    name = book_lexicon_name(pls, "Joanna")
    assert re.fullmatch(r"[0-9A-Za-z]{1,20}", name)
    assert name != book_lexicon_name(pls, "Matthew")
    assert name != book_lexicon_name(pls + " ", "Joanna")


@pytest.mark.corpus
def test_georgia_reads_its_lexicon_and_its_ssml_ph(corpus):
    book = read_book(corpus(*GEORGIA))
    (lexicon,) = book.lexicons
    assert (lexicon.source, lexicon.language, lexicon.alphabet, lexicon.lexemes) == (
        "EPUB/lexicon/en.pls",
        "en",
        "ipa",
        71,
    )
    assert not any("not applied" in w for w in book.warnings)
    assert sum(len(b.phonemes) for ch in book.chapters for b in ch.blocks) == 102


@pytest.mark.corpus
def test_espeak_says_what_it_cannot_honour(corpus, tmp_path):
    book = read_book(corpus(*GEORGIA))
    with make_engine("espeak", LocalOptions()) as engine:
        notes = engine.pronounce(book)
    assert notes == [
        (
            "pronunciation lexicon EPUB/lexicon/en.pls (71 entries) is not applied by "
            "espeak-ng (the local engine)"
        ),
        (
            "102 word(s) with their own pronunciation (ssml:ph) are read as written by "
            "espeak-ng (the local engine)"
        ),
    ]
    r = CliRunner().invoke(cli, ["inspect", str(corpus(*GEORGIA))])
    assert r.exit_code == 0
    assert "71 entries) is not applied by espeak-ng" in r.output
    assert "102 word(s)" in r.output


@pytest.mark.aws
@pytest.mark.corpus
def test_georgia_through_polly_uploads_its_lexicon_once_and_sends_phonemes(
    corpus, make_polly_emulator, moto_server, s3_bucket, tmp_path
):
    book = read_book(corpus(*GEORGIA))
    emu = make_polly_emulator(audio="silence")
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    options = PollyOptions(voice="Joanna", bucket=s3_bucket, polly_engine="neural", mode="async")
    opts = ConvertOptions(engine="polly", engine_options=options, voice="Joanna")

    def engine() -> PollyEngine:
        return PollyEngine(
            options,
            polly=session.client("polly", endpoint_url=emu.url, config=polly_client_config()),
            s3=session.client("s3", endpoint_url=moto_server),
        )

    name = book_lexicon_name(book.lexicons[0].content, "Joanna")
    store = StateStore(tmp_path / "state")
    try:
        with engine() as eng:
            chunks = plan_chunks(book, eng, opts.render)
            synthesize(book, opts, store=store, engine=eng, chunks=chunks)
        # another run's checks with a fresh engine find the lexicon there: no upload
        with engine() as eng:
            eng.pronounce(book)
            eng.preflight()
    finally:
        store.close()
    assert emu.lexicon_uploads == [name]
    lexicons = emu.emulator.get_lexicon({"Name": name})
    assert lexicons["LexiconAttributes"]["LanguageCode"] == "en-US"
    assert lexicons["LexiconAttributes"]["LexemesCount"] == 71
    tasks = emu.tasks
    assert len(tasks) == len({c.sha256 for c in chunks})
    assert all(t.status == "completed" and t.lexicon_names == (name,) for t in tasks)
    assert all(t.voice_id == "Joanna" for t in tasks)
    sent = {hashlib.sha256(c.ssml.encode()).hexdigest() for c in chunks}
    assert {t.text_sha256 for t in tasks} == sent
    assert sum(c.ssml.count("<phoneme ") for c in chunks) == 102
