"""Books on a Dask cluster (a LocalCluster of process workers) with the state in
PostgreSQL (the pgserver wheel's server) and the audio cache in S3 (moto): the outputs
equal a single machine's, and a worker killed with SIGKILL at several moments of a book
(claimed, synthesizing, stitching) leaves a batch that still completes on the workers
left, with no chunk paid for twice (the Polly emulator counts the tasks)."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from audiobook.batch import BatchItem, Shared, batch
from audiobook.engines.options import PollyOptions
from audiobook.options import ConvertOptions
from audiobook.state import open_state
from tests.epubkit import Doc, build_epub
from tests.runs import audio_digest, chapter_marks

pytest.importorskip("distributed", reason="Dask distributed (the cluster extra) is missing")
psycopg = pytest.importorskip("psycopg", reason="psycopg (the PostgreSQL driver) is missing")

pytestmark = [pytest.mark.ffmpeg]

SENTENCE = "The lamps of the harbour came on one by one as the boats returned. "


def books(folder: Path, n: int, *, length: int = 2) -> Path:
    """``n`` small EPUBs of two chapters each in ``folder``."""
    folder.mkdir(parents=True)
    for b in range(n):
        titles = [f"Book {b + 1} part {c + 1}" for c in range(2)]
        docs = [
            Doc(f"c{c}.xhtml", f"<h1>{t}</h1><p>{t}. {SENTENCE * (length + b + c)}</p>")
            for c, t in enumerate(titles)
        ]
        toc = [(t, f"c{c}.xhtml", []) for c, t in enumerate(titles)]
        build_epub(folder / f"book{b + 1}.epub", docs, toc, title=f"Book {b + 1}")
    return folder


def delivered(items: list[BatchItem]) -> list[Path]:
    assert [it.error for it in items if it.error] == []
    return [Path(it.result.outputs[0]) for it in items if it.result is not None]


def test_a_batch_on_a_cluster_with_shared_state_and_cache_equals_one_machine(
    tmp_path, aws_env, s3_bucket, s3_client, pg_url
):
    src = books(tmp_path / "in", 3)
    opts = ConvertOptions(engine="espeak")
    one = delivered(batch(src, tmp_path / "one", opts, state_dir=tmp_path / "alone"))

    shared = Shared(pg_url, f"s3://{s3_bucket}/pieces", str(tmp_path / "worker"))
    seen: list[str] = []
    many = delivered(
        batch(
            src,
            tmp_path / "many",
            opts,
            cluster="local:2",
            shared=shared,
            on_book=lambda it: seen.append(it.source.name),
            on_note=seen.append,
        )
    )
    assert seen[0].startswith("cluster local:2: 2 worker(s)")
    assert sorted(seen[1:]) == ["book1.epub", "book2.epub", "book3.epub"]
    assert len(one) == len(many) == 3
    for a, b in zip(one, many):
        assert a.name == b.name
        assert chapter_marks(a) == chapter_marks(b)
        assert audio_digest(a) == audio_digest(b)

    # The pieces are in S3 under their content keys, recorded done in PostgreSQL.
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="pieces/")["Contents"]
    with open_state(tmp_path / "reader", url=pg_url, cache=shared.cache_url) as store:
        s = store.summary()
        assert [b.status for b in s.books] == ["done"] * 3
        assert len(listed) == s.cache_files == 2 * s.chunks["done"]  # audio and marks
        for obj in listed:
            key, ext = obj["Key"].rsplit("/", 1)[-1].split(".", 1)
            row = store.chunk(key)
            assert row is not None and row.status == "done"
            assert (row.marks_size if ext == "marks" else row.cache_size) == obj["Size"]

    # Workers with empty local folders take every piece from S3 (checked against the
    # digests in PostgreSQL) and synthesize none.
    again = batch(
        src,
        tmp_path / "again",
        ConvertOptions(engine="espeak", force=True),
        cluster="local:2",
        shared=Shared(shared.state_url, shared.cache_url, str(tmp_path / "fresh-worker")),
    )
    for a, it in zip(one, again):
        assert it.error is None and it.result is not None
        assert it.result.chunks_submitted == 0 and it.result.chunks_cached > 0
        assert audio_digest(a) == audio_digest(Path(it.result.outputs[0]))


# The moments of a book at which its worker is killed, as the shared state shows them:
# the worker's pid (from its claim on the book's output) when the moment is there.
MOMENTS = {
    # the book claimed, none of its pieces listed yet: reading and planning
    "before-synthesis": """
        SELECT l.pid FROM book_locks l JOIN books b ON b.source_path = l.source_path
        WHERE NOT EXISTS (SELECT 1 FROM book_chunks c WHERE c.book_id = b.id)""",
    # a task started for one of its pieces and not yet fetched
    "mid-synthesis": """
        SELECT l.pid FROM book_locks l JOIN books b ON b.source_path = l.source_path
        JOIN book_chunks c ON c.book_id = b.id JOIN chunks k ON k.key = c.key
        WHERE k.status = 'submitted'""",
    # every piece in the cache, the book not delivered yet
    "stitching": """
        SELECT l.pid FROM book_locks l JOIN books b ON b.source_path = l.source_path
        WHERE b.status != 'done' AND EXISTS (SELECT 1 FROM book_chunks c WHERE c.book_id = b.id)
        AND NOT EXISTS (SELECT 1 FROM book_chunks c JOIN chunks k ON k.key = c.key
                        WHERE c.book_id = b.id AND k.status != 'done')""",
}


def kill_at(url: str, query: str, stop: threading.Event) -> Callable[[], int | None]:
    """Watch the store from a thread; SIGKILL the worker whose book reaches the moment
    of ``query`` (once). Returns a function telling which pid was killed (or None)."""
    killed: list[int] = []

    def watch() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    row = conn.execute(query).fetchone()
                except psycopg.errors.UndefinedTable:  # the store is not made yet
                    row = None
                if row is not None and row[0] != os.getpid():
                    try:
                        os.kill(row[0], signal.SIGKILL)
                    except ProcessLookupError:  # a dead worker's claim, not yet taken over
                        pass
                    else:
                        killed.append(row[0])
                        return
                time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return lambda: killed[0] if killed else None


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_worker_killed_mid_batch_leaves_the_batch_complete_and_nothing_paid_twice(
    moment, tmp_path, monkeypatch, aws_env, s3_bucket, pg_url, make_polly_emulator
):
    # Tasks take a while (a queue wait, then characters per second): a book spends
    # seconds synthesizing, long enough for the watcher to see each moment.
    emu = make_polly_emulator(queue_delay=0.3, chars_per_second=600.0, workers=4)
    monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", emu.url)  # the workers inherit it
    src = books(tmp_path / "in", 3, length=4)
    opts = ConvertOptions(
        engine="polly",
        engine_options=PollyOptions(
            polly_engine="neural", voice="Joanna", bucket=s3_bucket, mode="async"
        ),
    )
    stop = threading.Event()
    killed = kill_at(pg_url, MOMENTS[moment], stop)
    try:
        items = batch(
            src,
            tmp_path / "out",
            opts,
            cluster="local:2",
            shared=Shared(pg_url, f"s3://{s3_bucket}/pieces", str(tmp_path / "worker")),
        )
    finally:
        stop.set()
    assert killed() is not None, f"no worker was seen {moment}"
    outputs = delivered(items)
    assert len(outputs) == 3 and all(p.stat().st_size > 0 for p in outputs)

    # Never paid twice: one task per distinct text, every one completed.
    emu.wait_idle(timeout=30)
    per_text = collections.Counter(t.text_sha256 for t in emu.tasks)
    assert max(per_text.values()) == 1, per_text
    with open_state(tmp_path / "reader", url=pg_url) as store:
        s = store.summary()
        assert s.chunks["done"] == len(per_text)
        assert s.billed_chars == sum(t.request_characters for t in emu.tasks)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "local:0"], "--cluster local:0: local:N takes a number of workers, N >= 1"),
        (["--cluster", "scheduler:8786"], "give a scheduler (tcp://HOST:8786) or local:N"),
        (["--cluster", "tcp://127.0.0.1:9"], "share their state through --state postgresql://"),
    ],
)
def test_a_cluster_the_batch_cannot_use_is_one_line_before_any_book(tmp_path, args, message):
    from click.testing import CliRunner

    from audiobook.cli import cli
    from audiobook.errors import ConfigError

    src = books(tmp_path / "in", 1)
    r = CliRunner().invoke(
        cli, ["batch", str(src), "-o", str(tmp_path / "out"), "--state-dir", str(tmp_path), *args]
    )
    assert r.exit_code == ConfigError.exit_code, r.output
    errors = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and message in errors[0], r.stderr
    assert not list((tmp_path / "out").glob("*.m4b"))
