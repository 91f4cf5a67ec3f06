"""The stitch with and without a delivery profile's normalisation: time and memory.

The same pieces (real espeak-ng speech, as in ``bench_stitch``) are stitched to M4B
with ``profile=None`` (the audio as the engine made it) and with the default profile
(each chapter measured by ffmpeg's ebur128/astats, then one gain per chapter and a
limiter in the encode), alternately, twice each; the faster run of each counts. The
ratio is normalised time over plain time (goal: within 1.3x); on a shared machine the
wall times swing with the other load, so the CPU seconds of each run (our process and
its ffmpeg children) are given too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ._util import measure, work_dir
from .bench_stitch import PIECE_SECONDS, PIECES_PER_CHAPTER, _make_pieces

HOURS = 4
RUNS = 2


def _stitch(pieces: list[Path], out: Path, profile: str | None) -> dict:
    chapters = [
        [str(p) for p in pieces[i : i + PIECES_PER_CHAPTER]]
        for i in range(0, len(pieces), PIECES_PER_CHAPTER)
    ]
    code = f"""
from pathlib import Path
from audiobook.config import PROFILES
from audiobook.model import Book, Chapter
from audiobook.stitch import ChapterAudio, stitch
chapters = {chapters!r}
book = Book(title="Bench", authors=("Bench",), language="en",
            chapters=tuple(Chapter(f"Chapter {{i+1}}") for i in range(len(chapters))))
profile = PROFILES[{profile!r}] if {profile!r} else None
res = stitch(book, [ChapterAudio(f"Chapter {{i+1}}", tuple(Path(p) for p in c))
                    for i, c in enumerate(chapters)], Path({str(out)!r}), profile=profile)
import resource
cpu = 0.0
for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
    u = resource.getrusage(who)
    cpu += u.ru_utime + u.ru_stime
RESULT = cpu
"""
    return measure(code)


def run() -> dict:
    folder = work_dir("loudness")
    plain: list[dict] = []
    normal: list[dict] = []
    try:
        pieces = _make_pieces(folder, HOURS)
        for _ in range(RUNS):
            plain.append(_stitch(pieces, folder / "plain.m4b", None))
            normal.append(_stitch(pieces, folder / "normal.m4b", "default"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    p = min(plain, key=lambda r: r["wall"])
    n = min(normal, key=lambda r: r["wall"])
    p_cpu = min(r["result"] for r in plain)
    n_cpu = min(r["result"] for r in normal)
    audio_s = len(pieces) * PIECE_SECONDS
    ratio = n["wall"] / p["wall"]
    return {
        "name": "loudness",
        "figures": {
            "book hours": HOURS,
            "plain stitch: wall s": round(p["wall"], 2),
            "normalised stitch: wall s": round(n["wall"], 2),
            "normalised: realtime factor": round(audio_s / n["wall"], 1),
            "plain stitch: CPU s (python + ffmpeg)": round(p_cpu, 2),
            "normalised stitch: CPU s (python + ffmpeg)": round(n_cpu, 2),
            "plain: peak RSS MB (python)": round(p["self_mb"], 1),
            "normalised: peak RSS MB (python)": round(n["self_mb"], 1),
            "normalised: peak RSS MB (largest ffmpeg)": round(n["children_mb"], 1),
        },
        "ratios": {
            "normalised time / plain time (goal <= 1.3)": ratio,
            "normalised CPU / plain CPU (the same, less the other load)": n_cpu / p_cpu,
            "normalised RSS / plain RSS (flat = 1)": n["self_mb"] / p["self_mb"],
        },
        "notes": f"normalisation within 1.3x of the plain stitch: {'yes' if ratio <= 1.3 else 'NO'}",
    }
