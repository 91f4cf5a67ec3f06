"""The state folder under faults, through the real CLI (``python -m audiobook``):

- a full disk or a read-only file system under the state folder is one line naming the
  folder and what is wrong, exit 9, and the store is kept as it was (issue 19, item 6);
- a damaged cached piece is synthesized again, alone, and the book comes out whole
  (item 7): counted in the state store on the local path, in the emulator's task list
  on the Polly path;
- ``--reset-state`` keeps a store that passes its integrity check (item 10c);
- the read-only commands never create a state store (item 10d).

The full and read-only folders are real file systems: a small tmpfs mounted for the
test (filled up, or remounted read-only). Mounting needs root (or CAP_SYS_ADMIN); where
it is not allowed those tests are skipped and say why. (Making a folder read-only with
chmod stops nobody when the tests run as root.)
"""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.epubkit import Doc, build_epub
from tests.runs import audio_digest, audiobook_argv, decoded_seconds

pytestmark = pytest.mark.ffmpeg

CHAPTERS = [
    ("Morning", "The sun rose over the hill. Birds began to sing."),
    ("Noon", "It was hot at noon. Nobody moved. The dog slept in the shade."),
    ("Night", "Stars came out. The owl called twice."),
]


def make_book(path: Path, chapters: list[tuple[str, str]] = CHAPTERS, title: str = "A Day") -> Path:
    docs = [
        Doc(f"c{i}.xhtml", f"<h1>{t}</h1><p>{body}</p>") for i, (t, body) in enumerate(chapters)
    ]
    toc = [(t, f"c{i}.xhtml", []) for i, (t, _) in enumerate(chapters)]
    return build_epub(path, docs, toc, title=title)


def audiobook(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command in a process of its own."""
    return subprocess.run(
        audiobook_argv(*args),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    """The error line a failed command ends in; no traceback anywhere."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("audiobook: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr
    return errors[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def integrity(db_path: Path) -> str:
    db = sqlite3.connect(db_path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


# --- a real small file system ----------------------------------------------------------


@dataclass
class Tmpfs:
    path: Path

    def remount(self, *options: str) -> None:
        subprocess.run(
            ["mount", "-o", ",".join(("remount", *options)), str(self.path)],
            check=True,
            capture_output=True,
        )

    def fill(self) -> Path:
        """Write a file until the file system is full; returns it (remove it to free)."""
        filler = self.path / "filler"
        block = b"\0" * 4096
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(block)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
        return filler


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Tmpfs]]:
    mounted: list[Path] = []

    def mount(size: str) -> Tmpfs:
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command here: cannot make a small or read-only file system")
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            why = (r.stderr.strip().splitlines() or ["mount failed"])[0]
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {why}")
        mounted.append(where)
        return Tmpfs(where)

    try:
        yield mount
    finally:
        for where in mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


# --- item 6: a full or read-only state folder --------------------------------------------


def test_read_only_state_folder_is_one_line_and_the_store_is_kept(tmp_path, tmpfs):
    fs = tmpfs("8m")
    state = fs.path / "state"
    book = make_book(tmp_path / "day.epub")
    out = tmp_path / "day.m4b"
    r = audiobook("convert", book, "-o", out, "--state-dir", state)
    assert r.returncode == 0, r.stderr
    before = sha256(state / "state.sqlite")
    files_before = sorted(p.name for p in state.iterdir())

    fs.remount("ro")
    for extra in ([], ["--reset-state"]):
        r = audiobook("convert", book, "-o", out, "--state-dir", state, "--force", *extra)
        assert r.returncode == 9, r.stderr
        line = one_error_line(r)
        assert str(state) in line and "read-only" in line, line
        assert "--reset-state" not in line  # it could not help
    assert out.exists()  # the earlier output is untouched

    fs.remount("rw")
    assert sorted(p.name for p in state.iterdir()) == files_before  # nothing moved aside
    assert sha256(state / "state.sqlite") == before
    assert integrity(state / "state.sqlite") == "ok"
    r = audiobook("status", "--state-dir", state)
    assert r.returncode == 0 and "done     A Day" in r.stdout and "3 done" in r.stdout, r.stdout
    r = audiobook("convert", book, "-o", out, "--state-dir", state, "--force")
    assert r.returncode == 0 and "3 cached, 0 synthesized" in r.stdout, r.stderr


def chmod_stops_writes(tmp_path: Path) -> bool:
    """Whether a folder without write permission stops us (not for root, which has
    CAP_DAC_OVERRIDE)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "x").write_bytes(b"")
    except PermissionError:
        return True
    finally:
        probe.chmod(0o755)
    return False


def test_unwritable_state_folder_is_one_line_and_the_store_is_kept(tmp_path):
    if not chmod_stops_writes(tmp_path):
        pytest.skip("chmod does not stop this user from writing (root): see the tmpfs tests")
    state = tmp_path / "state"
    book = make_book(tmp_path / "day.epub")
    out = tmp_path / "day.m4b"
    r = audiobook("convert", book, "-o", out, "--state-dir", state)
    assert r.returncode == 0, r.stderr
    before = sha256(state / "state.sqlite")
    tree = [state, *state.rglob("*")]
    modes = {p: p.stat().st_mode for p in tree}
    for p in tree:
        p.chmod(modes[p] & ~0o222)
    try:
        r = audiobook("convert", book, "-o", out, "--state-dir", state, "--force")
        assert r.returncode == 9, r.stderr
        line = one_error_line(r)
        assert str(state) in line and "permission" in line, line
        assert "--reset-state" not in line
    finally:
        for p in tree:
            p.chmod(modes[p])
    assert sha256(state / "state.sqlite") == before
    assert integrity(state / "state.sqlite") == "ok"
    r = audiobook("convert", book, "-o", out, "--state-dir", state, "--force")
    assert r.returncode == 0 and "3 cached, 0 synthesized" in r.stdout, r.stderr


def test_full_state_folder_is_one_line_and_the_store_is_kept(tmp_path, tmpfs):
    fs = tmpfs("2m")
    state = fs.path / "state"
    book = make_book(tmp_path / "day.epub")
    out = tmp_path / "day.m4b"
    r = audiobook("convert", book, "-o", out, "--state-dir", state)
    assert r.returncode == 0, r.stderr
    before = sha256(state / "state.sqlite")

    # A changed chapter needs new rows and a new piece; the disk has no room left.
    changed = [CHAPTERS[0], ("Noon", "It was cold at noon, for once."), CHAPTERS[2]]
    make_book(book, changed)
    filler = fs.fill()
    r = audiobook("convert", book, "-o", out, "--state-dir", state)
    assert r.returncode == 9, r.stderr
    line = one_error_line(r)
    assert str(state) in line and "full" in line, line
    assert "--reset-state" not in line and "rollback" not in r.stderr

    filler.unlink()
    assert sha256(state / "state.sqlite") == before
    assert integrity(state / "state.sqlite") == "ok"
    assert not [p for p in state.iterdir() if ".bad-" in p.name]
    r = audiobook("convert", book, "-o", out, "--state-dir", state)
    assert r.returncode == 0 and "2 cached, 1 synthesized" in r.stdout, r.stdout + r.stderr


def test_audio_that_does_not_fit_the_state_folder_is_a_state_error(tmp_path, tmpfs):
    # Room for the database, not for the audio of a long chapter: the cache write fails.
    fs = tmpfs("512k")
    state = fs.path / "state"
    long_text = " ".join(f"Sentence number {i} is spoken slowly and clearly." for i in range(60))
    book = make_book(tmp_path / "long.epub", [("Long", long_text)], title="Long")
    r = audiobook("convert", book, "-o", tmp_path / "long.m4b", "--state-dir", state)
    assert r.returncode == 9, r.stderr
    line = one_error_line(r)
    assert str(state) in line and "full" in line, line
    assert not (tmp_path / "long.m4b").exists()
    assert not [p for p in state.rglob("*.tmp*")]  # no half-written piece left behind


# --- item 7: a damaged cached piece ---------------------------------------------------------


def _same_size_garbage(p: Path) -> None:
    p.write_bytes(os.urandom(p.stat().st_size))


def _header_kept_data_garbled(p: Path) -> None:
    # The WAV header is intact (the file still looks like audio), its samples are not.
    data = bytearray(p.read_bytes())
    data[44:] = os.urandom(len(data) - 44)
    p.write_bytes(bytes(data))


def _converted_once(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[Path, Path, Path, Path, list[str]]:
    """A three-piece book converted once with ``extra`` arguments: (state folder, book,
    output, a copy of the first output, the pieces' keys in book order)."""
    state = tmp_path / "state"
    book = make_book(tmp_path / "day.epub")
    out = tmp_path / "day.m4b"
    r = audiobook("convert", book, "-o", out, "--state-dir", state, *extra, env=env)
    assert r.returncode == 0 and "3 synthesized" in r.stdout, r.stdout + r.stderr
    first = tmp_path / "first.m4b"
    first.write_bytes(out.read_bytes())
    db = sqlite3.connect(state / "state.sqlite")
    keys = [row[0] for row in db.execute("SELECT key FROM book_chunks ORDER BY seq")]
    db.close()
    assert len(keys) == 3
    return state, book, out, first, keys


@pytest.mark.parametrize(
    "damage",
    [lambda p: p.write_bytes(b""), _same_size_garbage, _header_kept_data_garbled],
    ids=["zero-length", "same-size-garbage", "header-kept-samples-garbled"],
)
def test_damaged_cached_piece_is_synthesized_again_alone(tmp_path, damage):
    state, book, out, first, keys = _converted_once(tmp_path)
    victim = next(state.glob(f"cache/*/{keys[1]}.wav"))
    damage(victim)

    r = audiobook("convert", book, "-o", out, "--state-dir", state, "--force")
    assert r.returncode == 0, r.stderr
    assert "2 cached, 1 synthesized" in r.stdout, r.stdout
    warnings = [ln for ln in r.stderr.splitlines() if "audiobook: warning:" in ln]
    assert len(warnings) == 1 and keys[1] in warnings[0] and "damaged" in warnings[0], r.stderr

    # Paid once more for the damaged piece only: its start was recorded twice, the
    # others once, and the run synthesized one piece.
    db = sqlite3.connect(state / "state.sqlite")
    attempts = dict(db.execute("SELECT key, attempts FROM chunks"))
    last_run = db.execute("SELECT chunks_submitted FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    db.close()
    assert [attempts[k] for k in keys] == [1, 2, 1]
    assert last_run == (1,)

    # The book is whole: every frame decodes, as long as before, the same audio.
    assert decoded_seconds(out) == pytest.approx(decoded_seconds(first), abs=0.05)
    assert audio_digest(out) == audio_digest(first)
    # And the next --force run reuses everything.
    r = audiobook("convert", book, "-o", out, "--state-dir", state, "--force")
    assert r.returncode == 0 and "3 cached, 0 synthesized" in r.stdout, r.stdout + r.stderr


def test_a_piece_damaged_in_the_s3_cache_is_synthesized_again_alone(
    tmp_path, aws_env, s3_bucket, s3_client
):
    # The shared cache: pieces uploaded whole, their digests recorded after the upload;
    # a machine with no local copy downloads each and checks it before reuse.
    cache = f"s3://{s3_bucket}/pieces"
    state, book, out, first, keys = _converted_once(tmp_path, "--cache", cache)
    victim = f"pieces/{keys[1][:2]}/{keys[1]}.wav"
    whole = s3_client.get_object(Bucket=s3_bucket, Key=victim)["Body"].read()
    s3_client.put_object(Bucket=s3_bucket, Key=victim, Body=os.urandom(len(whole)))
    shutil.rmtree(state / "cache")  # another machine: no local copies

    r = audiobook("convert", book, "-o", out, "--state-dir", state, "--cache", cache, "--force")
    assert r.returncode == 0 and "2 cached, 1 synthesized" in r.stdout, r.stdout + r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "audiobook: warning:" in ln]
    assert len(warnings) == 1 and keys[1] in warnings[0] and "damaged" in warnings[0], r.stderr
    assert audio_digest(out) == audio_digest(first)
    # The piece made again replaced the damaged one in S3.
    assert s3_client.get_object(Bucket=s3_bucket, Key=victim)["Body"].read() == whole


@pytest.mark.aws
def test_damaged_cached_piece_on_polly_starts_one_task(
    tmp_path, aws_env, polly_emulator, s3_bucket
):
    env = {**os.environ, **aws_env}
    polly = ["--engine", "polly", "--bucket", s3_bucket, "--voice", "Joanna", "--mode", "async"]
    state, book, out, first, keys = _converted_once(tmp_path, *polly, env=env)
    command = ["convert", book, "-o", out, "--state-dir", state, *polly]
    mine = {p.stem for p in state.glob("cache/*/*.mp3")}
    assert set(keys) == mine
    victim = next(state.glob(f"cache/*/{keys[2]}.mp3"))
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # cut short

    ours_before = {t.task_id for t in polly_emulator.tasks if t.bucket == s3_bucket}
    r = audiobook(*command, "--force", env=env)
    assert r.returncode == 0 and "2 cached, 1 synthesized" in r.stdout, r.stdout + r.stderr
    polly_emulator.wait_idle(timeout=30)
    ours = [t for t in polly_emulator.tasks if t.bucket == s3_bucket]
    new = [t for t in ours if t.task_id not in ours_before]
    assert len(ours) == 4 and len(new) == 1
    per_text = collections.Counter(t.text_sha256 for t in ours)
    assert sorted(per_text.values()) == [1, 1, 2]
    assert decoded_seconds(out) == pytest.approx(decoded_seconds(first), abs=0.1)


# --- item 10c: --reset-state keeps a healthy store -------------------------------------------


def test_reset_state_keeps_a_healthy_store_and_moves_a_damaged_one(tmp_path):
    state = tmp_path / "state"
    book = make_book(tmp_path / "day.epub")
    out = tmp_path / "day.m4b"
    assert audiobook("convert", book, "-o", out, "--state-dir", state).returncode == 0

    r = audiobook("convert", book, "-o", out, "--state-dir", state, "--reset-state")
    assert r.returncode == 0 and "up to date" in r.stdout, r.stderr  # its rows are still there
    notes = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(notes) == 1 and "integrity check" in notes[0] and "kept" in notes[0], r.stderr
    assert not [p for p in state.iterdir() if ".bad-" in p.name]
    r = audiobook("status", "--state-dir", state, "--reset-state")
    assert r.returncode == 0 and "done     A Day" in r.stdout, r.stdout + r.stderr
    assert not [p for p in state.iterdir() if ".bad-" in p.name]

    # A page of the database overwritten: the header is fine, the integrity check is not.
    db_path = state / "state.sqlite"
    data = bytearray(db_path.read_bytes())
    data[4096 : 2 * 4096] = b"\xa5" * 4096
    db_path.write_bytes(bytes(data))
    r = audiobook("status", "--state-dir", state, "--reset-state")
    assert r.returncode == 0, r.stderr
    assert "failed its integrity check" in r.stderr and "moved it aside" in r.stderr
    moved = [p for p in state.iterdir() if p.name.startswith("state.sqlite.bad-")]
    assert len(moved) == 1 and moved[0].read_bytes() == bytes(data)
    # Cached audio is kept and reused by the new store.
    r = audiobook("convert", book, "-o", out, "--state-dir", state)
    assert r.returncode == 0 and "3 cached, 0 synthesized" in r.stdout, r.stdout + r.stderr


# --- item 10d: read-only commands never create a store ---------------------------------------


def test_read_only_commands_never_create_a_state_store(tmp_path, aws_env):
    # In process through click (fast); the commands are the same as above.
    from click.testing import CliRunner

    from audiobook.cli import cli

    book = make_book(tmp_path / "day.epub")
    typo = tmp_path / f"stat-{uuid.uuid4().hex[:6]}"
    empty = tmp_path / "empty"  # a folder, but no store in it
    empty.mkdir()
    for where in (typo, empty):
        runner = CliRunner(env={"AUDIOBOOK_STATE_DIR": str(where)})
        for args in (
            ["status"],
            ["status", "--state-dir", str(where)],
            ["gc", "--dry-run", "--state-dir", str(where)],
            ["gc"],
        ):
            r = runner.invoke(cli, args)
            assert r.exit_code == 9, (args, r.output)
            assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
            assert r.stdout == ""
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("audiobook: error: "), r.stderr
            assert str(where) in lines[0] and "no state store" in lines[0], lines[0]
        for args in (["inspect", str(book)], ["estimate", str(book)], ["tasks", "--max", "5"]):
            r = runner.invoke(cli, args)
            assert r.exit_code == 0, (args, r.output)
        assert not typo.exists()
        assert list(empty.iterdir()) == []
