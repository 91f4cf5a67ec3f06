"""EPUB ingestion speed: our reading of every readable corpus EPUB (safe zip, nav/NCX
chapters, recovering XHTML parser, blocks, footnotes) against ebooklib's ``read_epub``
plus BeautifulSoup ``get_text()`` of every document item, the way most converters read
an EPUB (and without chapters), on the same files, in the same run.

Speed is characters of spoken text per CPU second of this process, best of ``REPEAT``
passes, ours and the baseline in turns. Books ebooklib cannot open (a missing
manifest item) or that are not EPUBs are left out of both.
"""

from __future__ import annotations

import time
import warnings

from ._util import CORPUS

REPEAT = 3


def _ours(paths: list) -> int:
    from audiobook.ingest.epub import read_epub

    return sum(len(ch.text) for p in paths for ch in read_epub(p).chapters)


def _baseline(paths: list) -> int:
    import ebooklib
    from bs4 import BeautifulSoup
    from ebooklib import epub

    chars = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in paths:
            book = epub.read_epub(str(p), {"ignore_ncx": False})
            for item in book.get_items_of_type(ebooklib.ITEM_DOCUMENT):
                chars += len(BeautifulSoup(item.get_content(), "lxml").get_text(" ", strip=True))
    return chars


def _cpu(fn, paths: list) -> tuple[float, int]:
    start = time.process_time()
    out = fn(paths)
    return time.process_time() - start, out


def run() -> dict:
    folder = CORPUS / "epub"
    if not folder.is_dir():
        return {"name": "ingest_epub", "error": f"corpus not found: {folder}"}
    paths = []
    for p in sorted(folder.glob("*.epub")):
        try:
            _baseline([p])
            _ours([p])
        except Exception:  # noqa: BLE001 - unreadable by one side: left out of both
            continue
        paths.append(p)
    ours = base = float("inf")
    ours_chars = base_chars = 0
    for _ in range(REPEAT):
        t, base_chars = _cpu(_baseline, paths)
        base = min(base, t)
        t, ours_chars = _cpu(_ours, paths)
        ours = min(ours, t)
    return {
        "name": "ingest_epub",
        "figures": {
            "books": len(paths),
            "ours: characters spoken": ours_chars,
            "ours: characters per CPU second": round(ours_chars / ours),
            "ebooklib + get_text: characters": base_chars,
            "ebooklib + get_text: characters per CPU second": round(base_chars / base),
        },
        "ratios": {"ours / ebooklib+get_text CPU time": ours / base},
        "notes": "the baseline has no chapters, no footnote handling and no size limits",
    }
