"""A batch on a Dask LocalCluster of 1 worker and of 2 workers: the speed-up.

The same books (espeak-ng, M4B, each book's synthesis on one process so that a worker
is one core's work) are converted by ``batch --cluster local:1`` and ``local:2``, each
time with a fresh state folder (nothing cached), alternately, twice each; the faster
run of each counts. The batch's wall time is measured from the first task submitted to
the last book back, on a cluster already started (its start is given apart). The ratio
is the 1-worker time over the 2-worker time: 2.0 would be perfect on two idle cores; on
a machine shared with other work, it says how much of the second core the batch got.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ._util import measure, work_dir

BOOKS = 6
CHAPTERS = 3
RUNS = 2
WORDS = (
    "harbour lamps evening river bridge mill village boats children stone market "
    "orchard winter letters garden window morning kettle ferry lantern meadow"
).split()


def _books(folder: Path) -> Path:
    """BOOKS Markdown books of CHAPTERS chapters, every sentence different."""
    src = folder / "books"
    src.mkdir(parents=True, exist_ok=True)
    for b in range(BOOKS):
        parts = [f"# Book {b + 1}\n"]
        for c in range(CHAPTERS):
            parts.append(f"\n## Chapter {c + 1}\n\n")
            for s in range(12):
                w = [WORDS[(b * 7 + c * 5 + s * 3 + i) % len(WORDS)] for i in range(9)]
                parts.append(
                    f"Sentence {s + 1} of book {b + 1} tells of the {' and the '.join(w)}. "
                )
        (src / f"book{b + 1}.md").write_text("".join(parts), "utf-8")
    return src


def _batch(src: Path, out: Path, state: Path, workers: int) -> dict:
    code = f"""
import dataclasses, time
from pathlib import Path
from audiobook.batch import Shared, batch_outputs
from audiobook.cluster import connect, run_books_on
from audiobook.config import PipelineConfig
from audiobook.options import ConvertOptions
out = Path({str(out)!r}); out.mkdir(parents=True, exist_ok=True)
opts = ConvertOptions(engine="espeak", config=PipelineConfig(workers=1))
pairs = batch_outputs(Path({str(src)!r}), out, opts.fmt)
t0 = time.perf_counter()
with connect("local:{workers}") as client:
    started = time.perf_counter() - t0
    t1 = time.perf_counter()
    items = run_books_on(client, pairs, opts, Shared(state_dir={str(state)!r}))
    batch_s = time.perf_counter() - t1
assert not [i.error for i in items if i.error], [i.error for i in items]
RESULT = {{"start": started, "batch": batch_s}}
"""
    return measure(code)


def run() -> dict:
    folder = work_dir("cluster")
    one: list[dict] = []
    two: list[dict] = []
    try:
        src = _books(folder)
        for i in range(RUNS):
            for workers, runs in ((1, one), (2, two)):
                state = folder / f"state-{workers}-{i}"
                runs.append(_batch(src, folder / f"out-{workers}-{i}", state, workers))
                shutil.rmtree(state, ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    a = min(r["result"]["batch"] for r in one)
    b = min(r["result"]["batch"] for r in two)
    return {
        "name": "cluster-speedup",
        "figures": {
            "books (espeak, m4b)": BOOKS,
            "chapters per book": CHAPTERS,
            "1 worker: batch wall s": round(a, 2),
            "2 workers: batch wall s": round(b, 2),
            "1 worker: cluster start s": round(min(r["result"]["start"] for r in one), 2),
            "2 workers: cluster start s": round(min(r["result"]["start"] for r in two), 2),
        },
        "ratios": {"speed-up, 2 workers over 1 (ideal 2.0 on 2 idle cores)": a / b},
        "notes": "LocalCluster of process workers, one thread each; SQLite state and the "
        "local cache (one machine); fresh state per run",
    }
