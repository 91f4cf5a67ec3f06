"""Timings: espeak-ng's word and sentence events become speech marks that point into
the piece's SSML (through the newlines the local engine inserts, entities and
multi-byte characters), cached beside the audio; captions in WebVTT and SubRip."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from audiobook.audio import read_wav_info
from audiobook.captions import render_cues, sentence_cues
from audiobook.engines.espeak import EVENT_SENTENCE, EVENT_WORD, Event
from audiobook.engines.local import LocalEngine, inserted_positions, prepare_ssml
from audiobook.engines.options import LocalOptions
from audiobook.model import Chunk
from audiobook.timings import Sentence, Word, chapter_timings, espeak_marks, plain

SSML = (
    '<speak><p>Chapter One</p><break time="1s"/><p>Hello world, café &amp; crème. '
    '“How are you?” she said.</p><break time="600ms"/><p>Second &quot;para&quot;. '
    "It’s ‘quoted’.</p></speak>"
)


def _marks(tmp_path: Path, ssml: str) -> tuple[list[dict[str, object]], float]:
    eng = LocalEngine(LocalOptions(workers=1))
    try:
        ref = eng.submit(Chunk.make(0, 0, ssml), "k")
        while eng.poll(ref).status not in ("completed", "failed"):
            time.sleep(0.05)
        eng.fetch_marks(ref, tmp_path / "p.marks")
        eng.fetch(ref, tmp_path / "p.wav")
    finally:
        eng.close()
    info = read_wav_info(tmp_path / "p.wav")
    assert info is not None
    lines = (tmp_path / "p.marks").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines], info.duration


def test_local_engine_marks_point_into_the_ssml(tmp_path):
    marks, duration = _marks(tmp_path, SSML)
    raw = SSML.encode("utf-8")
    sentences = [m for m in marks if m["type"] == "sentence"]
    words = [m for m in marks if m["type"] == "word"]
    assert [m["value"] for m in sentences] == [
        "Chapter One",
        "Hello world, café & crème.",
        "“How are you?”",
        "she said.",
        'Second "para".',
        "It’s ‘quoted’.",
    ]
    for m in sentences:
        assert plain(raw[m["start"] : m["end"]].decode()) == m["value"]
    for m in words:
        assert html.unescape(raw[m["start"] : m["end"]].decode()) == m["value"]
    assert [w["value"] for w in words][:4] == ["Chapter", "One", "Hello", "world"]
    times = [m["time"] for m in sentences]
    assert times == sorted(times) and times[0] > 0
    assert times[-1] / 1000 < duration
    # each word lies inside one sentence and starts no earlier than it
    for w in words:
        owner = [s for s in sentences if s["start"] <= w["start"] < s["end"]]
        assert len(owner) == 1 and owner[0]["time"] <= w["time"]


def test_event_positions_are_mapped_back_through_the_inserted_newlines():
    ssml = "<speak><p>One 'two'.</p><p>Three.</p></speak>"
    prepared = prepare_ssml(ssml)
    ins = inserted_positions(ssml)
    assert prepared.count("\n") == len(ins) > 0
    three = prepared.index("Three")
    events = [
        Event(EVENT_SENTENCE, prepared.index("One"), 0, 100),
        Event(EVENT_WORD, prepared.index("One"), 3, 100),
        Event(EVENT_SENTENCE, three, 0, 22050),
        Event(EVENT_WORD, three, 5, 22050),
    ]
    marks = [json.loads(x) for x in espeak_marks(ssml, ins, events, 22050).splitlines()]
    assert [(m["type"], m["time"], m["value"]) for m in marks] == [
        ("sentence", 5, "One 'two'."),
        ("word", 5, "One"),
        ("sentence", 1000, "Three."),
        ("word", 1000, "Three"),
    ]
    assert ssml[marks[3]["start"] : marks[3]["end"]] == "Three"


def test_chapter_timings_shift_each_piece_by_its_start():
    a = '{"time": 100, "type": "sentence", "start": 0, "end": 9, "value": "A b."}\n'
    a += '{"time": 150, "type": "word", "start": 2, "end": 3, "value": "b"}\n'
    b = '{"time": 0, "type": "sentence", "start": 0, "end": 5, "value": "C &amp; d."}\n'
    got = chapter_timings([(0.0, a), (2.5, b)])
    assert got == [
        Sentence(0.1, "A b.", (Word(0.15, "b"),)),
        Sentence(2.5, "C & d."),
    ]


def test_cues_in_webvtt_and_subrip():
    cues = sentence_cues([Sentence(0.25, "One <b>."), Sentence(61.5, "Two.")], 10.0, 75.0)
    assert cues == [(10.25, 71.5, "One <b>."), (71.5, 75.0, "Two.")]
    assert render_cues(cues, "srt") == (
        "1\n00:00:10,250 --> 00:01:11,500\nOne <b>.\n\n2\n00:01:11,500 --> 00:01:15,000\nTwo.\n"
    )
    assert render_cues(cues, "vtt").startswith(
        "WEBVTT\n\n1\n00:00:10.250 --> 00:01:11.500\nOne &lt;b&gt;.\n"
    )


def test_sentences_are_found_in_the_chapter_text_and_given_ids():
    """Each spoken sentence is found in order by its letters and digits (whatever the
    quotes, entities or spaces); one that is not in the text (a spoken title the book
    does not print) leaves its time to the clip before; the last clip ends with the
    audio."""
    from audiobook.model import Block, Book, Chapter
    from audiobook.readalong import Clip, chapter_document

    book = Book(
        title="T",
        chapters=(
            Chapter(
                "Rain",
                blocks=(Block("paragraph", "\u201cWet,\u201d she said. It  rained & rained."),),
            ),
        ),
    )
    spoken = [
        Sentence(0.2, "Rain"),
        Sentence(1.0, "Chapter the first"),  # not in the text
        Sentence(2.0, '"Wet," she said.'),
        Sentence(3.5, "It rained & rained."),
    ]
    doc = chapter_document(book, 0, spoken, 5.0, words=False)
    assert doc.body == (
        '<section epub:type="bodymatter chapter" id="c1">\n'
        '<h1><span id="c1s1">Rain</span></h1>\n'
        '<p><span id="c1s3">\u201cWet,\u201d she said. </span>'
        '<span id="c1s4">It  rained &amp; rained.</span></p>\n</section>'
    )
    assert doc.clips == (
        Clip("c1s1", 0.2, 2.0),
        Clip("c1s3", 2.0, 3.5),
        Clip("c1s4", 3.5, 5.0),
    )
