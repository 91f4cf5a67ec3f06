"""The PostgreSQL state store against a real server (the pgserver wheel's PostgreSQL,
started in a temp folder): the store's contract as the SQLite store keeps it, named
migrations, the intent before a paid call, leases (held, expired, taken over, raced)."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from audiobook.errors import StateError
from audiobook.state import MIGRATIONS, LeaseOwner, PieceBusy, open_state

psycopg = pytest.importorskip("psycopg", reason="psycopg (the PostgreSQL driver) is missing")
pgstate = pytest.importorskip("audiobook.pgstate")


@pytest.fixture
def url(pg_url: str) -> str:
    """A fresh database on the session's PostgreSQL server (``tests/servers.py``)."""
    return pg_url


def test_migrations_have_the_same_names_and_run_once(url, tmp_path):
    with open_state(tmp_path, url=url) as s:
        assert isinstance(s, pgstate.PgStateStore)
        names = s.applied_migrations()
    assert names == [name for name, _ in MIGRATIONS]
    with open_state(tmp_path, url=url) as s:  # reopening applies nothing twice
        assert s.applied_migrations() == names
        cols = {
            r[0]
            for r in s._query(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'chunks'"
            )
        }
    assert {"key", "status", "task_id", "billed_chars", "started_at", "request_chars"} <= cols


def test_workers_opening_a_new_store_at_once_migrate_it_once(url, tmp_path):
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            open_state(tmp_path, url=url).close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with open_state(tmp_path, url=url) as s:
        assert s.applied_migrations() == [name for name, _ in MIGRATIONS]


def test_the_url_comes_from_the_environment(url, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOBOOK_STATE_URL", url)
    with open_state(tmp_path) as s:
        assert isinstance(s, pgstate.PgStateStore)


def test_an_unknown_url_or_an_unreachable_server_is_one_line(tmp_path):
    with pytest.raises(StateError, match="not a state store URL"):
        open_state(tmp_path, url="mysql://u@h/db")
    bad = f"postgresql://nobody:secret@/db?host={tmp_path}"  # no server listens there
    with pytest.raises(StateError) as err:
        open_state(tmp_path, url=bad)
    assert "cannot connect" in str(err.value) and "secret" not in str(err.value)
    assert "\n" not in str(err.value)


def test_chunk_lifecycle_intent_before_the_paid_call(url, tmp_path):
    with open_state(tmp_path, url=url) as s:
        since = s.mark_starting("k1", "polly", chars=50, price_kind="neural")
        row = s.chunk("k1")
        assert row.status == "pending" and row.started_at == since and row.task_id is None
        s.mark_submitted("k1", "task-1", "s3://b/k1.mp3", billed_chars=50, extra={"a": "b"})
        row = s.chunk("k1")
        assert (row.status, row.task_id, row.billed_chars, row.extra) == (
            "submitted",
            "task-1",
            50,
            {"a": "b"},
        )
        s.mark_done("k1", s.cache_path("k1", "mp3"), digest=(10, "ab" * 32))
        row = s.chunk("k1")
        assert (row.status, row.cache_size, row.attempts) == ("done", 10, 1)
        s.mark_starting("k2", "polly", chars=7)
        s.mark_not_started("k2", "refused")
        assert s.chunk("k2").started_at is None and s.chunk("k2").last_error == "refused"
        s.mark_failed("k2", "gone")
        assert set(s.chunks(["k1", "k2", "k3"])) == {"k1", "k2"}
        summary = s.summary()
        assert summary.chunks["done"] == 1 and summary.chunks["failed"] == 1
        assert summary.billed_chars == 50 and summary.billed_by_kind == {"neural": 50}
        assert summary.counted.pieces == 1 and summary.counted.differing == 0


def test_books_runs_and_outputs(url, tmp_path):
    with open_state(tmp_path, url=url) as s:
        book = s.upsert_book("/b.epub", source_hash="h", options_hash="o", title="B", status="new")
        assert (
            s.upsert_book("/b.epub", source_hash="h2", options_hash="o", title="B", status="x")
            == book
        )
        s.set_book_chunks(book, [("k1", 0), ("k2", 1)])
        assert s.book_chunk_keys(book) == ["k1", "k2"]
        s.finish_book(book, status="done", out_path="/o.m4b", outputs=["/o.m4b", "/o.vtt"])
        row = s.book("/b.epub")
        assert (row.status, row.source_hash, row.outputs) == ("done", "h2", ("/o.m4b", "/o.vtt"))
        first = s.start_run(book)
        second = s.start_run(book)
        assert second > first
        s.finish_run(second, status="failed", error="disk full")
        assert s.last_run_errors() == {book: "disk full"}
        assert [b.source_path for b in s.books()] == ["/b.epub"]


def test_a_held_piece_is_busy_until_its_lease_expires(url, tmp_path):
    now = [1000.0]
    with open_state(tmp_path, url=url) as a_store, open_state(tmp_path, url=url) as b_store:
        a_store.clock = b_store.clock = lambda: now[0]
        a, b = LeaseOwner(a_store, ttl=60), LeaseOwner(b_store, ttl=60)
        a_store.mark_starting("k", "polly", owner=a)
        with pytest.raises(PieceBusy) as busy:
            b_store.mark_starting("k", "polly", owner=b)
        assert busy.value.holder is not None and busy.value.holder.owner == a.id
        assert b_store.claim_piece("k", b) is not None  # still a's
        assert b_store.piece_holders(["k"], b)["k"].owner == a.id
        now[0] += 61  # a stopped renewing: a dead worker
        # The row shows a's unrecorded start: b does not start it again blindly...
        with pytest.raises(PieceBusy) as busy:
            b_store.mark_starting("k", "polly", owner=b)
        assert busy.value.holder is None
        # ...it takes the claim over, then resumes (recovers a's task) as usual.
        assert b_store.claim_piece("k", b) is None
        assert a_store.piece_holders(["k"], a)["k"].owner == b.id
        b_store.release_leases(b)
        assert a_store.piece_holders(["k"], a) == {}


def test_racing_workers_start_a_piece_once(url, tmp_path):
    """Eight workers, each on its own connection, want the same new piece at once:
    exactly one writes the intent (the one that will pay); the others see it busy."""
    stores = [open_state(tmp_path, url=url) for _ in range(8)]
    owners = [LeaseOwner(s) for s in stores]
    started: list[int] = []
    busy: list[int] = []
    go = threading.Barrier(len(stores))

    def worker(i: int) -> None:
        go.wait()
        try:
            stores[i].mark_starting("piece", "polly", chars=10, owner=owners[i])
            started.append(i)
        except PieceBusy:
            busy.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(started) == 1 and len(busy) == 7
        assert stores[0].chunk("piece").attempts == 1
    finally:
        for s in stores:
            s.close()


def test_output_claims(url, tmp_path):
    with open_state(tmp_path, url=url) as s:
        a, b = LeaseOwner(s), LeaseOwner(s)
        assert s.claim_output("/o.m4b", "/b.epub", a) is None
        held = s.claim_output("/o.m4b", "/b.epub", b)
        assert held is not None and held.owner == a.id
        assert s.claim_output("/o2.m4b", "/b.epub", b) is None
        assert [h.owner for h in s.book_holders("/b.epub", b)] == [a.id]
        s.renew_leases(a)
        s.release_leases(a)
        assert s.claim_output("/o.m4b", "/b.epub", b) is None


def _packets(path: Path) -> str:
    """Hash of the encoded audio packets, read with PyAV."""
    import hashlib

    import av

    h = hashlib.sha256()
    with av.open(str(path)) as f:
        for packet in f.demux(audio=0):
            h.update(bytes(packet))
    return h.hexdigest()


@pytest.mark.ffmpeg
def test_a_conversion_with_state_in_postgresql_equals_one_in_sqlite(url, tmp_path):
    """The pipeline on the PostgreSQL store: the same audio packets and chapter times
    as on SQLite, the book and its pieces recorded, and a second run does nothing."""
    from mutagen.mp4 import MP4

    from audiobook.engines.fake import FakeEngine
    from audiobook.options import ConvertOptions
    from audiobook.pipeline import convert

    src = tmp_path / "book.md"
    src.write_text(
        "# One\n\nThe first chapter, read aloud.\n\n# Two\n\nThe second one, longer than "
        "the first, with a sentence more.\n",
        encoding="utf-8",
    )
    opts = ConvertOptions(synchronous=True)
    local = convert(
        src, tmp_path / "local.m4b", opts, state_dir=tmp_path / "s1", engine=FakeEngine()
    )
    engine = FakeEngine()
    with open_state(tmp_path / "s2", url=url) as store:
        shared = convert(src, tmp_path / "shared.m4b", opts, store=store, engine=engine)
        assert shared.chunks_submitted == local.chunks_submitted == len(engine.submitted) > 0
        assert _packets(tmp_path / "shared.m4b") == _packets(tmp_path / "local.m4b")
        assert [(c.title, c.start) for c in MP4(tmp_path / "shared.m4b").chapters] == [
            (c.title, c.start) for c in MP4(tmp_path / "local.m4b").chapters
        ]
        assert shared.chapter_times == local.chapter_times
        row = store.book(src)
        assert row is not None and row.status == "done"
        keys = store.book_chunk_keys(row.id)
        assert len(keys) == shared.chunks_total
        assert {r.status for r in store.chunks(keys).values()} == {"done"}
        again = convert(src, tmp_path / "shared.m4b", opts, store=store, engine=engine)
        assert again.skipped and len(engine.submitted) == shared.chunks_submitted


@pytest.mark.ffmpeg
def test_the_cli_keeps_its_state_in_the_database_named_by_the_environment(url, tmp_path):
    """$AUDIOBOOK_STATE_URL (as --state): convert, convert again (up to date) and status go to the
    database; the state folder holds only the audio cache; the password is never shown."""
    import os
    import subprocess
    import sys

    parts = urlsplit(url)
    secret = urlunsplit(parts._replace(netloc=f"postgres:s3cret@{parts.hostname or ''}"))
    src = tmp_path / "b.md"
    src.write_text("# One\n\nThe first chapter.\n\n# Two\n\nThe second one.\n", "utf-8")
    state = tmp_path / "state"
    env = {**os.environ, "AUDIOBOOK_STATE_URL": secret, "AUDIOBOOK_STATE_DIR": str(state)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "audiobook", *args],
            check=False,
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = cli("convert", str(src), "-o", str(tmp_path / "b.m4b"))
    assert first.returncode == 0, first.stderr
    again = cli("convert", str(src), "-o", str(tmp_path / "b.m4b"))
    assert again.returncode == 0 and "up to date" in again.stdout
    status = cli("status")
    assert status.returncode == 0, status.stderr
    assert "state: postgresql://postgres:***@" in status.stdout
    assert "pieces: 1 done" in status.stdout and str(src) in status.stdout
    assert "s3cret" not in status.stdout + status.stderr + first.stderr
    assert sorted(p.name for p in state.iterdir()) == ["cache"]  # no state.sqlite


def test_a_lost_connection_fails_one_call_and_the_next_reconnects(url, tmp_path):
    with open_state(tmp_path, url=url) as s:
        s.mark_starting("k1", "polly")
        with psycopg.connect(url, autocommit=True) as admin:  # the server drops us
            admin.execute("SELECT pg_terminate_backend(%s)", (s.conn.info.backend_pid,))
        with pytest.raises(StateError) as err:
            s.mark_starting("k2", "polly")
        assert "\n" not in str(err.value)
        assert s.chunk("k2") is None  # nothing half-written
        s.mark_starting("k2", "polly")  # a new connection
        assert {k for k in s.chunks(["k1", "k2"])} == {"k1", "k2"}


def test_the_state_option_names_the_database(url, tmp_path):
    """--state URL on a read-only command: status of an empty shared store."""
    from click.testing import CliRunner

    from audiobook.cli import cli

    r = CliRunner().invoke(cli, ["status", "--state", url, "--state-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "state: postgresql://" in r.output and "pieces: 0 done" in r.output
    r = CliRunner().invoke(cli, ["status", "--state", "mysql://u@h/db"])
    assert r.exit_code != 0 and "not a state store URL" in r.output
