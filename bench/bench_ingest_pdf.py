"""PDF ingestion speed: our whole reading (layout, furniture, chapters) against raw pypdf
``extract_text()`` of the same file, in the same run.

The file is the longest PDF of the shared corpus (sf-geotopo-komprimiert.pdf, 117 pages).
Times are CPU seconds of this process (ingestion is single-threaded, and CPU time is not
disturbed by other work on a shared machine); the best of ``REPEAT`` runs each, taken in
turns so that both see the same conditions.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "pdf"
FILE = "sf-geotopo-komprimiert.pdf"
REPEAT = 3


def _ours(path: Path) -> tuple[int, int]:
    from audiobook.ingest.base import IngestOptions
    from audiobook.ingest.pdf import PdfIngestor

    book = PdfIngestor().read(path, IngestOptions())
    chars = sum(len(b.text) for ch in book.chapters for b in ch.blocks)
    return len(book.chapters), chars


def _raw(path: Path) -> tuple[int, int]:
    from pypdf import PdfReader

    reader = PdfReader(path)
    chars = sum(len(page.extract_text()) for page in reader.pages)
    return len(reader.pages), chars


def _timed(fn, path: Path) -> tuple[float, float, tuple[int, int]]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(path)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def run() -> dict:
    path = CORPUS / FILE
    if not path.exists():
        return {
            "name": "ingest_pdf",
            "figures": {},
            "ratios": {},
            "notes": f"skipped: {path} not found (the shared corpus sits beside the repo)",
        }
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    from pypdf import PdfReader

    pages = len(PdfReader(path).pages)
    ours_cpu = raw_cpu = ours_wall = raw_wall = float("inf")
    ours_out = raw_out = (0, 0)
    for _ in range(REPEAT):
        w, c, raw_out = _timed(_raw, path)
        raw_cpu, raw_wall = min(raw_cpu, c), min(raw_wall, w)
        w, c, ours_out = _timed(_ours, path)
        ours_cpu, ours_wall = min(ours_cpu, c), min(ours_wall, w)
    return {
        "name": "ingest_pdf",
        "figures": {
            "file": FILE,
            "pages": pages,
            "ours: pages per CPU second": round(pages / ours_cpu, 1),
            "raw pypdf extract_text: pages per CPU second": round(pages / raw_cpu, 1),
            "ours: wall seconds (best)": round(ours_wall, 2),
            "raw pypdf: wall seconds (best)": round(raw_wall, 2),
            "ours: chapters": ours_out[0],
            "ours: characters kept": ours_out[1],
            "raw pypdf: characters": raw_out[1],
        },
        "ratios": {
            # above 1: we are slower than raw extraction by this factor
            "ours / raw pypdf CPU time": round(ours_cpu / raw_cpu, 3),
        },
        "notes": "ours adds layout (lines, columns), running heads, footnotes, paragraphs "
        "and outline chapters on top of pypdf's text extraction",
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2, ensure_ascii=False))
