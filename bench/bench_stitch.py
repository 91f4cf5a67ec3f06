"""Stitching a 20-hour book: time and peak memory.

Contenders, on the same files in the same run:
* ours: ``audiobook.stitch.stitch`` to M4B (chapter marks, tags, parallel AAC);
* raw ffmpeg: one ``ffmpeg -f concat -i list`` of the same pieces with the same AAC
  encoder settings (no chapters, one process);
* naive pydub: load every piece, add them up, export (what many converters do), run on
  a 1-hour book because it cannot survive 20 hours on a small machine; ours is run on the
  same 1-hour book for the memory ratio.

The pieces are one 3-minute stretch of real espeak-ng speech, hard-linked 400 times
(20 h), so the disk holds it once.
"""

from __future__ import annotations

import os
import shutil
import wave
from pathlib import Path

from ._util import measure, work_dir

PIECE_SECONDS = 180
HOURS = 20
SMALL_HOURS = 1
PIECES_PER_CHAPTER = 10


def _make_pieces(folder: Path, hours: float) -> list[Path]:
    from audiobook.engines import espeak

    seed = folder / "seed.wav"
    if not seed.exists():
        text = (
            "It was the best of times, it was the worst of times, it was the age of "
            "wisdom, it was the age of foolishness. "
        ) * 4
        pcm = b""
        rate = 22050
        while len(pcm) < PIECE_SECONDS * rate * 2:
            chunk, rate = espeak.synthesize(text, "en", ssml=False)
            pcm += chunk
        pcm = pcm[: PIECE_SECONDS * rate * 2]
        with wave.open(str(seed), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm)
    n = int(hours * 3600 / PIECE_SECONDS)
    pieces = []
    for i in range(n):
        p = folder / f"piece{i:04d}.wav"
        if not p.exists():
            os.link(seed, p)
        pieces.append(p)
    return pieces


def _ours(pieces: list[Path], out: Path) -> dict:
    chapters = [
        [str(p) for p in pieces[i : i + PIECES_PER_CHAPTER]]
        for i in range(0, len(pieces), PIECES_PER_CHAPTER)
    ]
    code = f"""
from pathlib import Path
from audiobook.model import Book, Chapter
from audiobook.stitch import ChapterAudio, stitch
chapters = {chapters!r}
book = Book(title="Bench", authors=("Bench",), language="en",
            chapters=tuple(Chapter(f"Chapter {{i+1}}") for i in range(len(chapters))))
res = stitch(book, [ChapterAudio(f"Chapter {{i+1}}", tuple(Path(p) for p in c))
                    for i, c in enumerate(chapters)], Path({str(out)!r}))
RESULT = res.duration
"""
    return measure(code)


def _raw_ffmpeg(pieces: list[Path], out: Path) -> dict:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in pieces))
    code = f"""
import subprocess, imageio_ffmpeg
from audiobook.stitch import aac_args
subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y",
                "-f", "concat", "-safe", "0", "-i", {str(listing)!r},
                *aac_args("64k"), {str(out)!r}], check=True)
"""
    return measure(code)


def _pydub(pieces: list[Path], out: Path) -> dict:
    code = f"""
import imageio_ffmpeg
from pydub import AudioSegment
AudioSegment.converter = imageio_ffmpeg.get_ffmpeg_exe()
book = AudioSegment.empty()
for p in {[str(p) for p in pieces]!r}:
    book += AudioSegment.from_wav(p)
book.export({str(out)!r}, format="mp4", codec="aac", bitrate="64k")
"""
    return measure(code)


def run() -> dict:
    folder = work_dir("stitch")
    try:
        pieces = _make_pieces(folder, HOURS)
        small = pieces[: int(SMALL_HOURS * 3600 / PIECE_SECONDS)]
        ours = _ours(pieces, folder / "ours.m4b")
        raw = _raw_ffmpeg(pieces, folder / "raw.m4a")
        ours_small = _ours(small, folder / "ours-small.m4b")
        naive_small = _pydub(small, folder / "naive-small.m4a")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    audio_s = len(pieces) * PIECE_SECONDS
    figures = {
        "book hours": HOURS,
        "ours: wall s": round(ours["wall"], 2),
        "ours: peak RSS MB (python)": round(ours["self_mb"], 1),
        "ours: peak RSS MB (largest ffmpeg)": round(ours["children_mb"], 1),
        "ours: realtime factor": round(audio_s / ours["wall"], 1),
        "raw ffmpeg concat: wall s": round(raw["wall"], 2),
        "raw ffmpeg concat: peak RSS MB": round(raw["children_mb"], 1),
        f"ours {SMALL_HOURS} h: peak RSS MB (python)": round(ours_small["self_mb"], 1),
        f"naive pydub {SMALL_HOURS} h: wall s": round(naive_small["wall"], 2),
        f"naive pydub {SMALL_HOURS} h: peak RSS MB": round(naive_small["self_mb"], 1),
    }
    ratios = {
        "ours time / raw ffmpeg time (goal <= 1.2)": ours["wall"] / raw["wall"],
        f"ours RSS 20 h / ours RSS {SMALL_HOURS} h (flat = 1)": ours["self_mb"]
        / ours_small["self_mb"],
        f"naive pydub RSS / ours RSS at {SMALL_HOURS} h": naive_small["self_mb"]
        / ours_small["self_mb"],
    }
    return {
        "name": "stitch",
        "figures": figures,
        "ratios": ratios,
        "notes": "peak RSS of our Python process stays under 150 MB goal: "
        f"{'yes' if ours['self_mb'] < 150 else 'NO'}",
    }
