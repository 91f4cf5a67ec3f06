"""Article extraction on a public benchmark: ours, bare trafilatura and bare
readability-lxml side by side, scored the same way in the same run.

Pages: ``corpus/html-eval`` (250 pages of trafilatura's evaluation set, each with phrases
of its main text that must be kept and phrases of boilerplate that must not). The
benchmark's own scoring, per phrase over all pages: a ``with`` phrase found is a true
positive, missing a false negative; a ``without`` phrase found is a false positive.
Precision, recall and F1 follow. Whitespace is collapsed on both sides before the
phrase is looked up, for every extractor alike.

"Ours" is every word the listener will hear (``book_words``: chapter titles, blocks, table
summaries and code notes included), not an intermediate text. The baselines are what a
plain user of each library runs: ``trafilatura.extract(page)`` and
``readability.Document(page).summary()``'s text, each given the page's raw bytes.

Also reported: pages where ours is empty or under 10% of trafilatura's length while
trafilatura finds an article (the collapses the extraction must not have), and CPU seconds
for each extractor over all pages.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "html-eval"
_WS = re.compile(r"\s+")


def load() -> dict[str, dict]:
    return json.loads((EVAL / "evaldata.json").read_text("utf-8"))


def norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


def ours(path: Path) -> str:
    from audiobook.errors import InputError
    from audiobook.ingest.base import IngestOptions
    from audiobook.ingest.html import HtmlIngestor, book_words

    try:
        return " ".join(book_words(HtmlIngestor().read(path, IngestOptions())))
    except InputError:
        return ""


def bare_trafilatura(path: Path) -> str:
    import trafilatura

    return trafilatura.extract(path.read_bytes()) or ""


def bare_readability(path: Path) -> str:
    import lxml.html
    from readability import Document

    try:
        summary = Document(path.read_bytes()).summary(html_partial=True)
        return lxml.html.fromstring(summary).text_content()
    except Exception:  # noqa: BLE001 - a bare baseline that fails scores an empty text
        return ""


EXTRACTORS: dict[str, Callable[[Path], str]] = {
    "ours": ours,
    "trafilatura": bare_trafilatura,
    "readability-lxml": bare_readability,
}


def score(data: dict[str, dict], texts: dict[str, str]) -> dict[str, float | int]:
    """The benchmark's scoring over all pages; ``texts`` maps a page's URL to its text."""
    tp = fn = fp = tn = 0
    for url, page in data.items():
        text = norm(texts.get(url, ""))
        for phrase in page["with"]:
            if norm(phrase) in text:
                tp += 1
            else:
                fn += 1
        for phrase in page["without"]:
            if norm(phrase) in text:
                fp += 1
            else:
                tn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
    }


def extract_all(data: dict[str, dict], fn: Callable[[Path], str]) -> tuple[dict[str, str], float]:
    texts = {}
    start = time.process_time()
    for url, page in data.items():
        texts[url] = fn(EVAL / "pages" / page["file"])
    return texts, time.process_time() - start


def collapses(data: dict[str, dict], got: dict[str, str], ref: dict[str, str]) -> list[str]:
    """Pages where ``got`` is empty or under 10% of ``ref``'s length while ``ref`` has text."""
    out = []
    for url, page in data.items():
        r, g = norm(ref.get(url, "")), norm(got.get(url, ""))
        if r and (not g or len(g) < 0.1 * len(r)):
            out.append(page["file"])
    return out


def run() -> dict:
    if not (EVAL / "evaldata.json").exists():
        return {
            "name": "html_extractors",
            "figures": {},
            "ratios": {},
            "notes": f"skipped: {EVAL} not found (the shared corpus sits beside the repo)",
        }
    data = load()
    figures: dict = {"pages": len(data)}
    texts: dict[str, dict[str, str]] = {}
    cpu: dict[str, float] = {}
    for name, fn in EXTRACTORS.items():
        texts[name], cpu[name] = extract_all(data, fn)
    scores = {name: score(data, t) for name, t in texts.items()}
    for name, s in scores.items():
        for key in ("f1", "precision", "recall"):
            figures[f"{name}: {key}"] = s[key]
    for name in EXTRACTORS:
        figures[f"{name}: CPU seconds, all pages"] = round(cpu[name], 2)
    collapsed = collapses(data, texts["ours"], texts["trafilatura"])
    figures["ours: pages empty or under 10% of trafilatura"] = len(collapsed)
    if collapsed:
        figures["ours: collapsed pages"] = collapsed[:10]
    return {
        "name": "html_extractors",
        "figures": figures,
        "ratios": {
            "ours F1 / trafilatura F1": round(
                float(scores["ours"]["f1"]) / float(scores["trafilatura"]["f1"]), 4
            ),
            "ours F1 / readability-lxml F1": round(
                float(scores["ours"]["f1"]) / float(scores["readability-lxml"]["f1"]), 4
            ),
            "ours CPU / trafilatura CPU": round(cpu["ours"] / cpu["trafilatura"], 3),
        },
        "notes": "phrase scoring of trafilatura's evaluation set; ours is the spoken text",
    }


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(), indent=2, ensure_ascii=False))
