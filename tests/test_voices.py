"""Voices: --voice-map (a voice per chapter) and --dialogue-voice (quoted speech).

Quoted passages are cut out of each chapter's SSML into pieces of their own that carry
the second voice; the emulator records the voice of each task, and the local engine's
pieces are the samples espeak-ng makes with their voice. The quotation conventions of
six languages are followed, and a quotation over several paragraphs stays one voice.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import wave
import xml.etree.ElementTree as ET

import boto3
import pytest

from audiobook.casting import Casting, read_voice_map, resolve_voice_map, split_dialogue
from audiobook.engines import make_engine
from audiobook.engines.local import prepare_ssml
from audiobook.engines.options import LocalOptions, PollyOptions
from audiobook.engines.polly import PollyEngine, polly_client_config
from audiobook.errors import ConfigError
from audiobook.model import Block, Book, Chapter
from audiobook.options import ConvertOptions
from audiobook.ssml import render_chapter, spoken_text
from audiobook.state import StateStore
from audiobook.synthesis import plan_chunks, synthesize

# (language, a paragraph or two, the speech and narration in order as (quoted, text))
DIALOGUE = {
    "en": (
        ["He said, “Come here. Now.” She left.", "“One paragraph.", "“And another.” Done."],
        [
            (False, "He said,"),
            (True, "“Come here. Now.”"),
            (False, "She left."),
            (True, "“One paragraph. “And another.”"),
            (False, "Done."),
        ],
    ),
    "fr": (
        ["Il dit : « Bonjour ! » et partit."],
        [(False, "Il dit :"), (True, "« Bonjour ! »"), (False, "et partit.")],
    ),
    "de": (
        ["Er sagte: „Hallo“ und »Tschüss« dann."],
        [
            (False, "Er sagte:"),
            (True, "„Hallo“"),
            (False, "und"),
            (True, "»Tschüss«"),
            (False, "dann."),
        ],
    ),
    "ja": (
        ["彼は「こんにちは」と言った。"],
        [(False, "彼は"), (True, "「こんにちは」"), (False, "と言った。")],
    ),
    "es": (
        ["—¿Vienes? —preguntó ella—. Vamos ya.", "Y se fueron."],
        [
            (True, "—¿Vienes?"),
            (False, "—preguntó ella"),
            (True, "—. Vamos ya."),
            (False, "Y se fueron."),
        ],
    ),
    "ru": (
        ["— Привет, — сказал он. — Как дела?"],
        [(True, "— Привет,"), (False, "— сказал он."), (True, "— Как дела?")],
    ),
}


def _book(lang: str, paragraphs: list[str]) -> Book:
    blocks = tuple(Block("paragraph", p) for p in paragraphs)
    return Book(title="Talk", language=lang, chapters=(Chapter("", blocks=blocks),))


@pytest.mark.parametrize("lang", sorted(DIALOGUE))
def test_quoted_speech_is_cut_out_in_each_language(lang):
    paragraphs, expected = DIALOGUE[lang]
    ssml = render_chapter(_book(lang, paragraphs), 0)
    segments = split_dialogue(ssml, lang)
    for _quoted, doc in segments:
        assert ET.fromstring(doc).tag == "speak"  # each one well-formed
    got = [(q, " ".join(spoken_text(doc).split())) for q, doc in segments]
    assert got == expected


def test_straight_quotes_and_an_unclosed_quote():
    ssml = render_chapter(
        _book("en", ['He said "hi" then "bye.', "Narration after, not a quote."]), 0
    )
    got = [(q, " ".join(spoken_text(d).split())) for q, d in split_dialogue(ssml, "en")]
    assert got == [
        (False, "He said"),
        (True, '"hi"'),
        (False, "then"),
        (True, '"bye.'),
        (False, "Narration after, not a quote."),
    ]


def test_voice_map_by_number_and_title(tmp_path):
    book = Book(
        title="B",
        chapters=(Chapter("Prologue"), Chapter("One"), Chapter("Epilogue")),
    )
    vm = tmp_path / "voices.txt"
    vm.write_text("# who reads what\n1\tMatthew\nEpilogue  Amy\n", encoding="utf-8")
    pairs = read_voice_map(vm)
    assert pairs == (("1", "Matthew"), ("Epilogue", "Amy"))
    assert resolve_voice_map(pairs, book) == {0: "Matthew", 2: "Amy"}
    with pytest.raises(ConfigError, match="no chapter titled 'Nope'"):
        resolve_voice_map((("Nope", "Amy"),), book)
    with pytest.raises(ConfigError, match="chapter 9 \\(the book has 3\\)"):
        resolve_voice_map((("9", "Amy"),), book)
    vm.write_text("1 Matthew\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="voices.txt:1: expected a chapter"):
        read_voice_map(vm)


POLLY_VOICES = {  # standard voices of each language: (narrator, dialogue)
    "en": ("Joanna", "Matthew"),
    "fr": ("Celine", "Mathieu"),
    "de": ("Marlene", "Hans"),
    "ja": ("Mizuki", "Takumi"),
    "es": ("Conchita", "Enrique"),
    "ru": ("Tatyana", "Maxim"),
}


@pytest.mark.aws
def test_emulator_records_the_voice_of_each_piece_in_order(
    make_polly_emulator, moto_server, s3_bucket, tmp_path
):
    emu = make_polly_emulator(audio="silence")
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    for lang, (narrator, speaker) in POLLY_VOICES.items():
        paragraphs, expected = DIALOGUE[lang]
        book = _book(lang, paragraphs)
        options = PollyOptions(
            voice=narrator, bucket=s3_bucket, polly_engine="standard", mode="async"
        )
        opts = ConvertOptions(
            engine="polly", engine_options=options, voice=narrator, dialogue_voice=speaker
        )
        store = StateStore(tmp_path / f"state-{lang}")
        try:
            with PollyEngine(
                options,
                polly=session.client("polly", endpoint_url=emu.url, config=polly_client_config()),
                s3=session.client("s3", endpoint_url=moto_server),
            ) as engine:
                chunks = plan_chunks(book, engine, opts.render, casting=opts.casting(book))
                synthesize(book, opts, store=store, engine=engine, chunks=chunks)
        finally:
            store.close()
        by_text = {t.text_sha256: t for t in emu.tasks}
        voices = [by_text[hashlib.sha256(c.ssml.encode()).hexdigest()].voice_id for c in chunks]
        assert [c.voice or narrator for c in chunks] == voices
        assert voices == [speaker if quoted else narrator for quoted, _t in expected], lang
        assert [c.seq for c in chunks] == list(range(len(chunks)))


def _samples(path) -> bytes:
    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes())


def test_local_pieces_are_read_by_their_voice(tmp_path):
    paragraphs, expected = DIALOGUE["en"]
    book = _book("en", paragraphs)
    opts = ConvertOptions(dialogue_voice="en-gb", voice_map=(("1", "en-us"),))
    store = StateStore(tmp_path / "state")
    try:
        with make_engine("espeak", LocalOptions(workers=1), language="en") as engine:
            chunks = plan_chunks(book, engine, opts.render, casting=opts.casting(book))
            syn = synthesize(book, opts, store=store, engine=engine, chunks=chunks)
    finally:
        store.close()
    assert [c.voice for c in chunks] == ["en-gb" if quoted else "en-us" for quoted, _t in expected]
    # espeak-ng says each piece again, in a fresh process (espeak-ng's state carries
    # from one text to the next: this test process has spoken other texts before),
    # with the piece's voice and with the other voice: the piece is the first
    jobs = []
    for chunk in chunks:
        other = "en-us" if chunk.voice == "en-gb" else "en-gb"
        for voice in (chunk.voice, other):
            jobs.append((prepare_ssml(chunk.ssml), voice, str(tmp_path / f"{voice}-{chunk.seq}")))
    code = (
        "import json, sys\n"
        "from audiobook.engines import espeak\n"
        "for ssml, voice, dest in json.loads(sys.argv[1]):\n"
        "    espeak.synthesize_isolated([(ssml, True)], voice, dest + '.wav')\n"
    )
    subprocess.run([sys.executable, "-c", code, json.dumps(jobs)], check=True)
    for chunk, piece in zip(chunks, syn.pieces[0]):
        other = "en-us" if chunk.voice == "en-gb" else "en-gb"
        said = {v: _samples(tmp_path / f"{v}-{chunk.seq}.wav") for v in (chunk.voice, other)}
        have = _samples(piece)
        assert len(have) == len(said[chunk.voice]), chunk.seq
        assert _same(have, said[chunk.voice]) > 0.95, chunk.seq
        assert _same(have, said[other]) < 0.5, chunk.seq


def _same(a: bytes, b: bytes) -> float:
    """Of the places where ``a`` or ``b`` is not silent, the share where their 16-bit
    samples are within 2 of each other (a missing sample counts as different)."""
    import array

    x, y = array.array("h", a), array.array("h", b)
    loud = same = 0
    for i in range(max(len(x), len(y))):
        p = x[i] if i < len(x) else None
        q = y[i] if i < len(y) else None
        if p is None or q is None:
            loud += 1
        elif max(abs(p), abs(q)) > 100:
            loud += 1
            same += abs(p - q) <= 2
    return same / loud if loud else 1.0


def test_a_voice_the_local_engine_lacks_is_one_line(tmp_path):
    book = _book("en", ["“Hi.”"])
    opts = ConvertOptions(dialogue_voice="no-such-voice")
    with (
        make_engine("espeak", LocalOptions(), language="en") as engine,
        pytest.raises(ConfigError, match="espeak-ng has no voice 'no-such-voice'"),
    ):
        plan_chunks(book, engine, opts.render, casting=opts.casting(book))


def test_casting_without_dialogue_keeps_the_chapter_whole():
    c = Casting({0: "Amy"})
    assert c.voices(0, "<speak><p>“Hi.”</p></speak>") == [("Amy", "<speak><p>“Hi.”</p></speak>")]
    assert c.voices(1, "<speak/>") == [("", "<speak/>")]
