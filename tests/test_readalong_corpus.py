"""Read-along EPUBs of the shared corpus: EPUBCheck on every corpus EPUB that EPUBCheck
reads, and on a PDF and an HTML page; and the local engine's sentence timings against
the pauses that ffmpeg's ``silencedetect`` finds in the audio of a novel."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

from audiobook.engines.fake import FakeEngine, tone_marks, tone_wav
from audiobook.ingest import read_book
from audiobook.options import ConvertOptions
from audiobook.pipeline import convert, convert_book

from .conftest import corpus_path
from .test_readalong import check_overlays, epubcheck, overlays, problems

pytestmark = [pytest.mark.corpus, pytest.mark.ffmpeg, pytest.mark.slow]

# Every corpus EPUB but the 0-byte file, which EPUBCheck cannot read ("zip file is
# empty", FATAL PKG-008). Two of these fail EPUBCheck themselves (Sherlock Holmes: 12
# errors; Kusamakura: 2, its missing audio); the read-along EPUB made from them must not.
CORPUS_EPUBS = [
    "gutenberg-1661-adventures-of-sherlock-holmes.epub",
    "gutenberg-23962-xiyouji-zh.epub",
    "gutenberg-4791-voyage-au-centre-de-la-terre-fr.epub",
    "idpf-childrens-literature.epub",
    "idpf-georgia-pls-ssml.epub",
    "idpf-haruko-html-jpeg.epub",
    "idpf-kusamakura-japanese-vertical-writing.epub",
    "idpf-moby-dick.epub",
    "idpf-regime-anticancer-arabic.epub",
    "row-your-boat-epub2-ncx-named-navigation-xml.epub",
    "se-devils-dictionary.epub",
    "se-leaves-of-grass.epub",
    "w3c-nav-spine_not-in-spine.epub",
    "w3c-pub-xml-non-validating_unclosed.epub",
]
SECONDS_PER_CHAR = 0.0005


def _tone_engine() -> FakeEngine:
    """Tones as long as the text, with marks that fit them: the whole of every book
    (Moby-Dick is 1.2 million characters) in seconds rather than hours of speech; the
    package is built the same way whatever voice made the marks."""
    return FakeEngine(
        lambda c: tone_wav(c, seconds_per_char=SECONDS_PER_CHAR),
        marks=lambda c: tone_marks(c, seconds_per_char=SECONDS_PER_CHAR),
    )


@pytest.mark.parametrize("name", CORPUS_EPUBS)
def test_readalong_of_every_corpus_epub_passes_epubcheck(name, tmp_path):
    src = corpus_path("epub", name)
    out = tmp_path / "book.epub"
    convert(
        src,
        out,
        ConvertOptions(engine="espeak", fmt="epub"),
        state_dir=tmp_path / "s",
        engine=_tone_engine(),
    )
    assert problems(epubcheck(out, tmp_path)) == []
    check_overlays(overlays(out, tmp_path / "x"))


@pytest.mark.parametrize(
    ("kind", "name"),
    [("pdf", "sf-pdflatex-outline.pdf"), ("html", "readability-mozilla-1.html")],
)
def test_readalong_of_a_pdf_and_an_html_page_passes_epubcheck(kind, name, tmp_path):
    """Spoken by espeak-ng, with word overlays."""
    src = corpus_path(kind, name)
    out = tmp_path / "book.epub"
    opts = ConvertOptions(engine="espeak", fmt="epub", words=True)
    convert(src, out, opts, state_dir=tmp_path / "s")
    assert problems(epubcheck(out, tmp_path)) == []
    check_overlays(overlays(out, tmp_path / "x"))


_SILENCE = re.compile(r"silence_(start|end): (-?[\d.]+)")


def silences(audio: Path) -> list[tuple[float, float]]:
    """Pauses of at least 80 ms below -45 dB, by ffmpeg's silencedetect."""
    r = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-nostdin",
            "-i",
            str(audio),
            "-af",
            "silencedetect=noise=-45dB:d=0.08",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out: list[tuple[float, float]] = []
    start = None
    for kind, value in _SILENCE.findall(r.stderr):
        if kind == "start":
            start = float(value)
        elif start is not None:
            out.append((start, float(value)))
            start = None
    if start is not None:
        out.append((start, float("inf")))
    return out


def test_sentence_starts_fall_on_pauses_found_in_the_audio(tmp_path):
    """A novel's opening (Sherlock Holmes: the title pages and the first ~120
    paragraphs of "A Scandal in Bohemia") spoken by espeak-ng: at least 95% of the
    sentence boundaries the overlays give lie within 150 ms of a pause."""
    book = read_book(corpus_path("epub", "gutenberg-1661-adventures-of-sherlock-holmes.epub"))
    first = next(i for i, c in enumerate(book.chapters) if "SCANDAL" in c.title)
    chapters = [
        *book.chapters[:first],
        dataclasses.replace(book.chapters[first], blocks=book.chapters[first].blocks[:120]),
    ]
    out = tmp_path / "novel.epub"
    convert_book(
        book.with_chapters(tuple(chapters)),
        out,
        ConvertOptions(engine="espeak", fmt="epub"),
        state_dir=tmp_path / "s",
    )
    facts = overlays(out, tmp_path / "x")
    check_overlays(facts)
    near, far = 0, []
    for c in facts["chapters"]:
        pauses = silences(c["audio"])
        for _ref, begin, _end in c["pars"][1:]:
            gap = min(
                (0.0 if a <= begin <= b else min(abs(begin - a), abs(begin - b))) for a, b in pauses
            )
            if gap <= 0.150:
                near += 1
            else:
                far.append((c["audio"].name, begin, gap))
    total = near + len(far)
    assert total > 200
    assert near / total >= 0.95, (near, total, far[:10])
