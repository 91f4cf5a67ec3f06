"""Timings: where each sentence and word starts in a piece's audio, and where it sits in
the text. Pure.

Every engine that knows its timings hands them over the same way: ``fetch_marks``
writes speech marks as JSON lines, Amazon Polly's format, one object per line:

    {"time": 1250, "type": "sentence", "start": 31, "end": 77, "value": "It was late."}

``time`` is in ms from the start of the piece's audio, ``start``/``end`` are byte
offsets (UTF-8) into the piece's SSML, ``value`` is the text. Polly writes these
itself; the local engine makes them from espeak-ng's word and sentence events
(``espeak_marks``); another engine (Piper's sentence timings, say) writes the same
lines and declares ``Capabilities.marks``. The marks are cached beside the audio.

What the outputs need from them (``chapter_timings``): each chapter's sentences in
order, with their start on the chapter's timeline (the piece's start plus the mark's
time) and their text as spoken, and each sentence's words.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from .engines.espeak import EVENT_SENTENCE, EVENT_WORD, Event

_TAG = re.compile(r"<[^>]*>?")
_WORDY = re.compile(r"\w")


def plain(fragment: str) -> str:
    """SSML text as plain text: tags out, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(_TAG.sub(" ", fragment)).split())


def _byte_offsets(text: str) -> list[int]:
    """b[i] = UTF-8 byte offset of character i of ``text`` (and b[len] = its length)."""
    return [0, *accumulate(len(c.encode("utf-8")) for c in text)]


def espeak_marks(
    ssml: str, inserted: Sequence[int], events: Sequence[Event], sample_rate: int
) -> str:
    """Speech marks (JSON lines) for ``ssml`` from espeak-ng's events on the text it was
    given: ``ssml`` with a newline inserted before each original position in
    ``inserted`` (sorted), so event positions are mapped back to ``ssml`` first."""

    def original(q: int) -> int:
        shift = 0
        for k, pos in enumerate(inserted):
            if pos + k < q:
                shift += 1
            else:
                break
        return max(0, min(len(ssml), q - shift))

    def opening(q: int) -> int:  # back over an opening quote or bracket: "“How
        while q > 0 and not ssml[q - 1].isspace() and ssml[q - 1] != ">":
            q -= 1
        return q

    b = _byte_offsets(ssml)
    sentences = [opening(original(e.position)) for e in events if e.kind == EVENT_SENTENCE]
    lines: list[str] = []
    si = 0
    for e in events:
        t = round(e.sample * 1000 / sample_rate)
        start = original(e.position)
        if e.kind == EVENT_SENTENCE:
            start = sentences[si]
            si += 1
            end = sentences[si] if si < len(sentences) else len(ssml)
            value = plain(ssml[start:end])
            end = start + len(ssml[start:end].rstrip())
            if not value:
                continue
            kind = "sentence"
        elif e.kind == EVENT_WORD:
            end = original(e.position + e.length)
            value = html.unescape(ssml[start:end])
            if not _WORDY.search(value) or "<" in value:
                continue
            kind = "word"
        else:
            continue
        mark = {"time": t, "type": kind, "start": b[start], "end": b[end], "value": value}
        lines.append(json.dumps(mark, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def parse_marks(jsonl: str) -> list[dict[str, object]]:
    """The marks of a JSON-lines text (lines that are not marks are skipped)."""
    out = []
    for line in jsonl.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "time" in obj and "type" in obj:
            out.append(obj)
    return out


@dataclass(frozen=True)
class Word:
    start: float  # seconds on the chapter's timeline
    text: str


@dataclass(frozen=True)
class Sentence:
    """One spoken sentence: where it starts on its chapter's timeline (seconds), its
    text as spoken (plain), and its words (when the engine gave word marks)."""

    start: float
    text: str
    words: tuple[Word, ...] = ()


def chapter_timings(pieces: Sequence[tuple[float, str]]) -> list[Sentence]:
    """A chapter's sentences from its pieces' marks: ``(offset_s, marks_jsonl)`` per
    piece, in order, ``offset_s`` where the piece starts in the chapter. Sentences in
    time order; words attached to the sentence whose bytes hold them."""
    out: list[Sentence] = []
    for offset, jsonl in pieces:
        marks = parse_marks(jsonl)
        words = [m for m in marks if m.get("type") == "word"]
        for m in marks:
            if m.get("type") != "sentence":
                continue
            s0, s1 = _int(m.get("start")), _int(m.get("end"))
            inside = tuple(
                Word(offset + _int(w["time"]) / 1000, str(w.get("value", "")))
                for w in words
                if s0 <= _int(w.get("start")) < s1
            )
            text = plain(str(m.get("value", "")))
            if text:
                out.append(Sentence(offset + _int(m["time"]) / 1000, text, inside))
    out.sort(key=lambda s: s.start)
    return out


def _int(v: object) -> int:
    try:
        return int(float(v)) if isinstance(v, (int, float, str)) else 0
    except ValueError:
        return 0
