"""The read-along EPUB on the Polly path (real boto3 against the Polly emulator and
moto): an EPUB after an M4B of the same book buys only the speech marks, never the
audio again, and a further run with marks buys nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiobook.config import PipelineConfig
from audiobook.engines.options import PollyOptions
from audiobook.ingest import read_book
from audiobook.options import ConvertOptions
from audiobook.pipeline import convert_book
from audiobook.state import StateStore

from .test_polly_e2e import KEEP_MATTER, NOVEL, make_engine, short
from .test_readalong import check_overlays, epubcheck, overlays, problems

pytestmark = [pytest.mark.aws, pytest.mark.corpus, pytest.mark.ffmpeg]


def _convert(book, engine, out: Path, state: Path, fmt: str, marks: tuple[str, ...]):
    opts = ConvertOptions(
        fmt=fmt,
        engine="polly",
        voice="Lea",
        engine_options=PollyOptions(polly_engine="neural", bucket=engine.bucket, marks=marks),
        config=PipelineConfig(max_inflight=16, backoff_base=0.05, backoff_cap=0.5),
        words="word" in marks,
    )
    store = StateStore(state)
    try:
        return convert_book(book, out, opts, store=store, engine=engine)
    finally:
        store.close()


def test_epub_after_an_m4b_buys_only_the_marks(
    corpus, make_polly_emulator, moto_server, s3_bucket, tmp_path
):
    book = short(read_book(corpus(*NOVEL), KEEP_MATTER))  # as the other Polly tests read it
    book = book.with_chapters(book.chapters[:2])
    emu = make_polly_emulator()
    state = tmp_path / "state"
    with make_engine(emu, moto_server, s3_bucket) as engine:
        first = _convert(book, engine, tmp_path / "b.m4b", state, "m4b", ())
    audio_tasks = [t for t in emu.tasks if t.output_format != "json"]
    assert len(audio_tasks) == first.chunks_submitted > 0
    assert not [t for t in emu.tasks if t.output_format == "json"]

    marks = ("sentence", "word")
    with make_engine(emu, moto_server, s3_bucket, marks=marks) as engine:
        second = _convert(book, engine, tmp_path / "b.epub", state, "epub", marks)
    assert [t for t in emu.tasks if t.output_format != "json"] == audio_tasks  # no audio
    marks_tasks = [t for t in emu.tasks if t.output_format == "json"]
    assert len(marks_tasks) == second.chunks_submitted == first.chunks_submitted
    assert second.billed_chars == first.billed_chars  # the marks, billed once each
    assert problems(epubcheck(tmp_path / "b.epub", tmp_path)) == []
    check_overlays(overlays(tmp_path / "b.epub", tmp_path / "x"))

    with make_engine(emu, moto_server, s3_bucket, marks=marks) as engine:
        third = _convert(book, engine, tmp_path / "c.m4b", state, "m4b", marks)
    assert third.chunks_submitted == 0 and third.billed_chars == 0
    assert len(emu.tasks) == len(audio_tasks) + len(marks_tasks)
