"""Small books, the real command line on them, and what its outputs hold, for the tests
that run whole conversions (kills, signals, concurrent runs, the promises guarded).

    src = seasons_epub(tmp_path / "s.epub", 10, lambda i: 2 + i % 4)
    subprocess.run(audiobook_argv("convert", src, "-o", out))
    audio_digest(out), chapter_marks(out)
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

from tests.epubkit import Doc, Toc, build_epub

PARAGRAPH = (
    "The river ran past the mill and under the old stone bridge, where the "
    "children of the village gathered every evening to watch the boats. "
)


def audiobook_argv(*args: str | Path) -> list[str]:
    """``python -m audiobook ARGS``: the command a user's shell runs."""
    return [sys.executable, "-m", "audiobook", *map(str, args)]


def polly_args(bucket: str) -> list[str]:
    """The options of a conversion by Polly's neural Joanna in async mode into ``bucket``."""
    args = ["--engine", "polly", "--bucket", bucket, "--voice", "Joanna"]
    return args + ["--polly-engine", "neural", "--mode", "async"]


def seasons_epub(path: Path, chapters: int, paragraphs: Callable[[int], int]) -> Path:
    """An EPUB of ``chapters`` chapters ("Spring 1", "Summer 1", ...), chapter ``i`` of
    ``paragraphs(i)`` times PARAGRAPH: a piece each, each with its own text."""
    seasons = ["Spring", "Summer", "Autumn", "Winter"]
    titles = [f"{seasons[i % 4]} {i // 4 + 1}" for i in range(chapters)]
    docs = [
        Doc(f"c{i}.xhtml", f"<h1>{t}</h1>" + f"<p>{t}. {PARAGRAPH * paragraphs(i)}</p>")
        for i, t in enumerate(titles)
    ]
    return build_epub(
        path, docs, [(t, f"c{i}.xhtml", []) for i, t in enumerate(titles)], title="Seasons"
    )


def day_epub(path: Path, chapters: list[tuple[str, str]], title: str = "A Tiny Day") -> Path:
    """An EPUB by Ann Author of ``chapters`` ((title, XHTML body), in order)."""
    docs = [Doc(f"c{i}.xhtml", f"<h1>{t}</h1>{body}") for i, (t, body) in enumerate(chapters)]
    toc: Toc = [(t, f"c{i}.xhtml", []) for i, (t, _) in enumerate(chapters)]
    return build_epub(path, docs, toc, title=title, authors=("Ann Author",))


def audio_digest(path: Path) -> str:
    """Hash of the encoded audio packets (PyAV): equal audio, whatever the container's
    own timestamps say."""
    import av

    h = hashlib.sha256()
    with av.open(str(path)) as f:
        for packet in f.demux(audio=0):
            h.update(bytes(packet))
    return h.hexdigest()


def chapter_marks(path: Path) -> list[tuple[str, float]]:
    """The M4B's chapters as mutagen reads them: (title, start in seconds)."""
    from mutagen.mp4 import MP4

    chapters = MP4(path).chapters
    assert chapters is not None, f"{path}: no chapters"
    return [(c.title, round(c.start, 3)) for c in chapters]


def decoded_seconds(path: Path) -> float:
    """Seconds of audio, every frame decoded with PyAV (a damaged stream raises), not
    the muxer's header."""
    import av

    samples = 0
    rate = 0
    with av.open(str(path)) as f:
        for frame in f.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    return samples / rate
