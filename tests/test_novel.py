"""A whole novel, offline, as a user converts it: `audiobook convert BOOK.epub`.

The longest book of the corpus (Moby-Dick, about 1.2 million characters, 141 chapters)
goes through the real command in a child process. The M4B is read back by independent
readers (PyAV for the timeline, mutagen for the chapter atoms), and checked against
`audiobook inspect --json` and against the cached pieces the stitcher was given:

* the chapter list equals inspect's, in order, with increasing, non-overlapping times;
* the file's duration equals the sum of the pieces within 0.5 s;
* the peak memory of the whole process tree (our process, its synthesis workers and
  ffmpeg), sampled from /proc, stays under 300 MB.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from audiobook.audio import read_wav_info
from audiobook.state import StateStore

pytestmark = [pytest.mark.corpus, pytest.mark.ffmpeg, pytest.mark.slow]

LONGEST = ("epub", "idpf-moby-dick.epub")
MEMORY_LIMIT_MB = 300


def _tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants, in MB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / (1024 * 1024)


def _run_sampling(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.1):
            peak = max(peak, _tree_rss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=1500)
    done.set()
    sampler.join()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), peak


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_longest_novel_converts_with_exact_chapters_duration_and_flat_memory(corpus, tmp_path):
    import av
    from mutagen.mp4 import MP4

    src = corpus(*LONGEST)
    out = tmp_path / "novel.m4b"
    state = tmp_path / "state"
    cli = [sys.executable, "-m", "audiobook"]

    inspect = subprocess.run(
        [*cli, "inspect", str(src), "--json"], capture_output=True, text=True, check=True
    )
    expected = [c["title"] for c in json.loads(inspect.stdout)["chapters"]]

    done, peak_mb = _run_sampling(
        [*cli, "convert", str(src), "-o", str(out), "--state-dir", str(state), "--engine", "espeak"]
    )
    assert done.returncode == 0, done.stderr
    print(f"\nnovel: {len(expected)} chapters, peak tree RSS {peak_mb:.0f} MB")
    assert peak_mb < MEMORY_LIMIT_MB

    # Chapters, read by mutagen: inspect's list, in order, increasing, not overlapping.
    marks = MP4(out).chapters
    assert [c.title for c in marks] == expected
    starts = [c.start for c in marks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)

    # The timeline, read by PyAV: chapter ends meet the next starts; the duration is
    # the sum of the cached pieces the book was stitched from.
    with av.open(str(out)) as f:
        duration = float(f.duration) / 1_000_000
        chapters = f.chapters()
    assert [c["metadata"].get("title") for c in chapters] == expected
    spans = [
        (float(c["start"] * c["time_base"]), float(c["end"] * c["time_base"])) for c in chapters
    ]
    for (s0, e0), (s1, _e1) in itertools.pairwise(spans):
        assert s0 < e0 <= s1 + 1e-3

    with StateStore(state) as store:
        (row,) = store.books()
        keys = store.book_chunk_keys(row.id)
        pieces = [store.cached(k, "wav") for k in keys]
    assert all(p is not None for p in pieces)
    total = sum(read_wav_info(p).duration for p in pieces)  # type: ignore[arg-type, union-attr]
    assert abs(duration - total) <= 0.5, (duration, total)
