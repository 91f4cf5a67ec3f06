"""The SQLite state store: migrations, transactions, corrupt and locked files, reset."""

from __future__ import annotations

import sqlite3

import pytest

from audiobook import state as state_mod
from audiobook.errors import StateError
from audiobook.state import DB_NAME, StateStore, default_state_dir, reset_state


def test_migrations_are_recorded_and_run_once(tmp_path):
    with StateStore(tmp_path) as s:
        names = s.applied_migrations()
    assert names == [name for name, _ in state_mod.MIGRATIONS]
    with StateStore(tmp_path) as s:  # reopening applies nothing twice
        assert s.applied_migrations() == names
        cols = {r[1] for r in s.db.execute("PRAGMA table_info(chunks)")}
    assert {"key", "status", "task_id", "billed_chars", "started_at", "task_extra"} <= cols


def test_wal_mode(tmp_path):
    with StateStore(tmp_path) as s:
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    def m999_broken(db):
        db.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("boom")

    monkeypatch.setattr(state_mod, "MIGRATIONS", [*state_mod.MIGRATIONS, ("m999", m999_broken)])
    with pytest.raises(StateError):
        StateStore(tmp_path)
    db = sqlite3.connect(tmp_path / DB_NAME)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    applied = {r[0] for r in db.execute("SELECT name FROM _migrations")}
    db.close()
    assert "half_done" not in tables and "m999" not in applied
    assert "chunks" in tables  # the good migrations before it stay


def test_chunk_lifecycle(tmp_path):
    with StateStore(tmp_path, clock=lambda: 1000.0) as s:
        since = s.mark_starting("k1", "polly", chars=50, price_kind="neural")
        assert since == 1000.0
        row = s.chunk("k1")
        assert row.status == "pending" and row.started_at == 1000.0 and row.task_id is None
        s.mark_submitted("k1", "task-1", "s3://b/k1.mp3", billed_chars=50, extra={"a": "b"})
        row = s.chunk("k1")
        assert (row.status, row.task_id, row.billed_chars, row.extra) == (
            "submitted",
            "task-1",
            50,
            {"a": "b"},
        )
        path = s.cache_path("k1", "mp3")
        s.mark_done("k1", path)
        assert s.chunk("k1").status == "done"
        assert s.summary().billed_by_kind == {"neural": 50}
        assert s.chunks(["k1", "nope"]).keys() == {"k1"}


def test_transaction_rolls_back_on_error(tmp_path):
    with StateStore(tmp_path) as s:
        with pytest.raises(RuntimeError), s.transaction() as db:
            db.execute("INSERT INTO chunks (key, created_at, updated_at) VALUES ('x', 0, 0)")
            raise RuntimeError("crash mid-write")
        assert s.chunk("x") is None


def test_corrupt_file_gives_state_error_with_way_out(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StateError) as e:
        StateStore(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "--reset-state" in msg and DB_NAME in msg
    assert e.value.exit_code == 9


def test_locked_file_gives_state_error(tmp_path):
    StateStore(tmp_path).close()
    holder = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StateError) as e, StateStore(tmp_path, busy_timeout=0.05) as s:
            s.mark_starting("k", "local")
        assert "locked" in str(e.value) and "\n" not in str(e.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_reset_moves_aside_and_keeps_cache(tmp_path):
    with StateStore(tmp_path) as s:
        p = s.cache_path("ab" * 32, "wav")
        p.parent.mkdir(parents=True)
        p.write_bytes(b"RIFF")
    (tmp_path / DB_NAME).write_bytes(b"garbage" * 1000)
    with StateStore(tmp_path, reset=True) as s:
        assert s.moved_aside is not None and s.moved_aside.name.startswith(f"{DB_NAME}.bad-")
        assert s.moved_aside.read_bytes().startswith(b"garbage")
        assert s.cached("ab" * 32, "wav") == p  # paid-for audio is still there
    assert reset_state(tmp_path / "nothing-here") is None


def test_books_and_gc(tmp_path):
    with StateStore(tmp_path) as s:
        keys = ["a" * 64, "b" * 64, "c" * 64]
        for k in keys:
            p = s.cache_path(k, "wav")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x" * 10)
            s.mark_done(k, p)
        book = s.upsert_book(
            "/books/x.epub", source_hash="h", options_hash="o", title="X", status="running"
        )
        s.set_book_chunks(book, [(keys[0], 0), (keys[1], 0)])
        assert s.book_chunk_keys(book) == keys[:2]
        assert s.gc(dry_run=True) == (1, 10)
        assert s.cached(keys[2], "wav") is not None
        assert s.gc() == (1, 10)
        assert s.cached(keys[2], "wav") is None and s.cached(keys[0], "wav") is not None
        assert s.chunk(keys[2]) is None
        summary = s.summary()
        assert summary.chunks["done"] == 2 and summary.cache_files == 2
        assert [b.title for b in summary.books] == ["X"]


def test_default_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOBOOK_STATE_DIR", str(tmp_path / "s"))
    assert default_state_dir() == tmp_path / "s"
    monkeypatch.delenv("AUDIOBOOK_STATE_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "audiobook"
