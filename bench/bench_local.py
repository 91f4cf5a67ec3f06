"""Local engine (espeak-ng) on a whole novel, and the cache on a second run.

* synthesis alone: audio seconds per wall second with one worker process, then one per
  core (the same chunks, written to a scratch folder);
* end to end: ``audiobook convert`` of the EPUB into an M4B with a fresh state store,
  as a user runs it (ingest, render, chunk, synthesize, stitch), as a multiple of real
  time (goal: 400x on 2 cores);
* cache: the same command again: it must start no synthesis; its time as a fraction of
  the first run's (goal: under 5%).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._util import CORPUS

NOVEL = CORPUS / "epub" / "gutenberg-1661-adventures-of-sherlock-holmes.epub"


def _synthesis(book, workers: int, scratch: Path) -> tuple[float, float]:
    from audiobook.audio import read_wav_info
    from audiobook.chunk import chunk_book
    from audiobook.engines.local import LocalEngine
    from audiobook.engines.options import LocalOptions

    engine = LocalEngine(LocalOptions(language=book.language, workers=workers))
    chunks = chunk_book(book, engine.limits)
    try:
        t0 = time.perf_counter()
        refs = [engine.submit(c, f"k{i}") for i, c in enumerate(chunks)]
        audio = 0.0
        for i, ref in enumerate(refs):
            dest = scratch / f"{workers}-{i}.wav"
            engine.fetch(ref, dest)  # fetch waits for the task
            info = read_wav_info(dest)
            audio += info.duration if info else 0.0
            dest.unlink()
        wall = time.perf_counter() - t0
    finally:
        engine.close()
    return audio, wall


def _cli(src: Path, out: Path, state: Path) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "audiobook",
            "convert",
            str(src),
            "-o",
            str(out),
            "--state-dir",
            str(state),
            "--engine",
            "espeak",
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"convert failed: {proc.stderr.strip().splitlines()[-1:]}")
    return wall, proc


def run() -> dict:
    if not NOVEL.exists():
        return {"name": "local engine", "error": f"corpus novel not found: {NOVEL}"}
    import av

    from audiobook.ingest import read_book

    book = read_book(NOVEL)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        audio1, wall1 = _synthesis(book, 1, scratch)
        audion, walln = _synthesis(book, cores, scratch)
        out = scratch / "novel.m4b"
        first, _ = _cli(NOVEL, out, scratch / "state")
        with av.open(str(out)) as c:
            duration = float(c.duration) / 1_000_000
            chapters = len(c.chapters())
        second, proc2 = _cli(NOVEL, out, scratch / "state")
    return {
        "name": "local engine",
        "figures": {
            "book": NOVEL.name,
            "characters": sum(len(ch.text) for ch in book.chapters),
            "audio hours": round(duration / 3600, 2),
            "chapters in the M4B": chapters,
            "synthesis, 1 process: audio s per wall s": round(audio1 / wall1, 1),
            f"synthesis, {cores} processes: audio s per wall s": round(audion / walln, 1),
            "end to end EPUB -> M4B: wall s": round(first, 1),
            "end to end: audio s per wall s (goal >= 400)": round(duration / first, 1),
            "second run (cached): wall s": round(second, 2),
            "second run output": proc2.stdout.strip().splitlines()[-1].split(": ", 1)[-1]
            if proc2.stdout.strip()
            else "",
        },
        "ratios": {
            f"synthesis speed-up, {cores} processes / 1": (audion / walln) / (audio1 / wall1),
            "second run / first run (goal < 0.05)": second / first,
        },
    }
