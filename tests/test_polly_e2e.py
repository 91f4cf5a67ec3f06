"""A corpus book through the whole Polly path: ingest, chunk, the pipeline's scheduler
driving PollyEngine (real boto3) against the emulator and moto, then stitching.

Checked against the emulator's own task list: exactly one completed task per chunk,
billed characters (sum of RequestCharacters) equal to the estimate, and, with faults
injected, no chunk billed twice unless its earlier task failed.

The whole French novel (429,134 billable characters, 51 tasks) takes the emulator about
a minute and a half of espeak-ng synthesis on two cores, so the whole-book runs are
marked ``slow``; the default runs take five short sections of the same book.
"""

from __future__ import annotations

import collections
import importlib.util
import re
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from audiobook.config import PipelineConfig
from audiobook.engines.options import PollyOptions
from audiobook.engines.polly import PollyEngine, polly_client_config
from audiobook.estimate import estimate
from audiobook.ingest import IngestOptions, read_book
from audiobook.model import Book, Chunk

NOVEL = ("epub", "gutenberg-4791-voyage-au-centre-de-la-terre-fr.epub")
# the licence sections are the short chapters these runs use: matter kept
KEEP_MATTER = IngestOptions(skip_matter=False)
# The emulator speaks the whole novel fast (real audio, a third as long) so that
# synthesis, encoding and stitching of ~430,000 characters fit the suite's time.
FAST_SPEECH = 450
HAS_STITCH = importlib.util.find_spec("audiobook.stitch") is not None

pytestmark = [pytest.mark.aws, pytest.mark.corpus]

# The acceptance fault mix: 20% throttling, 5% failed tasks, 2% 5xx, 10% lost notices.
ACCEPTANCE_FAULTS = {
    "throttle_rate": 0.2,
    "fail_rate": 0.05,
    "error5xx_rate": 0.02,
    "lost_notification_rate": 0.1,
}
# For a short book, higher task-level rates, so that every path is taken in a few tasks.
SHORT_FAULTS = {
    "throttle_rate": 0.2,
    "fail_rate": 0.25,
    "error5xx_rate": 0.05,
    "lost_notification_rate": 0.3,
}


def short(book: Book) -> Book:
    """The five short licence sections at the end: 5 chapters, 5 tasks, 5,559 characters
    (the long "Section 1" is left out to keep the default run quick)."""
    return book.with_chapters(book.chapters[45:46] + book.chapters[47:])


def make_engine(emu: Any, moto: str, bucket: str, **kw: Any) -> PollyEngine:
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return PollyEngine(
        PollyOptions(
            voice="Lea", bucket=bucket, prefix="books/", polly_engine="neural", mode="async", **kw
        ),
        polly=session.client("polly", endpoint_url=emu.url, config=polly_client_config()),
        s3=session.client("s3", endpoint_url=moto),
        sqs=session.client("sqs", endpoint_url=moto),
        sns=session.client("sns", endpoint_url=moto),
    )


def run(book: Book, engine: PollyEngine, tmp_path: Path) -> tuple[list[Chunk], Any, Path]:
    """Convert with the pipeline; returns (chunks, result, m4b path or None)."""
    from audiobook.options import ConvertOptions
    from audiobook.pipeline import convert_book
    from audiobook.state import StateStore
    from audiobook.synthesis import synthesize

    opts = ConvertOptions(
        fmt="m4b",
        engine="polly",
        voice="Lea",
        engine_options=PollyOptions(polly_engine="neural", bucket=engine.bucket),
        config=PipelineConfig(max_inflight=16, backoff_base=0.05, backoff_cap=0.5, max_attempts=8),
    )
    store = StateStore(tmp_path / "state")
    try:
        if HAS_STITCH:
            out = tmp_path / "book.m4b"
            result = convert_book(book, out, opts, store=store, engine=engine)
            from audiobook.synthesis import plan_chunks

            return plan_chunks(book, engine, opts.render), result, out
        syn = synthesize(book, opts, store=store, engine=engine)
        return list(syn.chunks), syn, None  # type: ignore[return-value]
    finally:
        store.close()


def check_billing(emu: Any, chunks: list[Chunk], faults: bool) -> dict[str, int]:
    """One completed task per distinct chunk, nothing else completed, the bill equals the
    estimate, and every task of a chunk but its completed one failed."""
    tasks = [t for t in emu.tasks if t.output_format != "json"]
    by_chunk: dict[str, list[Any]] = collections.defaultdict(list)
    for t in sorted(tasks, key=lambda t: t.creation_time):
        by_chunk[t.text_sha256].append(t)
    want = {c.sha256 for c in chunks}
    assert set(by_chunk) == want, "a task for text that is no chunk, or a chunk never sent"
    for sha, ts in by_chunk.items():
        assert [t.status for t in ts].count("completed") == 1, f"chunk {sha[:12]}: {ts}"
        assert ts[-1].status == "completed"
        # Billed twice only when the earlier task failed.
        assert all(t.status == "failed" for t in ts[:-1]), f"chunk {sha[:12]} paid twice"
        if not faults:
            assert len(ts) == 1
    distinct = {c.sha256: c for c in chunks}.values()
    est = estimate(list(distinct), "neural")
    completed = [t for t in tasks if t.status == "completed"]
    assert sum(t.request_characters for t in completed) == est.billable_chars
    assert len(completed) == est.tasks
    return {
        "tasks": len(tasks),
        "completed": len(completed),
        "failed": sum(t.status == "failed" for t in tasks),
        "billable": est.billable_chars,
    }


def check_output(book: Book, result: Any, out: Path | None) -> None:
    if out is None:  # no stitcher yet: every piece decodes as audio
        import av

        for chapter in result.pieces:
            for piece in chapter:
                with av.open(str(piece)) as f:
                    assert f.duration and f.duration > 0
        return
    from mutagen.mp4 import MP4

    chapters = MP4(out).chapters
    assert chapters is not None
    assert [c.title for c in chapters] == [c.title for c in book.chapters]
    starts = [c.start for c in chapters]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


def test_short_book_one_task_per_chunk_billed_as_estimated(
    corpus, make_polly_emulator, moto_server, s3_bucket, tmp_path
):
    book = short(read_book(corpus(*NOVEL), KEEP_MATTER))
    emu = make_polly_emulator()
    with make_engine(emu, moto_server, s3_bucket) as engine:
        chunks, result, out = run(book, engine, tmp_path)
    assert len(chunks) == len(book.chapters)  # ~10k characters a chapter: one task each
    check_billing(emu, chunks, faults=False)
    check_output(book, result, out)


def test_short_book_survives_faults_without_paying_twice(
    corpus, make_polly_emulator, moto_server, s3_bucket, sns_client, tmp_path
):
    book = short(read_book(corpus(*NOVEL), KEEP_MATTER))
    emu = make_polly_emulator(seed=7, **SHORT_FAULTS)
    topic = sns_client.create_topic(Name=f"e2e-{uuid.uuid4().hex[:12]}")["TopicArn"]
    with make_engine(
        emu, moto_server, s3_bucket, sns_topic=topic, notification_grace=0.5
    ) as engine:
        chunks, result, out = run(book, engine, tmp_path)
    figures = check_billing(emu, chunks, faults=True)
    check_output(book, result, out)
    stats = emu.stats
    print("faults:", {k: v for k, v in stats.items() if "injected" in k}, figures)
    assert stats.get("throttled_injected", 0) > 0
    assert figures["tasks"] == figures["completed"] + figures["failed"]


@pytest.mark.slow
def test_whole_novel_one_task_per_chunk_billed_as_estimated(
    corpus, make_polly_emulator, moto_server, s3_bucket, tmp_path
):
    book = read_book(corpus(*NOVEL), KEEP_MATTER)
    emu = make_polly_emulator(espeak_rate_wpm=FAST_SPEECH)
    with make_engine(emu, moto_server, s3_bucket) as engine:
        chunks, result, out = run(book, engine, tmp_path)
    figures = check_billing(emu, chunks, faults=False)
    assert figures["completed"] == len({c.sha256 for c in chunks}) >= len(book.chapters)
    check_output(book, result, out)


@pytest.mark.slow
def test_whole_novel_survives_the_acceptance_faults(
    corpus, make_polly_emulator, moto_server, s3_bucket, sns_client, tmp_path
):
    book = read_book(corpus(*NOVEL), KEEP_MATTER)
    emu = make_polly_emulator(seed=11, espeak_rate_wpm=FAST_SPEECH, **ACCEPTANCE_FAULTS)
    topic = sns_client.create_topic(Name=f"e2e-{uuid.uuid4().hex[:12]}")["TopicArn"]
    with make_engine(
        emu, moto_server, s3_bucket, sns_topic=topic, notification_grace=1.0
    ) as engine:
        chunks, result, out = run(book, engine, tmp_path)
    figures = check_billing(emu, chunks, faults=True)
    check_output(book, result, out)
    print("faults:", {k: v for k, v in emu.stats.items() if "injected" in k}, figures)


def test_speech_marks_become_webvtt_captions_per_chapter(
    corpus, make_polly_emulator, moto_server, s3_bucket, tmp_path
):
    """--marks sentence: a speech-mark task beside each audio task, and one WebVTT file
    per chapter beside the M4B, its cues in order and starting inside the chapter."""
    book = short(read_book(corpus(*NOVEL), KEEP_MATTER))
    book = book.with_chapters(book.chapters[:2])
    emu = make_polly_emulator()
    with make_engine(emu, moto_server, s3_bucket, marks=("sentence",)) as engine:
        chunks, result, out = run(book, engine, tmp_path)
    marks_tasks = [t for t in emu.tasks if t.output_format == "json"]
    assert len(marks_tasks) == len(chunks)
    vtts = sorted(out.parent.glob(f"{out.stem}.*.vtt"))
    assert len(vtts) == len(book.chapters)
    for vtt, (_title, start, end) in zip(vtts, result.chapter_times):
        text = vtt.read_text(encoding="utf-8")
        assert text.startswith("WEBVTT")
        cues = re.findall(r"(\d+):(\d\d):(\d\d)\.(\d{3}) --> (\d+):(\d\d):(\d\d)\.(\d{3})", text)
        assert cues, vtt
        starts = [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms, *_ in cues]
        assert starts == sorted(starts)
        assert starts[-1] < end - start  # every cue begins inside its chapter's audio
