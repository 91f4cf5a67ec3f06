"""Captions: WebVTT from speech marks, and the timestamp and escaping rules of WebVTT,
in one place for every output (the Polly path's per-chapter captions, podcast
transcripts).

    marks_to_webvtt([(offset_s, marks_jsonl), ...])  -> str      (pure)
    write_webvtt(dest, [(offset_s, marks_path), ...]) -> Path    (atomic)
    write_captions(pieces, marks, outputs, out, fmt)  -> [Path]  (a book's chapters)
    vtt_time(3725.5) == "01:02:05.500"
    write_timed_captions(...)  -> [Path]   (``--captions vtt|srt``: any engine's timings)
    render_cues(cues, "srt")   -> str      (pure)
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import EngineError
from .files import write_text_atomic
from .timings import Sentence, chapter_timings, parse_marks


def vtt_time(seconds: float) -> str:
    """A WebVTT timestamp, ``HH:MM:SS.mmm``."""
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def vtt_escape(text: str) -> str:
    """Text made safe for a WebVTT cue."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clean_text(fragment: str) -> str:
    """Speech-mark text (a substring of the SSML) as plain text escaped for WebVTT."""
    text = re.sub(r"<[^>]*>?", " ", fragment)
    text = html.unescape(text)
    text = " ".join(text.split())
    return vtt_escape(text)


def marks_to_webvtt(chunks_marks: Sequence[tuple[float, str]]) -> str:
    """WebVTT captions for one chapter from its chunks' speech marks.

    ``chunks_marks``: one ``(offset_s, marks_jsonl)`` per chunk, in order, where
    ``offset_s`` is where that chunk's audio starts in the chapter (or the whole file) and
    ``marks_jsonl`` is what ``fetch_marks`` wrote. One cue per sentence mark, from its
    time to the next sentence's (the last one lasts until its last word plus a little);
    when word marks are present, each word after the first gets an inline WebVTT
    timestamp (karaoke style). Pure; no I/O.
    """
    sentences: list[tuple[float, dict[str, Any], list[dict[str, Any]]]] = []
    for offset, jsonl in chunks_marks:
        marks: list[dict[str, Any]] = parse_marks(jsonl)
        words = [m for m in marks if m.get("type") == "word"]
        for m in marks:
            if m.get("type") != "sentence":
                continue
            s0, s1 = int(m.get("start", 0)), int(m.get("end", 0))
            inside = [w for w in words if s0 <= int(w.get("start", -1)) < s1]
            sentences.append((offset + float(m["time"]) / 1000.0, m, inside))
        if not any(m.get("type") == "sentence" for m in marks) and words:
            # Word marks only: one cue per chunk.
            fake = {"time": words[0]["time"], "start": words[0].get("start", 0)}
            fake["end"] = words[-1].get("end", 0)
            fake["value"] = " ".join(str(w.get("value", "")) for w in words)
            sentences.append((offset + float(words[0]["time"]) / 1000.0, fake, []))
    cues = ["WEBVTT", ""]
    n = 0
    for i, (start, mark, words) in enumerate(sentences):
        text_value = str(mark.get("value", ""))
        if i + 1 < len(sentences):
            end = sentences[i + 1][0]
        else:
            last = max((float(w["time"]) / 1000.0 for w in words), default=0.0)
            end = start + max(last - (float(mark["time"]) / 1000.0) + 0.8, 1.0)
        if end <= start:
            end = start + 0.5
        body = _cue_text(text_value, mark, words, start - float(mark["time"]) / 1000.0, start, end)
        if not body:
            continue
        n += 1
        cues += [str(n), f"{vtt_time(start)} --> {vtt_time(end)}", body, ""]
    return "\n".join(cues) + ("\n" if n == 0 else "")


def write_webvtt(
    dest: str | os.PathLike[str], chunks_marks: Sequence[tuple[float, str | os.PathLike[str]]]
) -> Path:
    """Write a chapter's captions to ``dest`` (temp file, then os.replace).

    ``chunks_marks``: ``(offset_s, marks)`` per chunk in order, where ``marks`` is the
    path of a file ``fetch_marks`` wrote (or its JSON-lines text). The pipeline's way:
    fetch marks beside each cached piece, then, with each piece's start time in the
    chapter from the stitcher, write ``<output stem>.<chapter number>.vtt``."""
    items: list[tuple[float, str]] = []
    for offset, marks in chunks_marks:
        if isinstance(marks, str) and ("\n" in marks or marks.lstrip().startswith("{")):
            items.append((offset, marks))
        else:
            items.append((offset, Path(marks).read_text(encoding="utf-8")))
    out = Path(dest)
    write_text_atomic(out, marks_to_webvtt(items))
    return out


def _cue_text(
    value: str,
    mark: Mapping[str, Any],
    words: Sequence[Mapping[str, Any]],
    offset: float,
    start: float,
    end: float,
) -> str:
    if not words:
        return _clean_text(value)
    raw = value.encode("utf-8")
    base = int(mark.get("start", 0))
    parts: list[str] = []
    cut = 0
    for w in words:
        pos = int(w.get("start", base)) - base
        t = offset + float(w["time"]) / 1000.0
        if pos <= cut or pos >= len(raw) or not (start < t < end):
            continue
        parts.append(_clean_text(raw[cut:pos].decode("utf-8", "replace")))
        parts.append(f"<{vtt_time(t)}>")
        cut = pos
    parts.append(_clean_text(raw[cut:].decode("utf-8", "replace")))
    out = ""
    for p in parts:
        if p.startswith("<") and p.endswith(">") and ":" in p:
            out = out.rstrip() + " " + p
        elif p:
            out = (out + " " + p) if out and not out.endswith(">") else out + p
    return out.strip()


def piece_duration(path: Path) -> float:
    """Seconds of audio in a cached piece (WAV header, else mutagen)."""
    from .audio import read_wav_info

    info = read_wav_info(path)
    if info is not None:
        return info.duration
    import mutagen

    f = mutagen.File(path)
    length = getattr(getattr(f, "info", None), "length", None) if f is not None else None
    if length is None:
        raise EngineError(f"{path}: cannot tell the length of this audio")
    return float(length)


def write_captions(
    pieces: Sequence[Sequence[Path]],
    marks: Sequence[Sequence[Path]] | None,
    outputs: list[Path],
    out: Path,
    fmt: str,
    lead_in: float = 0.0,
) -> list[Path]:
    """WebVTT captions per chapter from the speech marks of each chapter's pieces,
    beside the audio: ``<out stem>.<NN>.vtt`` (or each chapter file's name with
    ``.vtt``). Nothing without marks. ``lead_in``: seconds of room tone before each
    chapter's first piece (a delivery profile's)."""
    if marks is None:
        return []
    written = []
    n = len(pieces)
    width = max(2, len(str(n)))
    for i, (chapter_pieces, chapter_marks) in enumerate(zip(pieces, marks)):
        if fmt == "chapters" and len(outputs) == n:
            dest = outputs[i].with_suffix(".vtt")
        else:
            dest = out.with_name(f"{out.stem}.{i + 1:0{width}d}.vtt")
        offsets, t = [], lead_in
        for p in chapter_pieces:
            offsets.append(t)
            t += piece_duration(p)
        written.append(write_webvtt(dest, list(zip(offsets, chapter_marks))))
    return written


def srt_time(seconds: float) -> str:
    """A SubRip timestamp, ``HH:MM:SS,mmm``."""
    return vtt_time(seconds).replace(".", ",")


Cue = tuple[float, float, str]


def sentence_cues(sentences: Sequence[Sentence], offset: float, end: float) -> list[Cue]:
    """One cue per spoken sentence, from its start to the next one's (the last to
    ``end``), shifted by ``offset`` (where the chapter starts in the file)."""
    cues: list[Cue] = []
    for i, s in enumerate(sentences):
        stop = sentences[i + 1].start if i + 1 < len(sentences) else max(end - offset, s.start)
        if stop > s.start:
            cues.append((offset + s.start, offset + stop, s.text))
    return cues


def render_cues(cues: Sequence[Cue], kind: str) -> str:
    """WebVTT (``kind="vtt"``) or SubRip (``"srt"``) text of ``cues``."""
    if kind == "srt":
        blocks = [
            f"{n}\n{srt_time(a)} --> {srt_time(b)}\n{' '.join(t.split())}\n"
            for n, (a, b, t) in enumerate(cues, 1)
        ]
        return "\n".join(blocks)
    lines = ["WEBVTT", ""]
    for n, (a, b, t) in enumerate(cues, 1):
        lines += [str(n), f"{vtt_time(a)} --> {vtt_time(b)}", vtt_escape(" ".join(t.split())), ""]
    return "\n".join(lines)


def chapter_sentences(
    pieces: Sequence[Path], marks: Sequence[Path], starts: Sequence[float] | None = None
) -> list[Sentence]:
    """A chapter's spoken sentences, on the chapter's timeline, from its pieces and their
    marks: each piece starts at ``starts`` (the stitch's), else where the one before
    ends."""
    offsets: list[float] = []
    if starts is not None and len(starts) == len(pieces):
        offsets = list(starts)
    else:
        t = 0.0
        for p in pieces:
            offsets.append(t)
            t += piece_duration(p)
    texts = [Path(m).read_text(encoding="utf-8") for m in marks]
    return chapter_timings(list(zip(offsets, texts)))


def write_timed_captions(
    pieces: Sequence[Sequence[Path]],
    marks: Sequence[Sequence[Path]],
    outputs: list[Path],
    out: Path,
    fmt: str,
    kind: str,
    chapter_times: Sequence[tuple[str, float, float]],
    piece_starts: Sequence[Sequence[float]] = (),
) -> list[Path]:
    """``--captions vtt|srt``: a caption file per chapter file (``chapters``: beside
    each; ``epub``: ``<stem>.<NN>.<kind>`` for each chapter's audio), else one for the
    book, ``<stem>.<kind>``, on the book's timeline (chapter starts as in its chapter
    marks, pieces where the stitch put them: ``piece_starts``)."""
    per_chapter = fmt in ("chapters", "epub")
    n = len(pieces)
    width = max(2, len(str(n)))
    written: list[Path] = []
    book_cues: list[Cue] = []
    for i, (chapter_pieces, chapter_marks) in enumerate(zip(pieces, marks)):
        _title, start, end = chapter_times[i]
        starts = piece_starts[i] if i < len(piece_starts) else None
        sentences = chapter_sentences(chapter_pieces, chapter_marks, starts)
        if not per_chapter:
            book_cues += sentence_cues(sentences, start, end)
            continue
        if fmt == "chapters" and len(outputs) == n:
            dest = outputs[i].with_suffix(f".{kind}")
        else:
            dest = out.with_name(f"{out.stem}.{i + 1:0{width}d}.{kind}")
        write_text_atomic(dest, render_cues(sentence_cues(sentences, 0.0, end - start), kind))
        written.append(dest)
    if not per_chapter:
        dest = out.with_suffix(f".{kind}")
        write_text_atomic(dest, render_cues(book_cues, kind))
        written.append(dest)
    return written


def caption_kind(requested: str, marks: bool, included: bool) -> str:
    """What captions a run writes: the one asked for, else WebVTT where the engine's
    marks were paid for (asked for), else none."""
    return requested or ("vtt" if marks and not included else "")


def write_run_captions(
    pieces: Sequence[Sequence[Path]],
    marks: Sequence[Sequence[Path]] | None,
    outputs: list[Path],
    out: Path,
    fmt: str,
    requested: str,
    chapter_times: Sequence[tuple[str, float, float]],
    piece_starts: Sequence[Sequence[float]] = (),
    lead_in: float = 0.0,
) -> list[Path]:
    """A run's captions: ``requested`` ("vtt"/"srt") from any engine's timings, else
    the paid-for marks' WebVTT per chapter (``write_captions``; ``lead_in``: seconds of
    room tone before each chapter, which ``piece_starts`` already count)."""
    if marks is None:
        return []
    if requested:
        return write_timed_captions(
            pieces, marks, outputs, out, fmt, requested, chapter_times, piece_starts
        )
    return write_captions(pieces, marks, outputs, out, fmt, lead_in)
